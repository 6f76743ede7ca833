"""The magics through a real IPython ``InteractiveShell``: loading, argument parsing, error messages, dry runs,
the CLI verbs, and experiments started, watched, attached and stopped from cells."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_avml.data.shapes import make_shapes


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_avml")
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_avml")  # through IPython, so that the next load_ext loads


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("magic-data"), "image-classification", n=24, size=32, seed=3,
                       color_by_class=True)


@pytest.fixture
def here(tmp_path, monkeypatch, shapes):
    """A notebook folder holding data/ (the shapes), as the kernel's working directory."""
    (tmp_path / "data").symlink_to(shapes.parent, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path


def run(shell, source: str):
    """Run one cell; returns (result, stdout, stderr, outputs)."""
    with capture_output() as captured:
        result = shell.run_cell(textwrap.dedent(source).strip("\n"), store_history=False)
    return result, captured.stdout, captured.stderr, captured.outputs


# -- loading ---------------------------------------------------------------------------------------------
def test_load_ext_is_fast_and_imports_nothing_heavy():
    code = textwrap.dedent("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        before = set(sys.modules)
        began = time.perf_counter()
        ip.run_line_magic("load_ext", "jupyter_avml")
        took = time.perf_counter() - began
        heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before}
                       & {"torch", "torchvision", "timm", "mlflow", "pandas", "ipywidgets", "matplotlib",
                          "optuna", "ultralytics", "fiftyone", "numpy"})
        print(took, heavy, "avml" in ip.magics_manager.magics["line"], "avml" in ip.magics_manager.magics["cell"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    took, heavy, line, cell = float(out[0]), out[1], out[2], out[3]
    assert took < 1.0 and heavy == "[]" and line == cell == "True", out


def test_help_lists_every_verb(shell):
    result, out, _, _ = run(shell, "%avml help")
    assert result.success
    for verb in ("list", "status", "attach", "stop", "best", "register", "validate", "convert", "%%avml"):
        assert verb in out


# -- errors in the cell: short, with the line and the key ------------------------------------------------------
@pytest.mark.parametrize("body, line, key, words", [
    ("""
     task: image-classification
     training_data: data/multiclass.jsonl
     learning_rate: -1
     """, 4, "learning_rate", "learning_rate must be"),
    ("""
     task: image-classification
     training_data: data/multiclass.jsonl
     model_name: resnet18
     lerning_rate: 0.01
     """, 5, "lerning_rate", "did you mean 'learning_rate'"),
    ("""
     task: image-classification
     training_data: data/multiclass.jsonl
     search_space:
       learning_rate: uniform(0.001, 0.1)
     limits:
       max_trials: 0
     """, 7, "limits.max_trials", "must be an integer in [1, 1000]"),
    ("""
     task: image-classification
     training_data: [data/multiclass.jsonl
     """, 4, None, "YAML syntax error"),
    ("""
     task: image-classification
     training_data: data/missing.jsonl
     """, 3, "training_data", "no such file"),
])
def test_errors_point_at_the_cell_line_and_key_without_a_traceback(shell, here, body, line, key, words):
    result, out, err, _ = run(shell, "%%avml bad\n" + textwrap.dedent(body).strip("\n"))
    assert not result.success
    assert "Traceback" not in err + out and "File \"" not in err
    assert f"cell line {line}" in err, err
    assert words in err, err
    if key is not None:
        assert f"key {key!r}" in err
    source_lines = ("%%avml bad\n" + textwrap.dedent(body).strip("\n")).splitlines()
    if line <= len(source_lines):
        assert f"{line:>3} | {source_lines[line - 1]}" in err
    assert not (here / "ws" / "experiments" / "bad").exists()  # nothing started


def test_bad_magic_arguments_are_usage_errors(shell, here):
    for source, words in [("%%avml --var 1x --dry-run\ntask: image-classification", "not a Python variable"),
                          ("%%avml --bogus\ntask: image-classification", "unrecognized arguments: --bogus"),
                          ("%%avml bad/name\ntask: image-classification",
                           "experiment name must be 1-100 letters, digits, "
                           "'.', '_' or '-' (starting with a letter or digit), got 'bad/name'"),
                          ("%%avml x\n# only a comment", "the cell holds no settings"),
                          ("%avml stop", "the following arguments are required: NAME"),
                          ("%avml frobnicate", "invalid choice: 'frobnicate'"),
                          ("%avml status nosuch", "no experiment 'nosuch'"),
                          ("%avml validate data/multiclass.jsonl", "the following arguments are required: --task")]:
        result, out, err, _ = run(shell, source)
        assert not result.success, source
        assert words in err, (source, err)
        assert "Traceback" not in err


# -- dry run, variables -------------------------------------------------------------------------------------
def test_dry_run_resolves_and_counts_without_starting(shell, here):
    result, out, err, outputs = run(shell, """
        %%avml trial --dry-run
        task: image-classification
        training_data: data/multiclass.jsonl
        model_name: resnet18
        sampling: grid
        search_space:
          learning_rate: choice(0.01, 0.05)
          optimizer: choice('sgd', 'adam')
        iterations: 10
        """)
    assert result.success, err
    html = outputs[0].data["text/html"]
    assert 'data-configurations="4"' in html  # a 2 x 2 grid caps the 10 iterations
    text = outputs[0].data["text/plain"]
    assert "4 configurations, nothing started" in text
    assert "learning_rate=0.01, optimizer=sgd" in text and "learning_rate=0.05, optimizer=adam" in text
    assert "number_of_epochs: " in text and "(default)" in text  # every default filled in
    assert not (here / "ws").exists()
    # A single model without a search space is one configuration (a baseline).
    result, _, err, outputs = run(shell, """
        %%avml baseline --dry-run
        task: image-classification
        training_data: data/multiclass.jsonl
        """)
    assert result.success, err
    assert "1 configuration, nothing started" in outputs[0].data["text/plain"]


def test_line_variables_expand_but_the_yaml_body_is_left_alone(shell, here):
    shell.user_ns["exp_name"] = "expanded-name"
    shell.user_ns["path"] = "data/multiclass.jsonl"
    result, _, err, outputs = run(shell, """
        %%avml $exp_name --dry-run
        task: image-classification
        training_data: data/multiclass.jsonl
        run_name: "{path}-$path"
        """)
    assert result.success, err
    text = outputs[0].data["text/plain"]
    assert "dry run of expanded-name" in text
    assert "run_name: {path}-$path" in text


def test_set_overrides_keys_of_the_body_with_expanded_values(shell, here):
    shell.user_ns["epochs"] = 7
    result, _, err, outputs = run(shell, """
        %%avml over --dry-run --set number_of_epochs={epochs} --set limits.max_trials=3 --set sampling=random
        task: image-classification
        training_data: data/multiclass.jsonl
        number_of_epochs: 100
        search_space:
          learning_rate: uniform(0.001, 0.1)
        limits:
          max_trials: 50
        """)
    assert result.success, err
    text = outputs[0].data["text/plain"]
    assert "3 configurations, nothing started" in text and "number_of_epochs: 7\n" in text
    result, _, err, _ = run(shell, """
        %%avml over --dry-run --set number_of_epochs=-2
        task: image-classification
        training_data: data/multiclass.jsonl
        number_of_epochs: 100
        """)
    assert not result.success and "key 'number_of_epochs'" in err and "cell line" not in err
    result, _, err, _ = run(shell, "%%avml over --dry-run --set number_of_epochs\ntask: image-classification")
    assert not result.success and "--set expects KEY=VALUE" in err


# -- the CLI verbs ------------------------------------------------------------------------------------------
def test_validate_and_convert_call_the_cli_code(shell, here):
    result, out, err, _ = run(shell, "%avml validate data/multiclass.jsonl --task image-classification")
    assert result.success, err
    assert "24 rows, 24 valid, 0 rejected" in out and "OK: no problems found" in out, out
    broken = here / "broken.jsonl"
    broken.write_text('{"image_url": "nowhere.png", "label": "circle"}\n{"oops": 1}\n')
    result, out, err, _ = run(shell, f"%avml validate {broken} --task image-classification")
    assert not result.success and "found problems (exit status 2)" in err
    assert "broken.jsonl:2" in out, out
    folder = here / "folders"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        (folder / label / "a.png").write_bytes((here / "data" / "images" / "shape_00000.png").read_bytes())
    result, out, err, _ = run(shell, f"%avml convert folder {folder} -o {here / 'pets.jsonl'}")
    assert result.success, err
    rows = [json.loads(line) for line in (here / "pets.jsonl").read_text().splitlines()]
    assert sorted(r["label"] for r in rows) == ["cat", "dog"]


# -- real experiments -----------------------------------------------------------------------------------------
TINY = """\
task: image-classification
training_data: data/multiclass.jsonl
model_name: resnet18
pretrained: 0
number_of_epochs: 1
train_crop_size: 32
valid_resize_size: 32
valid_crop_size: 32
training_batch_size: 16
cpu_threads: 1
device: cpu
"""


def _bundle(outputs, key="text/html"):
    return [o.data[key] for o in outputs if key in o.data]


@pytest.fixture(scope="module")
def finished_sweep(shell, module_tmp, shapes):
    """A real two-child sweep started from a cell, then waited for: (folder, workspace, cell outputs, took)."""
    folder = module_tmp
    (folder / "data").symlink_to(shapes.parent, target_is_directory=True)
    workspace = folder / "ws"
    cwd = Path.cwd()
    import os

    os.chdir(folder)
    try:
        began = time.perf_counter()
        result, out, err, outputs = run(shell, f"""
            %%avml two --var sweep --workspace {workspace}
            {TINY.replace(chr(10), chr(10) + "            ")}
            sampling: grid
            search_space:
              learning_rate: choice(0.01, 0.05)
            iterations: 2
            max_concurrent_iterations: 2
            """)
        took = time.perf_counter() - began
        assert result.success, err
        handle = shell.user_ns["sweep"]
        state = handle.wait(timeout=400)
        yield folder, workspace, outputs, took, state
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_cell_starts_the_sweep_in_the_background_and_shows_its_dashboard(shell, finished_sweep):
    folder, workspace, outputs, took, state = finished_sweep
    assert took < 2.0, f"the cell took {took:.2f} s to return"
    from jupyter_avml.sweep.experiment import ExperimentHandle

    assert isinstance(shell.user_ns["sweep"], ExperimentHandle) and shell.user_ns["sweep"].name == "two"
    views = _bundle(outputs, "application/vnd.jupyter.widget-view+json")
    assert len(views) == 1, [o.data.keys() for o in outputs]
    assert 'class="avml-leaderboard"' in _bundle(outputs)[0]  # the static fallback travels with the widget
    assert state.status == "completed", state
    assert [c.status for c in state.children] == ["completed", "completed"]


@pytest.mark.slow
def test_the_next_cell_publishes_the_final_picture_and_attach_rebuilds_it(shell, finished_sweep):
    folder, workspace, _, _, state = finished_sweep
    from jupyter_avml.magics._displays import DISPLAYS

    # The dashboard's updater draws the final state (plots included) on its own clock: wait for it as the
    # hook judges it, with room for a loaded machine.
    deadline = time.monotonic() + 60
    while not all(DISPLAYS._final(w) for w in DISPLAYS.pending.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = [(getattr(w.snapshot, "status", None), w.updater.ended_because, w.updater.renders)
            for w in DISPLAYS.pending.values()]
    result, _, _, outputs = run(shell, "x = 1")  # any cell: its post_execute hook runs in the main thread
    assert result.success
    final = _bundle(outputs)
    assert final, f"nothing published; pending dashboards (status, updater ended because, renders): {seen}"
    assert 'data-status="completed"' in final[0] and "2 / 2 children done" in final[0]
    assert 'class="avml-confusion-matrix"' in final[0] and "data:image/png;base64," in final[0]
    assert not DISPLAYS.pending

    result, _, err, outputs = run(shell, f"%avml attach two --workspace {workspace} --var again")
    assert result.success, err
    html = _bundle(outputs)[0]
    assert html.count('class="avml-row avml-status-completed') == 2 and 'class="avml-confusion-matrix"' in html
    assert shell.user_ns["again"].status == "completed"

    result, out, err, _ = run(shell, f"%avml status two --workspace {workspace}")
    assert result.success, err
    assert "two: image-classification, completed, 2/2 children done" in out
    assert out.count(" completed ") >= 2
    result, _, err, outputs = run(shell, f"%avml list --workspace {workspace}")
    assert result.success and 'data-name="two" data-status="completed"' in _bundle(outputs)[0]


@pytest.mark.slow
def test_best_and_register(shell, finished_sweep):
    folder, workspace, _, _, state = finished_sweep
    best = max(state.children, key=lambda c: (c.best_value, -c.id))
    result, out, err, outputs = run(shell, f"%avml best two --workspace {workspace}")
    assert result.success, err
    assert f"best child {best.id} (resnet18, completed): accuracy {best.best_value:.4f}" in out
    html = _bundle(outputs)[0]
    assert f'class="avml-details" data-child="{best.id}"' in html and 'class="avml-pr-curves"' in html
    result, out, err, _ = run(shell, f"%avml register two shapes-classifier --workspace {workspace}")
    assert result.success, err
    assert f"registered the model of child {best.id}" in out and "as shapes-classifier version 1" in out
    from jupyter_avml.tracking.model_registry import list_registered_models

    assert [m["name"] for m in list_registered_models(workspace)] == ["shapes-classifier"]


@pytest.mark.slow
def test_foreground_waits_and_the_dashboards_stop_button_ends_it(shell, here):
    """``--foreground`` blocks until the end; the dashboard's Stop button, pressed meanwhile, ends it."""
    import threading

    from jupyter_avml.magics._displays import DISPLAYS
    from jupyter_avml.sweep.experiment import attach

    def stop_soon():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = [w for w in DISPLAYS.pending.values() if w.snapshot is not None and w.snapshot.name == "halt"]
            if shown:
                shown[0].stop_button.click()  # the real handle's stop(), as the button does in a kernel
                return
            time.sleep(0.1)

    stopper = threading.Thread(target=stop_soon)
    stopper.start()
    began = time.perf_counter()
    result, out, err, outputs = run(shell, "%%avml halt --foreground\n" + TINY)
    stopper.join()
    assert result.success, err
    assert time.perf_counter() - began < 120
    assert attach("halt").status == "stopped"
    html = _bundle(outputs)
    assert 'data-status="stopped"' in html[-1]  # the final picture, published by the waiting cell itself
    result, out, err, _ = run(shell, "%avml stop halt")  # stopping a finished experiment changes nothing
    assert result.success and "experiment halt has already ended (stopped)" in out, err  # the text `avml stop` prints
    result, _, err, _ = run(shell, "%avml stop halt --child 7")
    assert not result.success and "has no child 7" in err
