"""How to read a distilled image student's features: three readouts of the same trained run.

    python bench/distill_readout.py RUN FOLDER [RUN FOLDER ...]

For each distilled run (`sslstudio train --teacher ...`, small_cnn student) and the folder it was
trained on, the few-label probe of bench/quality.py (1, 5 and 10 labels a class, 10 draws, every
other item tested) on:
  - grid: small_cnn's probe readout, its last stage pooled on a 2x2 grid (what the app read
    before distilled runs were read as trained);
  - pooled: the pooled vector the student learnt to map to the teacher's features;
  - projected: that vector through the run's projection, in the teacher's space (the projection
    of the last checkpoint, while the encoder is the one the run hands over);
  - pooled+projected: the two side by side.
The monitor's probe during the run reads the pooled vector.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import labels_of, probe_all  # noqa: E402


def readouts(run: Path, folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from safetensors.torch import load_file

    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.control import RunControl, run_to_end
    from sslstudio.core.data import item_keys
    from sslstudio.core.embed import encode_items, run_encoder_state
    from sslstudio.core.preprocess import Preprocess
    from sslstudio.core.run.folder import RunFolder

    cpu = torch.device("cpu")
    run_folder = RunFolder(run)
    train_config, _, table = run_folder.read_config()
    preprocess = Preprocess.from_table(table).for_features()
    encoder = build_backbone(train_config.backbone, preprocess.encoder_shape())
    encoder.load_state_dict(run_encoder_state(run_folder))
    encoder.eval()
    data = run_to_end(preprocess.load(folder, run, RunControl()))
    labels = labels_of([str(folder / key) for key in item_keys(data)], folder)
    pooled = run_to_end(encode_items(encoder, data, preprocess, cpu, RunControl()))
    encoder.read_for_probe()
    grid = run_to_end(encode_items(encoder, data, preprocess, cpu, RunControl()))
    state = load_file(str(run_folder.checkpoint_path))
    weight, bias = state["model.projector.weight"].numpy(), state["model.projector.bias"].numpy()
    projected = pooled @ weight.T + bias
    return {"grid": grid, "pooled": pooled, "projected": projected,
            "pooled+projected": np.concatenate([pooled, projected], 1)}, labels


def main() -> None:
    pairs = sys.argv[1:]
    if not pairs or len(pairs) % 2:
        sys.exit(__doc__)
    print("| run | readout | dim | acc@1 | acc@5 | acc@10 |\n| --- | --- | --- | --- | --- | --- |")
    for run, folder in zip(pairs[0::2], pairs[1::2]):
        features, labels = readouts(Path(run), Path(folder))
        for name, values in features.items():
            scores = probe_all(values, labels, 10)
            print(f"| {Path(run).parent.name}/{Path(run).name} | {name} | {values.shape[1]} | "
                  + " | ".join(f"{scores[f'acc@{shots}'][0]:.3f}" for shots in (1, 5, 10)) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
