"""Distillation: the loss against the formula, a student learning from a run of the user's and
from a BERT folder (a static student started from the teacher's piece vectors), the teacher's
pass paid from the budget and kept in the run, and teachers that cannot teach refused clearly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sslstudio.core import teacher as teacher_module
from sslstudio.core.control import RunControl, run_to_end
from sslstudio.core.data.scan import DataError
from sslstudio.core.events import RunFinished, RunStarted, StepMetrics
from sslstudio.core.objectives import distill as distill_module
from sslstudio.core.objectives.distill import distill_loss
from sslstudio.core.run.config import TrainConfig
from sslstudio.core.run.train import train
from tests.conftest import make_bert_folder


def reference_loss(student, teacher, kind, relational_weight):
    """The loss written out item by item and pair by pair."""
    n, d = student.shape
    total = 0.0
    for i in range(n):
        s, t = student[i].tolist(), teacher[i].tolist()
        if kind == "cosine":
            dot = sum(a * b for a, b in zip(s, t))
            total += 1.0 - dot / (math.sqrt(sum(a * a for a in s)) * math.sqrt(sum(b * b for b in t)))
        else:
            for a, b in zip(s, t):
                diff = abs(a - b)
                total += (0.5 * diff * diff if diff < 1.0 else diff - 0.5) / d
    loss = total / n
    if relational_weight:
        def unit(row):
            norm = math.sqrt(sum(v * v for v in row))
            return [v / norm for v in row]

        su = [unit(student[i].tolist()) for i in range(n)]
        tu = [unit(teacher[i].tolist()) for i in range(n)]
        squares = 0.0
        for i in range(n):
            for j in range(n):
                s_ij = sum(a * b for a, b in zip(su[i], su[j]))
                t_ij = sum(a * b for a, b in zip(tu[i], tu[j]))
                squares += (s_ij - t_ij) ** 2
        loss += relational_weight * squares / (n * n)
    return loss


@pytest.mark.parametrize("kind", ["cosine", "smooth_l1"])
@pytest.mark.parametrize("relational_weight", [0.0, 2.0])
def test_the_loss_is_the_formula(kind, relational_weight):
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 1.5
    teacher = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    got = float(distill_loss(student, teacher, kind, relational_weight))
    assert got == pytest.approx(reference_loss(student, teacher, kind, relational_weight), rel=1e-9)


def config_for(folder, out, **overrides) -> TrainConfig:
    values = dict(data=str(folder), out=str(out), batch_size=8, epochs=1, image_size=16,
                  log_every_steps=1, monitor_items=16)
    values.update(overrides)
    return TrainConfig(**values)


def test_a_student_learns_from_a_run_and_the_teacher_is_paid_once(image_folder, tmp_path):
    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    run = tmp_path / "student"
    events = list(train(config_for(image_folder, run, objective="distill", teacher=str(teacher_run),
                                   epochs=6, labels_from_folders=True)))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed", events[-1]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.backbone == "small_cnn_expanded"  # the modality's student, not its best encoder
    assert "teacher the run teacher (small_cnn): its features of 24 of the 24 items computed once" \
        in started.plan
    steps = [e for e in events if isinstance(e, StepMetrics)]
    agreement = [s.extra["cosine_to_teacher"] for s in steps]
    assert agreement[-1] > agreement[0] + 0.1, agreement
    # The teacher's few-label probe stands beside the student's, the same at every snapshot.
    judged = [s for s in steps if not math.isnan(s.probe_accuracy)]
    assert judged and len({s.teacher_probe_accuracy for s in judged}) == 1
    assert 0.0 <= judged[-1].teacher_probe_accuracy <= 1.0
    summary = [e for e in events if getattr(e, "kind", "") == "summary"]
    assert len(summary) == 1 and summary[0].message.startswith("distilled from the run teacher")
    assert "against the teacher's" in summary[0].message and " MB against " in summary[0].message
    assert "ONNX file" in summary[0].message and "(onnxruntime, this CPU: " in summary[0].message
    saved = np.load(run / "teacher-features.npz")
    assert saved["features"].shape[0] == 24 and str(saved["teacher"]) == str(teacher_run)

    # Resumed for more epochs: the teacher's features are read back, not computed again.
    resumed = list(train(config_for(image_folder, run, objective="distill",
                                    teacher=str(teacher_run), epochs=8, labels_from_folders=True),
                         resume=True))
    assert resumed[-1].status == "completed"
    plan = next(e for e in resumed if isinstance(e, RunStarted)).plan
    assert "read back from the run" in plan

    # The export names the teacher.
    from sslstudio.core.export import ExportRequest, export_model

    exported = list(export_model(ExportRequest(run, tmp_path / "student.onnx", latency_repeats=1)))
    assert exported[-1].status == "completed", exported[-1]
    info = json.loads((tmp_path / "student.json").read_text())
    assert info["model"]["teacher"] == str(teacher_run) and info["model"]["objective"] == "distill"

    # The student's features are read as it trained them (pooled, 512), as its monitor judged
    # them; the teacher, a SimCLR run, is read on small_cnn's 2x2 grid for the probe.
    from sslstudio.core.adapt.job import AdaptRequest, adapt, load_adapted
    from sslstudio.core.embed import load_encoder

    student, _ = load_encoder(run, torch.device("cpu"))
    assert student.feature_dim == 512 and load_encoder(teacher_run, torch.device("cpu"))[0].feature_dim == 512
    assert info["output"]["shape"] == ["batch", 512]
    labels = {f"class_{c}/{i:03d}.png": f"class_{c}" for c in range(3) for i in range(4)}
    adapted = list(adapt(AdaptRequest(run, image_folder, labels, "finetune", {"epochs": 1},
                                      out_dir=tmp_path / "adapted")))
    assert adapted[-1].status == "completed", adapted[-1]
    model = load_adapted(tmp_path / "adapted", torch.device("cpu"))  # its head fits 512 features
    assert model.model.encoder.feature_dim == 512


def test_a_budget_too_small_for_the_whole_folder_teaches_on_a_spread_of_it(image_folder, tmp_path,
                                                                          monkeypatch):
    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    # The first chunk alone is affordable: the student trains on those items only.
    monkeypatch.setattr(teacher_module, "TEACHER_CHUNK", 16)
    monkeypatch.setattr(distill_module, "TEACHER_SHARE", 1e-9)
    seen: list[int] = []
    original = distill_module.Distill.forward

    def forward(self, inputs, indices):
        seen.extend(indices.tolist())
        return original(self, inputs, indices)

    monkeypatch.setattr(distill_module.Distill, "forward", forward)
    run = tmp_path / "student"
    events = list(train(config_for(image_folder, run, objective="distill", teacher=str(teacher_run),
                                   epochs=0, minutes=0.05, batch_size=5)))
    assert events[-1].status == "completed", events[-1]
    covered = np.load(run / "teacher-features.npz")["indices"]
    assert len(covered) == 16 and list(covered) == sorted(covered)
    assert seen and set(seen) <= set(covered.tolist())
    plan = next(e for e in events if isinstance(e, RunStarted)).plan
    assert "the student trains on the 16 items the teacher encoded" in plan
    assert "minutes left for the steps" in plan


def test_an_image_student_on_a_cpu_takes_distillations_own_budget(image_folder, tmp_path):
    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    control = RunControl()
    events = []
    for event in train(config_for(image_folder, tmp_path / "student", objective="distill",
                                  teacher=str(teacher_run), epochs=0, minutes=0.0), control=control):
        events.append(event)
        if isinstance(event, RunStarted):
            control.cancel()  # the plan is what this test reads, not ten minutes of steps
    assert events[-1].status == "cancelled", events[-1]
    plan = next(e for e in events if isinstance(e, RunStarted)).plan
    assert "budget 10 minutes: distill's default for images on a CPU" in plan


def test_a_static_text_student_starts_as_the_teachers_piece_vectors(text_folder, tmp_path):
    texts = [p.read_text() for p in sorted(text_folder.rglob("*.txt"))]
    make_bert_folder(tmp_path / "minibert", texts)
    run = tmp_path / "student"
    events = list(train(TrainConfig(data=str(text_folder), out=str(run), objective="distill",
                                    teacher=str(tmp_path / "minibert"), epochs=3, batch_size=8,
                                    monitor_items=16, log_every_steps=1, text_width=16)))
    assert events[-1].status == "completed", events[-1]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.backbone == "word_vectors"
    assert "piece vectors start as the teacher's" in started.plan
    # Before any step, the student projected is the teacher's static approximation: the
    # weighted mean of the teacher's vectors of each piece alone.
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert steps[0].extra["cosine_to_teacher"] > 0.5, steps[0].extra


def test_teachers_that_cannot_teach_are_refused_with_what_to_give(tmp_path, image_folder):
    device = torch.device("cpu")
    with pytest.raises(DataError, match="teacher not found"):
        teacher_module.load_teacher(str(tmp_path / "nowhere"), "image", device)
    with pytest.raises(DataError, match="neither a run folder"):
        teacher_module.load_teacher(str(image_folder), "image", device)
    with pytest.raises(DataError, match="has no pretrained weights to teach with"):
        teacher_module.load_teacher("small_cnn", "image", device)
    (tmp_path / "junk.pth").write_bytes(b"not weights at all")
    with pytest.raises(DataError, match="not a weights file"):
        teacher_module.load_teacher(str(tmp_path / "junk.pth"), "image", device)
    make_bert_folder(tmp_path / "minibert", ["a few words", "and a few more"])
    with pytest.raises(DataError, match="encodes texts and the folder holds images"):
        teacher_module.load_teacher(str(tmp_path / "minibert"), "image", device)
    # Without a teacher, the run fails before the folder is scanned, and leaves nothing.
    with pytest.raises(DataError, match="distill needs a teacher"):
        list(train(config_for(image_folder, tmp_path / "run", objective="distill")))
    assert not (tmp_path / "run").exists()


def test_the_teachers_pass_can_be_cancelled(image_folder, tmp_path):
    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    teacher = teacher_module.load_teacher(str(teacher_run), "image", torch.device("cpu"))
    from sslstudio.core.control import Cancelled
    from sslstudio.core.data import load_image_folder

    data = run_to_end(load_image_folder(image_folder, 16))
    control = RunControl()
    control.cancel()
    with pytest.raises(Cancelled):
        run_to_end(teacher_module.teacher_targets(teacher, data, torch.device("cpu"), control,
                                                  0.0, 0.4, 0, chunk=4))


def test_under_torchrun_each_process_encodes_its_own_chunks_of_the_teachers_pass(image_folder, tmp_path,
                                                                               monkeypatch):
    """Chunk k of the seeded order is rank k mod 2's (tests/test_ddp.py runs two processes for
    real and checks that they end with one process's targets)."""
    from sslstudio.core import distributed
    from sslstudio.core.data import load_image_folder

    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    teacher = teacher_module.load_teacher(str(teacher_run), "image", torch.device("cpu"))
    from tests.conftest import make_image_folder

    # Chunks are at least 16 items: 60 items make four, two for each process.
    data = run_to_end(load_image_folder(make_image_folder(tmp_path / "many", per_class=20, size=16), 16))
    order = np.random.default_rng(0).permutation(len(data))  # the pass's seeded order
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "from_rank_zero", lambda value, device: value)
    monkeypatch.setattr(distributed, "gather_objects", lambda value: [value])  # this rank's part
    parts = {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        parts[rank] = run_to_end(teacher_module.teacher_targets(
            teacher, data, torch.device("cpu"), RunControl(), 60.0, 0.4, 0, chunk=5))
    chunk = teacher.preprocess.inference_batch(torch.device("cpu"), 5)  # the chunk it works in
    assert 2 * chunk < len(data)
    chunks = [order[start:start + chunk] for start in range(0, len(data), chunk)]
    assert sorted(parts[0].indices) == sorted(np.concatenate(chunks[0::2]))
    assert sorted(parts[1].indices) == sorted(np.concatenate(chunks[1::2]))
    monkeypatch.undo()
    whole = run_to_end(teacher_module.teacher_targets(teacher, data, torch.device("cpu"), RunControl(),
                                                      60.0, 0.4, 0, chunk=5))
    assert len(whole.indices) == len(data)  # (with one process: every chunk its own)


def test_a_clip_folder_teaches_through_its_image_tower(image_folder, tmp_path):
    from tests.test_zeroshot import make_clip_folder

    clip = make_clip_folder(tmp_path / "clip")
    teacher = teacher_module.load_teacher(str(tmp_path / "clip"), "image", torch.device("cpu"))
    assert teacher.feature_dim == 16 and teacher.preprocess.image_size == 32
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        # What zero-shot reads, before its unit normalisation.
        assert torch.allclose(torch.nn.functional.normalize(teacher.encoder(images), dim=1),
                              clip.encode_image(images), atol=1e-5)
    events = list(train(config_for(image_folder, tmp_path / "run", objective="distill",
                                   teacher=str(tmp_path / "clip"))))
    assert events[-1].status == "completed", events[-1]
    plan = next(e for e in events if isinstance(e, RunStarted)).plan
    assert "teacher clip (CLIP image tower at 32 px)" in plan
    with pytest.raises(DataError, match="encodes images and the folder holds texts"):
        teacher_module.load_teacher(str(tmp_path / "clip"), "text", torch.device("cpu"))


def test_a_static_students_folder_part_learns_skipgram_beside_the_teachers_part():
    from sslstudio.core.backbones.text_transformer import TextShape
    from sslstudio.core.backbones.word_vectors import WordVectors
    from sslstudio.core.config import from_dict
    from sslstudio.core.objectives.base import Preparation
    from sslstudio.core.objectives.distill import Distill, DistillConfig
    from sslstudio.core.objectives.skipgram import SkipGramConfig, sampled_windows, skipgram_loss
    from sslstudio.core.teacher import TeacherTargets
    from tests.test_skipgram import VOCAB, corpus

    encoder = WordVectors(TextShape(VOCAB.size, max_length=12, layers=0, width=16, heads=0))
    objective = Distill(encoder, DistillConfig(folder_share=0.25, folder_texts=0.5), VOCAB)
    objective.generator = torch.Generator().manual_seed(0)
    ids = corpus()
    objective.observe_corpus(ids.numpy())
    assert (objective.teacher_width, objective.folder_width) == (12, 4)
    special = list(VOCAB.special_ids)
    assert torch.all(encoder.token_weight[special] == 0) and torch.all(objective.folder_noise[special] == 0)
    teacher = np.random.default_rng(0).normal(size=(len(ids), 10)).astype(np.float16)
    objective.attach(Preparation(payload=(TeacherTargets(np.arange(len(ids)), teacher, 0.0, "t", "t", 0),
                                          None)), torch.device("cpu"))
    assert objective.projector.in_features == 12
    with torch.no_grad():
        objective.folder_output.weight.normal_()  # so the input vectors get a gradient too
    indices = torch.arange(8)
    batch = ids[:8]

    # The loss is distillation's on the first 12 coordinates plus skip-gram's, at skip-gram's
    # rate, on half the batch's texts and the last 4.
    state = objective.generator.get_state()
    loss, metrics = objective(batch, indices)
    objective.generator.set_state(state)
    scale = SkipGramConfig().lr / DistillConfig().lr
    student = objective.projector(encoder(batch)[:, :12])
    expected_distill = distill_loss(student, objective.targets[indices, 0], "cosine", 0.0)
    drawn, valid, reach, negatives = sampled_windows(batch[:4], objective.folder_keep,
                                                     objective.folder_noise, 5, 5, objective.generator)
    expected_folder, _ = skipgram_loss(encoder.token_vectors(drawn)[..., 12:] * scale,
                                       objective.folder_output.weight * scale, drawn, valid, reach,
                                       negatives)
    torch.testing.assert_close(loss, expected_distill + expected_folder)
    torch.testing.assert_close(metrics["folder_loss"], expected_folder.detach())

    # Each part moves only its own coordinates.
    table = encoder.token_embedding.weight
    distill_grad, = torch.autograd.grad(expected_distill, table, retain_graph=True)
    folder_grad, = torch.autograd.grad(expected_folder, table)
    assert torch.all(distill_grad[:, 12:] == 0) and distill_grad[:, :12].abs().sum() > 0
    assert torch.all(folder_grad[:, :12] == 0) and folder_grad[:, 12:].abs().sum() > 0
    # Skip-gram's output vectors take no decay.
    decayed, undecayed = objective.param_groups(1e-4)
    assert any(p is objective.folder_output.weight for p in undecayed["params"])
    assert not any(p is objective.folder_output.weight for p in decayed["params"])
    # A distillation saved before the folder part resumes without one.
    assert from_dict(DistillConfig, {"loss": "cosine"}).folder_share == 0.0
    assert from_dict(DistillConfig, {"folder_share": 0.5}).folder_share == 0.5


def test_a_teachers_crop_is_the_same_part_of_the_image_at_the_students_size():
    from sslstudio.core.data.augment import resampled, seeded_crops

    # A smooth image: a crop taken at 224 px and shrunk to 32 px shows what the same crop of the
    # 32 px copy shows.
    y, x = torch.meshgrid(torch.linspace(0, 1, 224), torch.linspace(0, 1, 224), indexing="ij")
    large = torch.stack([x, y, x * y])[None].expand(6, 3, 224, 224)
    small = torch.nn.functional.interpolate(large, size=32, mode="area")
    crops = seeded_crops(6, seed=3, min_area=0.35)
    assert torch.equal(crops, seeded_crops(6, seed=3, min_area=0.35))  # from the seed alone
    areas = (crops[:, 0, 0].abs() * crops[:, 1, 1])
    assert torch.all(areas >= 0.35 - 1e-6) and torch.all(areas <= 1.0)
    teacher_view = torch.nn.functional.interpolate(resampled(large, crops, 224), size=32, mode="area")
    student_view = resampled(small, crops, 32)
    assert (teacher_view - student_view).abs().max() < 0.03
    assert (teacher_view - small).abs().max() > 0.1  # and a crop is not the whole image


def test_a_student_is_shown_the_crops_its_teacher_encoded(image_folder, tmp_path, monkeypatch):
    teacher_run = tmp_path / "teacher"
    list(train(config_for(image_folder, teacher_run, objective="simclr")))
    run = tmp_path / "student"
    shown = []
    original = distill_module.resampled

    def spy(images, crops, size):
        shown.append(crops.clone())
        return original(images, crops, size)

    monkeypatch.setattr(distill_module, "resampled", spy)
    events = list(train(config_for(image_folder, run, objective="distill", teacher=str(teacher_run),
                                   epochs=2),
                        objective_config=distill_module.DistillConfig(teacher_views=3)))
    assert events[-1].status == "completed", events[-1]
    assert "and 2 crops of each, which the student is shown too" in \
        next(e for e in events if isinstance(e, RunStarted)).plan
    saved = np.load(run / "teacher-features.npz")
    assert saved["view_features"].shape == (24, 2, saved["features"].shape[1])
    assert saved["view_crops"].shape == (24, 2, 2, 3)
    # Each crop the teacher encoded is what it would encode of that crop of the item.
    teacher = teacher_module.load_teacher(str(teacher_run), "image", torch.device("cpu"))
    from sslstudio.core.data import load_image_folder
    from sslstudio.core.control import run_to_end as drain

    data = drain(load_image_folder(image_folder, 16))
    again = teacher.encode(data, np.arange(3), "cpu", torch.from_numpy(saved["view_crops"][:3, 1]))
    np.testing.assert_allclose(again.numpy(), saved["view_features"][:3, 1].astype(np.float32),
                               atol=2e-2, rtol=1e-2)
    # The student was shown the whole item and the teacher's crops, no other.
    known = torch.cat([torch.eye(2, 3)[None], torch.from_numpy(saved["view_crops"]).flatten(0, 1)])
    seen = torch.cat(shown)
    assert all(torch.isclose(known, crop).flatten(1).all(1).any() for crop in seen)
    assert any(not torch.equal(crop, torch.eye(2, 3)) for crop in seen)


@pytest.mark.parametrize("spread_rule", ["whole", "capped", "equal"])
def test_the_teachers_targets_are_centred_and_scaled_as_the_probe_reads_them(spread_rule):
    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.objectives.base import Preparation
    from sslstudio.core.objectives.distill import Distill, DistillConfig
    from sslstudio.core.teacher import TeacherTargets

    rng = np.random.default_rng(0)
    # Coordinates of very different spreads, one constant but for float16 rounding.
    spreads = np.array([100.0, 10.0, 1.0, 0.1, 0.0])
    teacher = (5.0 + rng.normal(size=(400, 5)) * spreads).astype(np.float16)
    teacher[::2, 4] += np.float16(0.002)
    objective = Distill(build_backbone("small_cnn", 32),
                        DistillConfig(target_spread=spread_rule), None)
    objective.attach(Preparation(payload=(TeacherTargets(np.arange(400), teacher, 0.0, "t", "t", 0),
                                          None)), torch.device("cpu"))
    targets = objective.targets[:, 0].double()
    torch.testing.assert_close(targets.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert abs(float(targets.norm(dim=1).mean()) - 1.0) < 1e-5
    spread = targets.std(0)
    if spread_rule == "equal":
        # The four coordinates that vary weigh the same; the fifth stays near nothing.
        assert float(spread[:4].max() / spread[:4].min()) < 1.01
        assert float(spread[4]) < 0.1 * float(spread[:4].min())
    elif spread_rule == "capped":
        # The two wider than the median (the third) are brought down to it; the narrower ones
        # keep their spreads, none made wider.
        assert float(spread[:3].max() / spread[:3].min()) < 1.01
        assert 9.0 < float(spread[2] / spread[3]) < 11.0
        assert float(spread[4]) < 0.1 * float(spread[3])
    else:
        assert float(spread[0] / spread[1]) > 9.0
