"""The project session: what the window shows of one project, without Qt."""

from __future__ import annotations

import json

from sslstudio.core.project import Project
from sslstudio.core.project_session import ProjectSession
from sslstudio.core.run.folder import RunFolder


def make_run(project: Project, name: str, status: str | None, step: int = 7):
    run = project.runs_dir / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text('[train]\nobjective = "simclr"\nbackbone = "small_cnn"\n')
    if status is not None:
        RunFolder(run).write_status(status, step, "")
    return run


def test_runs_read_from_their_folders_except_the_one_training_here(tmp_path):
    project = Project.create(tmp_path / "project")
    done = make_run(project, "20260101-000000-simclr", "completed", 40)
    stopped = make_run(project, "20260102-000000-simclr", "cancelled", 12)
    session = ProjectSession(project)
    rows = {row.summary.path: row for row in session.run_rows(live_run=None, paused=False)}
    assert rows[done].status == "completed" and rows[done].text.endswith("completed, step 40")
    assert rows[stopped].status == "stopped"
    live = {row.summary.path: row for row in session.run_rows(live_run=str(stopped), paused=True)}
    assert live[stopped].status == "paused" and "step" not in live[stopped].text
    assert ProjectSession().run_rows(None, False) == []  # no project: no runs


def test_the_banner_speaks_of_one_run_and_goes_when_another_is_chosen(tmp_path):
    session = ProjectSession(Project.create(tmp_path / "project"))
    assert not session.run_warning("slow_data", "the disk is slow", "/runs/a")  # not a banner's
    assert session.banner is None
    assert session.run_warning("best_encoder", "step 3's encoder is kept", "/runs/a")
    assert session.banner.tone == "notice"
    session.select_run("/runs/a")
    assert session.banner is not None  # the same run: it stays
    session.select_run("/runs/b")
    assert session.banner is None
    assert session.run_warning("collapse", "features collapsed", "")
    assert session.banner.tone == "problem"
    session.select_run("/runs/b")
    assert session.banner is not None  # a banner of no run in particular stays
    session.dismiss_banner()
    assert session.banner is None


def test_an_export_counts_for_its_own_run_and_survives_a_reopen(tmp_path):
    project = Project.create(tmp_path / "project")
    run = make_run(project, "20260101-000000-simclr", "completed")
    classifier = run / "adapted" / "20260101-000100-linear"
    export = project.path / "exports" / "model"
    export.mkdir(parents=True)
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "model.json").write_text(json.dumps({"model": {"adapted": str(classifier)}}))
    session = ProjectSession(project)
    assert session.export_of_run(run) == str(export)
    assert session.export_of_run(tmp_path / "another-run") == ""
    assert session.export_of_run(None) == ""
    session.exported(str(tmp_path / "elsewhere"), str(tmp_path / "another-run"))
    assert session.export_of_run(run) == "" and session.export_of_run(tmp_path / "another-run")


def test_a_completed_run_asks_for_its_map_once(tmp_path):
    session = ProjectSession(Project.create(tmp_path / "project"))
    session.run_completed(tmp_path / "run")
    assert session.take_map_after_run() == tmp_path / "run"
    assert session.take_map_after_run() is None


def test_a_new_session_holds_nothing_of_the_last(tmp_path):
    first = ProjectSession(Project.create(tmp_path / "one"))
    first.run_warning("collapse", "collapsed", "")
    first.history.append(step=1, loss=2.0)
    first.run_completed(tmp_path / "run")
    second = ProjectSession(Project.create(tmp_path / "two"))
    assert second.banner is None and second.history.size == 0 and second.data_set is None
    assert second.take_map_after_run() is None and second.exported_to == ""
