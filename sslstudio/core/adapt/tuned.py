"""What adapter, prefix, prompt and (IA)^3 share: a frozen encoder with a few small modules
added where the backbone's `TuningSites` allow, trained with the head; only the added modules'
parameters are saved beside the model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslstudio.core.adapt.base import ADAPTERS, Classifier, unfit_methods
from sslstudio.core.adapt.network import NetworkAdapter, NetworkConfig
from sslstudio.core.backbones.tuning import TuningModule, TuningSites, own_state, sites_of
from sslstudio.core.config import ConfigError, knob


@dataclass
class TunedConfig(NetworkConfig):
    lr: float = knob(3e-3, low=1e-7, high=1.0, help="learning rate of the added weights and the head")


class TunedAdapter(NetworkAdapter):
    config_cls = TunedConfig

    @classmethod
    def unfit_reason(cls, sites: TuningSites) -> str | None:
        """Why this method cannot be used on an encoder with `sites`; None when it can."""
        raise NotImplementedError

    @classmethod
    def attach(cls, encoder: nn.Module, config) -> None:
        """Add the method's modules to `encoder` in place, each starting as the identity. On the
        CPU: the encoder is built there, and moved to the device whole once it is tuned."""
        raise NotImplementedError

    @classmethod
    def settle(cls, encoder: nn.Module) -> nn.Module:
        """The trained encoder as saved: its training-only parts dropped or merged."""
        return encoder

    @classmethod
    def merge(cls, encoder: nn.Module) -> nn.Module:
        """The settled encoder with the method folded into its weights, where the method allows."""
        return encoder

    @classmethod
    def restore(cls, encoder: nn.Module, config) -> nn.Module:
        """A fresh encoder shaped as a trained one is saved, for its saved weights to load."""
        cls.attach(encoder, config)
        return cls.merge(cls.settle(encoder))

    def build(self):
        model = Classifier(self.task.new_encoder(), self.task.num_classes)
        reason = self.unfit_reason(sites_of(model.encoder))
        if reason:
            unfit = unfit_methods(model.encoder)
            fitting = ", ".join(n for n in ADAPTERS.names() if n not in unfit)
            raise ConfigError(f"{self.name} does not apply to {self.task.backbone}: {reason}; "
                              f"methods that do: {fitting}")
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        self.attach(model.encoder, self.config)
        # Made after the freeze above, the added modules train; the encoder's own weights do not.
        added = list({id(p): p for m in model.encoder.modules() if isinstance(m, TuningModule)
                      for p in m.parameters()}.values())
        return model, [{"params": added + list(model.head.parameters()), "lr": self.config.lr}]

    def finish(self, model: Classifier):
        model.encoder = self.settle(model.encoder)
        own = {f"encoder.{k}": v for k, v in own_state(model.encoder).items()}
        model.encoder = self.merge(model.encoder)
        return model, own
