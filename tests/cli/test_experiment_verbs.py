"""The experiment and run verbs behave the same in both doors: ``stop --reason``, ``status``/``list`` texts
(``interrupted`` and its resume hint from one place), ``register`` of an experiment or a run id, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jupyter_avml.cli.records import resume_hint
from jupyter_avml.sweep import ExperimentHandle, attach
from tests.cli.doors import avml, cell, magics
from tests.notebook.conftest import ScriptedSweep


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def interrupted(workspace, name: str) -> ScriptedSweep:
    """An experiment left running by a driver that is gone."""
    sweep = ScriptedSweep(workspace, name, iterations=2)
    sweep.start_child(0)
    sweep.epoch(0, 1, 0.5)
    sweep.driver_file(alive=False)
    return sweep


def test_stop_takes_a_reason_in_both_doors(shell, tmp_path, capsys):
    workspace = tmp_path / "ws"
    interrupted(workspace, "a")
    interrupted(workspace, "b")
    code, out, err = avml(capsys, "--workspace", workspace, "stop", "a", "--reason", "enough of a")
    assert code == 0 and out.strip() == "asked experiment a to stop (its children stop after their current batch)"
    ok, nb_out, err, _ = cell(shell, f"%avml stop b --reason 'enough of b' --workspace {workspace}")
    assert ok, err
    assert nb_out.strip() == "asked experiment b to stop (its children stop after their current batch)"
    for name in "ab":
        state = attach(name, workspace).state
        assert state.status == "stopped" and state.reason == f"enough of {name}"
        assert state.children[0].reason == f"enough of {name}"
    # Stopping again: the same sentence in both doors.
    code, out, _ = avml(capsys, "--workspace", workspace, "stop", "a")
    ok, nb_out, _, _ = cell(shell, f"%avml stop a --workspace {workspace}")
    assert out == nb_out == "experiment a has already ended (stopped)\n"
    code, out, _ = avml(capsys, "--workspace", workspace, "stop", "a", "--json")
    assert json.loads(out) == {"name": "a", "child": None, "stop_requested": False, "status": "stopped"}


def test_interrupted_and_its_resume_hint_come_from_one_place(shell, tmp_path, capsys):
    workspace = tmp_path / "ws"
    interrupted(workspace, "gone")
    assert ExperimentHandle("gone", workspace).status == "interrupted"
    code, out, _ = avml(capsys, "--workspace", workspace, "status", "gone")
    assert code == 0 and out.startswith("experiment gone: interrupted (")
    assert resume_hint("gone", "avml") in out and "`avml resume gone`" in out
    ok, nb_out, err, _ = cell(shell, f"%avml status gone --workspace {workspace}")
    assert ok, err
    assert nb_out.startswith("gone: image-classification, interrupted, ") and resume_hint("gone", "%avml") in nb_out
    assert "h.resume()" not in nb_out  # the dashboard's own hint is not used
    code, out, _ = avml(capsys, "--workspace", workspace, "list")
    assert code == 0 and "gone" in out and " interrupted " in out
    ok, _, _, outputs = cell(shell, f"%avml list --workspace {workspace}")
    assert ok and 'data-name="gone" data-status="interrupted"' in outputs[0].data["text/html"]
    assert " interrupted " in outputs[0].data["text/plain"]
    code, out, _ = avml(capsys, "--workspace", workspace, "status", "gone", "--json")
    assert json.loads(out)["status"] == "interrupted"


def test_status_without_name_means_the_last_experiment_here_else_all(shell, tmp_path, capsys):
    workspace = tmp_path / "ws"
    interrupted(workspace, "first")
    interrupted(workspace, "second")
    code, out, _ = avml(capsys, "--workspace", workspace, "status")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["name", "task", "status"] and "second" in out
    magics(shell).last_experiment = None
    ok, nb_out, err, outputs = cell(shell, f"%avml status --workspace {workspace}")
    assert ok and 'data-name="first"' in outputs[0].data["text/html"]
    magics(shell).last_experiment = ("first", workspace)
    ok, nb_out, err, _ = cell(shell, f"%avml status --workspace {workspace}")
    assert ok and nb_out.startswith("first: image-classification, interrupted")


def test_an_interrupted_run_is_listed_with_its_hint(shell, tmp_path, capsys):
    workspace = tmp_path / "ws"
    run_dir = workspace / "runs" / "0123456789abcdef0123456789abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_dir.name, "task": "image-classification", "model_name": "resnet18", "status": "running",
        "pid": _dead_pid(), "created": 1.0, "primary_metric": "accuracy"}))
    code, out, _ = avml(capsys, "--workspace", workspace, "runs", "list")
    assert code == 0 and " interrupted\n" in out and resume_hint(run_dir.name, "avml") in out
    ok, nb_out, err, _ = cell(shell, f"%avml runs list --workspace {workspace}")
    assert ok and resume_hint(run_dir.name, "%avml") in nb_out
    code, out, _ = avml(capsys, "--workspace", workspace, "runs", "show", run_dir.name[:8])
    assert code == 0 and "interrupted" in out and resume_hint(run_dir.name, "avml") in out


@pytest.fixture(scope="module")
def trained_run(module_tmp, tiny_shapes, empty_tracking_db):
    """One real run (1 epoch on 16 images of 32 px) in its own workspace: (workspace, run id)."""
    import shutil

    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.training.run import train

    workspace = module_tmp / "ws"
    workspace.mkdir()
    shutil.copyfile(empty_tracking_db, workspace / "mlflow.db")
    config = AutoMLImageConfig(task="image-classification", training_data=str(tiny_shapes), model_name="resnet18",
                               pretrained=0, number_of_epochs=1, train_crop_size=32, valid_resize_size=32,
                               valid_crop_size=32, training_batch_size=8, cpu_threads=1, device="cpu")
    summary = train(config, workspace=workspace)
    assert summary.status == "completed"
    return workspace, summary.run_id


@pytest.mark.slow  # the first test of the module to use ``trained_run`` trains it (~8 s on 2 CPU cores)
def test_register_takes_a_run_id_in_both_doors(shell, trained_run, capsys):
    workspace, run_id = trained_run
    code, out, err = avml(capsys, "--workspace", workspace, "register", run_id[:8], "by-run")
    assert code == 0 and out == "1\n"  # the version alone on stdout, for scripts
    assert err.strip() == f"registered the model of run {run_id} as by-run version 1"
    ok, nb_out, err, _ = cell(shell, f"%avml register {run_id[:8]} by-run --workspace {workspace}")
    assert ok, err
    assert nb_out.strip() == f"registered the model of run {run_id} as by-run version 2"
    code, out, _ = avml(capsys, "--workspace", workspace, "register", run_id, "by-run", "--json")
    assert json.loads(out) == {"model_name": "by-run", "version": 3, "run_id": run_id, "experiment": None,
                               "child": None, "uri": "models:/by-run/3"}
    code, _, err = avml(capsys, "--workspace", workspace, "register", "nothing-here", "x")
    assert code == 2 and "'nothing-here' is neither an experiment nor a run" in err
    ok, _, err, _ = cell(shell, f"%avml register nothing-here x --workspace {workspace}")
    assert not ok and "'nothing-here' is neither an experiment nor a run" in err and "%avml runs list" in err


@pytest.mark.slow
def test_runs_show_json_in_both_doors(shell, trained_run, capsys):
    workspace, run_id = trained_run
    code, out, _ = avml(capsys, "--workspace", workspace, "runs", "show", run_id[:8], "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "completed" and shown["metrics"]["accuracy"] >= 0
    ok, nb_out, err, _ = cell(shell, f"%avml runs show {run_id[:8]} --json --workspace {workspace}")
    assert ok and json.loads(nb_out)["run_id"] == run_id
    assert os.path.isfile(shown["model_path"])
