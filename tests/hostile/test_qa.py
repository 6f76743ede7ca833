"""Hostile inputs of visual QA in FiftyOne: missing images, a moved dataset, a model of other classes or another task,
an interrupted import, names that are nothing, a file changed under its check.

Each case is a clear one-line ``AvmlError`` that names the file, line, field or value and says what to do, with
nothing half-built left in FiftyOne.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.errors import AvmlError, ConfigError, DataError, NotFoundError
from jupyter_avml.qa import add_predictions, check_data, evaluate, export, to_fiftyone
from jupyter_avml.qa._fo import fiftyone
from tests.qa.conftest import fo_datasets, qa_workspace, save_model  # noqa: F401 (the fixtures below use them)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("qa_workspace", "fo_datasets")]
CLASSIFIER = dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)


def _shapes(tmp_path, task="image-classification", n=6):
    return make_shapes(tmp_path / "data", task, n=n, size=32, seed=9, color_by_class=True)


def test_images_deleted_after_registration(tmp_path):
    jsonl = _shapes(tmp_path)
    from jupyter_avml.data.dataset_registry import register_dataset

    version = register_dataset("gone", jsonl, task="image-classification")
    (tmp_path / "data" / "images" / "shape_00002.png").unlink()
    with pytest.raises(DataError) as caught:
        to_fiftyone("gone", progress=False)
    message = str(caught.value)
    assert message.startswith(f"{version.path}:3: image_url: 1 of 6 images of dataset 'gone' version 1")
    assert "shape_00002.png" in message and "avml datasets register gone" in message
    assert "\n" not in message and fiftyone().list_datasets() == []


def test_a_moved_dataset(tmp_path):
    jsonl = _shapes(tmp_path)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    shutil.move(tmp_path / "data", tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"are not where they were registered .*if the data moved, register it "
                                        r"again from its new place") as caught:
        to_fiftyone(tmp_path / "elsewhere" / jsonl.name, task="image-classification", progress=False)
    del caught
    with pytest.raises(DataError, match="not where they were registered"):
        to_fiftyone("multiclass", progress=False)
    assert fiftyone().list_datasets() == [dataset.name]  # nothing new, nothing half-built


def test_a_model_of_other_classes(tmp_path):
    jsonl = _shapes(tmp_path)
    model = save_model(tmp_path / "run", "image-classification", "resnet18", class_names=["circle", "square"],
                       **CLASSIFIER)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    with pytest.raises(ConfigError) as caught:
        add_predictions(dataset, model, progress=False, device="cpu")
    message = str(caught.value)
    assert "has classes the model of model " in message and "does not know: triangle" in message
    assert "(the model's classes: circle, square)" in message and "training_data: dataset:multiclass:1" in message
    assert caught.value.field == "classes" and not any(f.startswith("model_") for f in dataset.get_field_schema())


def test_a_model_of_another_task(tmp_path):
    jsonl = _shapes(tmp_path)
    model = save_model(tmp_path / "run", "image-object-detection", "fasterrcnn_resnet18_fpn", min_size=64,
                       max_size=64)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    with pytest.raises(ConfigError, match=r"is an image-object-detection model; FiftyOne dataset .* is "
                                          r"image-classification: choose a model trained for image-classification"):
        add_predictions(dataset, model, progress=False, device="cpu")


def test_an_interrupted_import_leaves_no_half_built_dataset(tmp_path, monkeypatch):
    import jupyter_avml.qa.importer as importer

    jsonl = _shapes(tmp_path)
    real = importer.record_to_label
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "record_to_label", interrupted)
    with pytest.raises(KeyboardInterrupt):
        to_fiftyone(jsonl, task="image-classification", progress=False)
    assert fiftyone().list_datasets() == []
    monkeypatch.setattr(importer, "record_to_label", real)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    assert len(dataset) == 6 and dataset.persistent and fiftyone().list_datasets() == [dataset.name]


def test_names_that_are_nothing_and_steps_out_of_order(tmp_path):
    jsonl = _shapes(tmp_path)
    with pytest.raises(ConfigError, match=r"multiclass.jsonl: give the task of this JSONL file"):
        to_fiftyone(jsonl, progress=False)
    to_fiftyone(jsonl, task="image-classification", progress=False)
    with pytest.raises(NotFoundError, match=r"no dataset named 'no-such-thing' in workspace .* \(known: multiclass\)"):
        to_fiftyone("no-such-thing", progress=False)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    with pytest.raises(NotFoundError, match=r"'abcdef123456' is not an experiment, a run, a registered model or a "
                                            r"model file"):
        add_predictions(dataset, "abcdef123456", progress=False)
    with pytest.raises(NotFoundError, match=r"has no predictions yet; add some first"):
        evaluate(dataset)
    from jupyter_avml.qa.views import view_name

    with pytest.raises(NotFoundError, match=r"has no saved view 'nope'"):
        view_name(dataset, "nope", None)


def test_a_file_changed_after_its_check_is_not_exported_from_the_old_check(tmp_path):
    jsonl = _shapes(tmp_path)
    check = check_data(jsonl, task="image-classification", progress=False)
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"multiclass.jsonl: changed \(or gone\) since its QA check: run the check "
                                        r"again"):
        export(check.dataset)


def test_the_shell_prints_one_line(tmp_path):
    from jupyter_avml.cli.main import main

    jsonl = _shapes(tmp_path)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows[1]["image_url"] = "images/missing.png"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["qa", "import", str(jsonl), "--task", "image-classification"])
    assert status == 2
    first = err.getvalue().splitlines()[0]
    assert first.startswith("avml qa import: error: dataset 'multiclass' not registered: the data has problems")
    assert f"{jsonl}:2: image_url" in err.getvalue() and "avml qa check" in err.getvalue()
    assert isinstance(DataError("x"), AvmlError)
