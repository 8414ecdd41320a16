"""Each loss against a slow reference written from its paper's formula."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import references
from sslstudio.core.backbones import build_backbone
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.objectives.byol import byol_loss, target_momentum
from sslstudio.core.objectives.jigsaw import cut_tiles, permutation_set
from sslstudio.core.objectives.moco import moco_loss
from sslstudio.core.objectives.rotation import rotate_batch
from sslstudio.core.objectives.simclr import nt_xent_loss
from sslstudio.core.objectives.simsiam import simsiam_loss


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(rng, tau):
    z1, z2 = torch.randn(6, 5, generator=rng), torch.randn(6, 5, generator=rng)
    assert float(nt_xent_loss(z1, z2, tau)) == pytest.approx(references.nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_is_low_when_pairs_match_and_high_when_not(rng):
    z = torch.randn(8, 16, generator=rng)
    assert float(nt_xent_loss(z, z, 0.1)) < float(nt_xent_loss(z, torch.randn(8, 16, generator=rng), 0.1))


@pytest.mark.parametrize("tau", [0.07, 0.2])
def test_moco_matches_reference(rng, tau):
    q = F.normalize(torch.randn(5, 8, generator=rng), dim=1)
    k = F.normalize(torch.randn(5, 8, generator=rng), dim=1)
    queue = F.normalize(torch.randn(12, 8, generator=rng), dim=1)
    assert float(moco_loss(q, k, queue, tau)) == pytest.approx(references.moco(q, k, queue, tau), rel=1e-5)


def test_byol_matches_reference(rng):
    p, z = torch.randn(7, 6, generator=rng), torch.randn(7, 6, generator=rng)
    assert float(byol_loss(p, z)) == pytest.approx(references.byol(p, z), rel=1e-5)


def test_byol_target_gets_no_gradient(rng):
    p = torch.randn(4, 3, generator=rng, requires_grad=True)
    z = torch.randn(4, 3, generator=rng, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_byol_momentum_schedule_runs_from_base_to_one():
    assert target_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert target_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert target_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_simsiam_matches_reference(rng):
    p1, z1, p2, z2 = (torch.randn(5, 4, generator=rng) for _ in range(4))
    assert float(simsiam_loss(p1, z1, p2, z2)) == pytest.approx(references.simsiam(p1, z1, p2, z2), rel=1e-5)


def test_simsiam_stops_gradient_through_targets(rng):
    p1, z1, p2, z2 = (torch.randn(5, 4, generator=rng, requires_grad=True) for _ in range(4))
    simsiam_loss(p1, z1, p2, z2).backward()
    assert p1.grad is not None and z1.grad is None and z2.grad is None


class _Identity:
    """Augmentation stand-in that returns the batch unchanged, so a test can recompute a loss."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(3)

    def __call__(self, images):
        return images


def test_rotation_objective_is_cross_entropy_over_four_rotations(rng):
    images = torch.rand(3, 3, 12, 12, generator=rng)
    objective = OBJECTIVES.get("rotation")(build_backbone("small_cnn", 12),
                                           OBJECTIVES.get("rotation").config_cls(), _Identity()).eval()
    loss, metrics = objective(images)
    rotated, labels = rotate_batch(images)
    logits = objective.head(objective.encoder(rotated))
    assert float(loss.detach()) == pytest.approx(references.cross_entropy(logits, labels), rel=1e-5)
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert torch.equal(rotated[3], torch.rot90(images[0], 1, dims=(1, 2)))
    assert 0.0 <= float(metrics["rotation_accuracy"]) <= 1.0


def test_jigsaw_objective_is_cross_entropy_over_permutations():
    images = torch.rand(2, 3, 18, 18)
    cls = OBJECTIVES.get("jigsaw")
    config = cls.config_cls(num_permutations=10, tile_fraction=1.0)
    objective = cls(build_backbone("small_cnn", 18), config, _Identity()).eval()
    loss, _ = objective(images)
    # Recompute from the parts, with the labels drawn from the same generator state.
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 10, (2,), generator=generator)
    tiles = cut_tiles(images, 1.0, generator)
    shuffled = tiles[torch.arange(2).unsqueeze(1), objective.permutations[labels]]
    logits = objective.head(objective.encoder(shuffled.flatten(0, 1)).reshape(2, -1))
    assert float(loss.detach()) == pytest.approx(references.cross_entropy(logits, labels), rel=1e-5)


def test_jigsaw_tiles_reassemble_the_image():
    image = torch.arange(2 * 3 * 9 * 9, dtype=torch.float32).view(2, 3, 9, 9)
    tiles = cut_tiles(image, 1.0, torch.Generator())
    assert tiles.shape == (2, 9, 3, 3, 3)
    assert torch.equal(tiles[0, 5], image[0, :, 3:6, 6:9])  # row 1, column 2


def test_permutation_set_is_distinct_and_spread_out():
    perms = permutation_set(50)
    assert perms.shape == (50, 9)
    assert len({tuple(p) for p in perms}) == 50
    assert all(sorted(p) == list(range(9)) for p in perms)
    distances = [(perms[i] != perms[j]).sum() for i in range(50) for j in range(i + 1, 50)]
    assert min(distances) >= 5  # the greedy rule keeps them far apart; random sets reach 2


def test_moco_queue_is_a_ring_buffer():
    cls = OBJECTIVES.get("moco")
    objective = cls(build_backbone("small_cnn", 16), cls.config_cls(queue_size=16, projection_dim=4),
                    _Identity())
    keys = F.normalize(torch.randn(12, 4), dim=1)
    objective._enqueue(keys)
    objective._enqueue(keys[:8])
    assert int(objective.queue_pointer) == (12 + 8) % 16
    assert torch.equal(objective.queue[12:16], keys[:4])
    assert torch.equal(objective.queue[0:4], keys[4:8])


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_momentum_network_follows_online_network(name):
    cls = OBJECTIVES.get(name)
    objective = cls(build_backbone("small_cnn", 16), cls.config_cls(), _Identity())
    target = objective.key_encoder if name == "moco" else objective.target_encoder
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    objective.after_step(0.0)
    moved = [not torch.equal(a, b) for a, b in zip(before, target.parameters())]
    assert all(moved)
    assert not any(p.requires_grad for p in target.parameters())


def test_all_objectives_registered():
    assert set(OBJECTIVES.names()) >= {"simclr", "moco", "byol", "simsiam", "rotation", "jigsaw"}
    for name in OBJECTIVES.names():
        assert OBJECTIVES.get(name).summary


def test_setfit_cosine_pair_loss_matches_its_formula():
    from sslstudio.core.adapt.setfit import cosine_pair_loss

    g = torch.Generator().manual_seed(4)
    u, v = torch.randn(9, 12, generator=g), torch.randn(9, 12, generator=g)
    v[:3] = u[:3] * 2  # some pairs already point the same way
    same = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0, 1], dtype=torch.float32)
    assert float(cosine_pair_loss(u, v, same)) == pytest.approx(references.setfit_cosine(u, v, same),
                                                               rel=1e-5)
