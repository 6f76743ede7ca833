"""Hostile input at the two doors, ``avml`` (in-process, ``cli.main.main``) and ``%avml`` (an IPython shell).

Each case: the hostile input, and the bounded answer expected.

* a damaged ``state.json`` (truncated, not JSON, not UTF-8, not a record, empty): ``status``, ``best``, ``stop``,
  ``sweep --resume``, ``resume``, ``register`` print one line naming the file and what can still be done
  (exit status 2 / a one-line ``UsageError``); ``list`` and ``status`` keep the experiment, marked damaged;
* a damaged or missing ``run.json``: ``runs list`` keeps the run, marked damaged; ``runs show``,
  ``train --resume`` and ``resume`` print one line naming the file;
* a sweep whose every child failed or was invalid: ``avml sweep`` exits 1 and says so in one line (as does
  ``%%avml --foreground``); a sweep the user stopped, or with a completed child, exits 0;
* ``--dry-run`` on bad data: the problems are shown as ``avml validate`` shows them, and the dry run fails;
* bad words on a magic's line: one ``UsageError`` line naming the argument, never a traceback.
"""

from __future__ import annotations

import json

import pytest

from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.sweep import Experiment, ExperimentHandle
from tests.cli.doors import avml, cell, notebook_shell, one_line
from tests.notebook.conftest import ScriptedSweep


@pytest.fixture(scope="module")
def shell():
    ip = notebook_shell()
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_avml")  # through IPython, so that the next load_ext loads


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("hostile-shapes"), "image-classification", n=12, size=32, seed=5,
                       color_by_class=True)


# -- a damaged state.json -------------------------------------------------------------------------------------
DAMAGED_STATES = {
    "truncated": b'{"name": "x", "task": "image-classification", "primary_',
    "not-json": b"state\x00garbage",
    "not-utf8": b'\xff\xfe{"name": "x"}',
    "json-list": b"[1, 2, 3]",
    "missing-fields": b'{"name": "x"}',
    "wrong-child": b'{"name": "x", "task": "t", "primary_metric": "accuracy", "children": [5]}',
    "empty": b"",
}


@pytest.mark.parametrize("damage", DAMAGED_STATES, ids=str)
def test_a_damaged_state_json_is_one_line_in_both_doors(shell, tmp_path, capsys, damage):
    workspace = tmp_path / "ws"
    ScriptedSweep(workspace, "fine", iterations=1).finish()
    broken = ScriptedSweep(workspace, "broken", iterations=1)
    broken.driver_file(alive=False)  # damaged while no driver runs it (a running driver would rewrite the file)
    (broken.folder / "experiment.yaml").write_text("task: image-classification\n")
    state_file = broken.folder / "state.json"
    state_file.write_bytes(DAMAGED_STATES[damage])
    for argv in (["status", "broken"], ["best", "broken"], ["stop", "broken"], ["stop", "broken", "--child", "0"],
                 ["sweep", "--resume", "broken"], ["resume", "broken"], ["register", "broken", "m"]):
        code, out, err = avml(capsys, "--workspace", workspace, *argv)
        line = one_line(err)
        assert code == 2 and out == "", argv
        assert line.startswith(f"avml {argv[0]}: error: {state_file} is damaged ("), line
        resubmit = f"`avml sweep {broken.folder / 'experiment.yaml'} --name NEW_NAME`"
        assert "`avml runs list`" in line and resubmit in line
        ok, _, err, _ = cell(shell, f"%avml {' '.join(argv)} --workspace {workspace}")
        assert not ok and f"%avml {argv[0]}: {state_file} is damaged (" in one_line(err)
        assert "`%avml runs list`" in err
    for argv in (["list"], ["status"]):
        code, out, err = avml(capsys, "--workspace", workspace, *argv)
        assert code == 0 and err == ""
        rows = out.splitlines()
        assert rows[1].split()[:3] == ["fine", "image-classification", "completed"]
        assert rows[2].split()[:3] == ["broken", "-", "damaged"] and f"{state_file} is damaged" in rows[3]
    code, out, _ = avml(capsys, "--workspace", workspace, "list", "--json")
    assert [(e["name"], e["status"]) for e in json.loads(out)] == [("fine", "completed"), ("broken", "damaged")]
    ok, _, err, outputs = cell(shell, f"%avml list --workspace {workspace}")
    assert ok and 'data-name="broken" data-status="damaged"' in outputs[0].data["text/html"]


# -- a damaged run.json ---------------------------------------------------------------------------------------
RUN_ID = "0123456789abcdef0123456789abcdef"
DAMAGED_RUNS = {
    "truncated": b'{"run_id": "0123", "status": "runn',
    "not-utf8": b"\xff\xfe\x00\x00",
    "json-list": b'["completed"]',
    "empty-record": b"{}",
    "empty-file": b"",
    "pid-not-a-number": json.dumps({"run_id": RUN_ID, "status": "running", "pid": "abc"}).encode(),
}


@pytest.mark.parametrize("damage", DAMAGED_RUNS, ids=str)
def test_a_damaged_run_json_is_one_line_in_both_doors(shell, tmp_path, capsys, damage):
    workspace = tmp_path / "ws"
    run_dir = workspace / "runs" / RUN_ID
    (run_dir / "outputs").mkdir(parents=True)
    (run_dir / "outputs" / "model.pt").write_bytes(b"weights")
    (run_dir / "config.yaml").write_text("task: image-classification\n")
    run_file = run_dir / "run.json"
    run_file.write_bytes(DAMAGED_RUNS[damage])
    code, out, err = avml(capsys, "--workspace", workspace, "runs", "list")
    assert code == 0 and err == "" and f"{RUN_ID}  " in out and " damaged" in out
    assert f"{run_file} is damaged (" in out and f"its model file {run_dir / 'outputs' / 'model.pt'} is intact" in out
    for argv in (["runs", "show", RUN_ID[:8]], ["train", "--resume", RUN_ID[:8]], ["resume", RUN_ID]):
        code, out, err = avml(capsys, "--workspace", workspace, *argv)
        line = one_line(err)
        assert code == 2 and line.startswith(f"avml {' '.join(argv[:2]) if argv[0] == 'runs' else argv[0]}: error: "
                                             f"{run_file} is damaged ("), line
        assert f"`avml train {run_dir / 'config.yaml'}`" in line
        ok, _, err, _ = cell(shell, f"%avml {' '.join(argv)} --workspace {workspace}")
        assert not ok and f"{run_file} is damaged (" in one_line(err) and "`%avml train " in err
    code, out, _ = avml(capsys, "--workspace", workspace, "runs", "list", "--json")
    assert json.loads(out)[0]["status"] == "damaged"


def test_a_run_folder_without_run_json(shell, tmp_path, capsys):
    workspace = tmp_path / "ws"
    (workspace / "runs" / RUN_ID).mkdir(parents=True)
    code, out, _ = avml(capsys, "--workspace", workspace, "runs", "list")
    assert code == 0 and out.startswith("no runs yet")  # a run being created: not listed yet
    code, _, err = avml(capsys, "--workspace", workspace, "runs", "show", RUN_ID)
    assert code == 2 and f"{workspace / 'runs' / RUN_ID / 'run.json'} is missing" in one_line(err)


# -- a sweep with no completed child --------------------------------------------------------------------------
def scripted_submit(outcome: str):
    """``Experiment.submit`` replaced by a scripted experiment that has ended with ``outcome``."""

    def submit(self, config, *, resume=False):
        sweep = ScriptedSweep(self.workspace.root, self.name, iterations=2)
        sweep.start_child(0)
        if outcome == "one-completed":
            sweep.epoch(0, 1, 0.7)
            sweep.finish_child(0)
            model = self.workspace.root / "runs" / sweep.run_id(0) / "outputs" / "model.pt"
            model.write_bytes(b"weights")
            sweep.state.child(0).model_path = str(model)
        else:
            sweep.finish_child(0, "failed" if outcome != "stopped" else "stopped", error="CUDA out of memory")
        child = sweep.state.child(1)
        child.status, child.error = ("invalid", "learning_rate must be in [0, 1]") if outcome != "stopped" else \
            ("stopped", None)
        sweep.finish("stopped" if outcome == "stopped" else "completed")
        sweep.driver_file(alive=False)
        return ExperimentHandle(self.name, self.workspace)

    return submit


@pytest.fixture
def sweep_file(tmp_path, shapes, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "ws"))
    body = f"task: image-classification\ntraining_data: {shapes}\nmodel_name: resnet18\n"
    (tmp_path / "exp.yaml").write_text(body)
    return body


def test_a_sweep_with_no_completed_child_exits_1(shell, sweep_file, monkeypatch, capsys):
    monkeypatch.setattr(Experiment, "submit", scripted_submit("all-failed"))
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--name", "nothing")
    assert code == 1 and "experiment nothing: completed (1 failed, 1 invalid;" in out
    assert one_line(err) == "avml sweep: experiment nothing ended (completed) with no completed child " \
                            "(1 failed, 1 invalid)"
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--name", "nothing-json", "--json")
    assert code == 1 and json.loads(out)["best"] is None and "with no completed child" in one_line(err)
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--name", "nothing-detached", "--detach")
    assert code == 0 and err == ""  # detached: the outcome is not known yet
    ok, _, err, _ = cell(shell, f"%%avml nothing-cell --foreground\n{sweep_file}")
    assert not ok and one_line(err).endswith("avml: experiment nothing-cell ended (completed) with no completed "
                                             "child (1 failed, 1 invalid)")
    ok, _, err, _ = cell(shell, "%avml sweep exp.yaml --name nothing-line --foreground")
    assert not ok and "%avml sweep: experiment nothing-line ended (completed) with no completed child" in err
    ok, _, err, _ = cell(shell, f"%%avml nothing-background\n{sweep_file}")
    assert ok, err  # in the background: the dashboard says how it ends


@pytest.mark.parametrize("outcome", ["one-completed", "stopped"])
def test_a_sweep_with_a_model_or_stopped_by_the_user_exits_0(sweep_file, monkeypatch, capsys, outcome):
    monkeypatch.setattr(Experiment, "submit", scripted_submit(outcome))
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--name", "fine")
    assert code == 0 and err == ""
    if outcome == "one-completed":
        assert "best child 0 (resnet18, completed): accuracy 0.7000" in out


# -- the dry run checks the data ------------------------------------------------------------------------------
def test_the_dry_run_shows_the_problems_of_the_data(shell, sweep_file, tmp_path, capsys, shapes):
    broken = tmp_path / "broken.jsonl"
    rows = shapes.read_text().splitlines()[:4]
    absolute = [json.dumps({**json.loads(r), "image_url": str(shapes.parent / json.loads(r)["image_url"])})
                for r in rows]
    broken.write_text("\n".join(absolute + ['{"image_url": "missing.png", "label": "circle"}', "not json"]) + "\n")
    other = tmp_path / "other.jsonl"  # a class the training data does not have
    other.write_text(json.dumps({**json.loads(absolute[0]), "label": "hexagon"}) + "\n")
    body = sweep_file.replace(str(shapes), str(broken)) + f"validation_data: {other}\n"
    (tmp_path / "bad.yaml").write_text(body)
    ok, _, err, outputs = cell(shell, f"%%avml checked --dry-run\n{body}")
    assert not ok and one_line(err).endswith("avml: data: problems found: the experiment would be refused (fix "
                                             "them, or set skip_invalid: 1)")
    text, html = outputs[0].data["text/plain"], outputs[0].data["text/html"]
    assert f"{broken}:5: image_url" in text and f"{broken}:6:" in text  # as `avml validate` lists them
    assert f"{other}:1: label" in text and "hexagon" in text
    assert 'data-data-ok="false"' in html and 'data-key="validation_data" data-ok="false"' in html
    code, out, err = avml(capsys, "sweep", "bad.yaml", "--dry-run")
    assert code == 2 and f"{broken}:5: image_url" in out
    assert one_line(err) == "avml sweep: data: problems found: the experiment would be refused (fix them, or set " \
                            "skip_invalid: 1)"
    code, out, err = avml(capsys, "validate", broken, "--task", "image-classification")
    assert code == 2 and f"{broken}:5: image_url" in out  # the same problems
    code, out, err = avml(capsys, "sweep", "bad.yaml", "--dry-run", "--set", "skip_invalid=1",
                          "--set", "validation_data=")
    assert code == 0 and "skip_invalid is set, so the rows with problems would be left out" in out
    assert not (tmp_path / "ws").exists()


# -- bad words on a magic's line --------------------------------------------------------------------------------
@pytest.mark.parametrize("source, words", [
    ("%avml stop x --child two", "%avml stop: argument --child: invalid int value: 'two'"),
    ("%avml sweep", "an experiment file is required: %avml sweep CONFIG.yaml"),
    ("%avml sweep exp.yaml --resume x", "--resume NAME takes no CONFIG, --set or --dry-run"),
    ("%avml train --resume 0123456789ab", "no run '0123456789ab'"),
    ("%avml status 'unclosed", "No closing quotation"),
    ("%%avml --set\ntask: image-classification", "%%avml: argument --set: expected one argument"),
    ("%avml resume nosuch", "'nosuch' is neither an experiment nor a run"),
    ("%avml attach bad/name", "no experiment 'bad/name'"),
    ("%avml help nosuch", "no verb 'nosuch'"),
    ("%avml sweep exp.yaml --var 2x", "--var '2x' is not a Python variable name"),
    ("%avml sweep exp.yaml --set learning_rate=[1", "--set learning_rate: the value '[1' is not valid YAML"),
])
def test_magic_errors_are_one_line(shell, sweep_file, source, words):
    ok, out, err, _ = cell(shell, source)
    assert not ok and words in one_line(err), err


@pytest.mark.slow  # a real driver and worker (~10 s on 2 CPU cores)
def test_a_real_sweep_whose_children_all_fail_exits_1(workspace, tmp_path, shapes, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    config = tmp_path / "fail.yaml"
    config.write_text(f"task: image-classification\ntraining_data: {shapes}\nmodel_name: resnet18\npretrained: 1\n"
                      f"pretrained_weights: {garbage}\nnumber_of_epochs: 1\ntrain_crop_size: 32\n"
                      f"valid_resize_size: 32\nvalid_crop_size: 32\ntraining_batch_size: 8\ncpu_threads: 1\n"
                      f"device: cpu\niterations: 1\n")
    code, out, err = avml(capsys, "sweep", config, "--name", "all-fail")
    assert code == 1 and "experiment all-fail: completed (1 failed;" in out
    assert one_line(err) == "avml sweep: experiment all-fail ended (completed) with no completed child (1 failed)"
    assert ExperimentHandle("all-fail", workspace).wait(timeout=30).status == "completed"
