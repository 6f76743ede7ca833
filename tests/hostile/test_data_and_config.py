"""Hostile inputs where data and configuration enter: JSONL files, images, image URLs, YAML/JSON, the workspace.

Each case: the hostile input, then the clear error or the bound it must meet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.config.loader import MAX_DEPTH, load_config_text, read_config_file
from jupyter_avml.data.images import image_from_array
from jupyter_avml.data.urls import DownloadLimits
from jupyter_avml.data.validate import read_dataset, validate_jsonl
from jupyter_avml.errors import AvmlError, ConfigError, DataError
from jupyter_avml.workspace import Workspace, WorkspaceError

pytestmark = pytest.mark.timeout(60)

MC = "image-classification"
ML = "image-classification-multilabel"
FAST = DownloadLimits(read_timeout_s=0.5, deadline_s=1.0, max_bytes=1_000_000, total_deadline_s=10.0)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def png_bytes(color=(200, 0, 0)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format="PNG")
    return buffer.getvalue()


def leftovers(cache: Path) -> list[str]:
    """Files a failed download could have left in the cache (partial or temporary)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.parent.name != "urls")


# --------------------------------------------------------------------------------------------------------
# image URLs: servers that trickle, never answer, or send too much


def test_trickling_server_is_cut_at_the_download_deadline(tmp_path, hostile_server, assert_quick):
    good = hostile_server.serve("good.png", png_bytes())
    jsonl = write_jsonl(tmp_path / "web.jsonl", [
        {"image_url": hostile_server.url("/trickle?every=0.1&size=100000") + "&.png", "label": "a"},
        {"image_url": good, "label": "b"}, {"image_url": good + "?copy", "label": "a"}])
    cache = tmp_path / "cache"
    with assert_quick(6):
        report = validate_jsonl(jsonl, MC, cache_dir=cache, download_limits=FAST)
    [problem] = report.problems
    assert (problem.line, problem.field) == (1, "image_url")
    assert "download failed: not complete within the deadline of 1 s" in problem.message
    assert [r.line for r in report.records] == [2, 3]
    assert leftovers(cache) == [f"images/{report.records[0].path.name}"]  # no partial file of the trickle


def test_huge_announced_body_is_refused_before_reading(tmp_path, hostile_server, assert_quick):
    jsonl = write_jsonl(tmp_path / "web.jsonl", [{"image_url": hostile_server.url("/huge"), "label": "a"}])
    with assert_quick(5):
        report = validate_jsonl(jsonl, MC, cache_dir=tmp_path / "cache", download_limits=FAST)
    problem = report.problems[0]
    assert problem.line == 1
    assert "the server announces 300,000,000 bytes, more than the limit of 1,000,000 (max_bytes)" in problem.message
    assert leftovers(tmp_path / "cache") == []


def test_endless_unannounced_body_stops_at_the_byte_cap(tmp_path, hostile_server, assert_quick):
    jsonl = write_jsonl(tmp_path / "web.jsonl", [{"image_url": hostile_server.url("/endless"), "label": "a"}])
    with assert_quick(5):
        report = validate_jsonl(jsonl, MC, cache_dir=tmp_path / "cache", download_limits=FAST)
    assert "more than the limit of 1,000,000 bytes (max_bytes)" in report.problems[0].message
    assert leftovers(tmp_path / "cache") == []


def test_silent_server_costs_a_few_timeouts_not_one_per_url(tmp_path, hostile_server, assert_quick):
    # More URLs than download threads (16 at most): once a few have timed out, the others are not tried.
    urls = [hostile_server.url(f"/silent?n={i}") for i in range(40)]
    jsonl = write_jsonl(tmp_path / "web.jsonl", [{"image_url": u, "label": "ab"[i % 2]} for i, u in enumerate(urls)])
    limits = DownloadLimits(read_timeout_s=0.5, deadline_s=5, max_host_failures=3)
    with assert_quick(10):
        report = validate_jsonl(jsonl, MC, cache_dir=tmp_path / "cache", download_limits=limits)
    by_line = {p.line: p.message for p in report.problems if p.line}
    assert sorted(by_line) == list(range(1, 41))  # every URL is reported on its own row
    tried = [m for m in by_line.values() if m.startswith("download failed: ")]
    skipped = [m for m in by_line.values() if m.startswith("not tried: ") and "downloads from 127.0.0.1" in m]
    assert len(tried) + len(skipped) == 40 and len(tried) <= 16 and len(skipped) >= 24
    assert any("no answer within 0.5 s (timed out)" in m for m in tried)
    assert leftovers(tmp_path / "cache") == []


def test_overall_deadline_reports_every_url_it_did_not_download(tmp_path, hostile_server, assert_quick):
    urls = [hostile_server.url(f"/trickle?every=0.2&size=50&n={i}") for i in range(40)]
    jsonl = write_jsonl(tmp_path / "web.jsonl", [{"image_url": u, "label": "ab"[i % 2]} for i, u in enumerate(urls)])
    limits = DownloadLimits(read_timeout_s=1, deadline_s=30, total_deadline_s=1.0, max_host_failures=100)
    with assert_quick(8):
        report = validate_jsonl(jsonl, MC, cache_dir=tmp_path / "cache", download_limits=limits)
    messages = [p.message for p in report.problems if p.line]
    assert len(messages) == 40 and not report.records
    assert all("the deadline for all downloads (1 s) passed" in m for m in messages), messages[:3]
    assert leftovers(tmp_path / "cache") == []


# --------------------------------------------------------------------------------------------------------
# JSONL files: endless devices, endless lines, other formats


def test_character_device_as_training_data_is_refused(char_device, assert_quick):
    with assert_quick(2), pytest.raises(DataError, match=r"/dev/zero: not a regular file \(a character device\)"):
        validate_jsonl(char_device, MC)
    with pytest.raises(DataError, match="not a regular file"):
        read_dataset(char_device, MC)


def test_named_pipe_is_refused_without_blocking(tmp_path, assert_quick):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    with assert_quick(2), pytest.raises(DataError, match=r"not a regular file \(a named pipe\)"):
        validate_jsonl(fifo, MC)


def test_a_line_without_end_is_reported_not_loaded(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    jsonl = tmp_path / "big.jsonl"
    with open(jsonl, "wb") as handle:
        handle.write(json.dumps({"image_url": "a.png", "label": "x"}).encode() + b"\n")
        handle.write(json.dumps({"image_url": "a.png?2", "label": "y"}).encode() + b"\n")
        handle.write(b'{"image_url": "' + b"a" * (20 << 20))  # 20 MB, no newline at all
    tracemalloc.start()
    try:
        report = validate_jsonl(jsonl, MC, check_images=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [problem] = report.problems
    assert (problem.line, problem.field) == (3, "row")
    assert problem.message.startswith("line too long: 20,971,535 bytes (at most 1,048,576 per line)")
    assert peak < 8 << 20, f"peak {peak:,} bytes while reading a 20 MB line"
    assert [r.line for r in report.records] == [1, 2]
    assert report.rejected[0].text.endswith("...") and len(report.rejected[0].text) < 300


def test_coco_json_given_as_jsonl_gets_one_message(tmp_path):
    coco = {"info": {"description": "x"}, "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
            "categories": [{"id": 1, "name": "cat"}]}
    pretty = tmp_path / "instances.json"
    pretty.write_text(json.dumps(coco, indent=2))
    minified = tmp_path / "minified.json"
    minified.write_text(json.dumps(coco))
    for path in (pretty, minified):
        report = validate_jsonl(path, "image-object-detection")
        [problem] = report.problems
        assert (problem.line, problem.field) == (0, "file")
        assert "looks like a COCO annotation file" in problem.message
        assert f"avml convert coco {path}" in problem.message
        with pytest.raises(DataError, match="COCO"):
            read_dataset(path, "image-object-detection", skip_invalid=True)  # skipping rows cannot fix a format


def test_pretty_printed_json_array_gets_one_message(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"image_url": "a.png", "label": "x"}, {"image_url": "b.png", "label": "y"}],
                               indent=2))
    [problem] = validate_jsonl(path, MC).problems
    assert problem.line == 0 and "one JSON document (an array spread over several lines), not JSON Lines" \
        in problem.message


# --------------------------------------------------------------------------------------------------------
# labels that look alike, and one class


def test_labels_differing_only_in_case_spaces_or_invisible_characters(tmp_path):
    for name in "abcdef":
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    jsonl = write_jsonl(tmp_path / "train.jsonl", [
        {"image_url": "a.png", "label": "cat"}, {"image_url": "b.png", "label": "cat"},
        {"image_url": "c.png", "label": "Cat"}, {"image_url": "d.png", "label": "cat "},
        {"image_url": "e.png", "label": "ca\u200bt"}, {"image_url": "f.png", "label": "dog"}])
    report = validate_jsonl(jsonl, MC)
    assert [(p.line, p.field, p.value) for p in report.problems] == [
        (3, "label", "Cat"), (4, "label", "cat "), (5, "label", "ca\u200bt")]
    case, spaces, invisible = (p.message for p in report.problems)
    assert "'Cat' differs from 'cat' only in case ('cat': 2 uses from line 1; 'Cat': 1 from line 3)" in case
    assert "only in surrounding spaces" in spaces
    assert "'ca\\u200bt' differs from 'cat' only in invisible characters" in invisible
    assert report.classes == ["cat", "dog"] and [r.line for r in report.records] == [1, 2, 6]


def test_validation_file_spelling_a_training_class_differently(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    jsonl = write_jsonl(tmp_path / "valid.jsonl", [{"image_url": "a.png", "label": "Dog"}])
    [problem] = validate_jsonl(jsonl, MC, known_classes=["cat", "dog"]).problems
    assert "class 'Dog' differs from the training class 'dog' only in case" in problem.message


def test_one_class_is_an_error_for_multiclass_and_a_warning_for_multilabel(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    multiclass = write_jsonl(tmp_path / "mc.jsonl", [{"image_url": "a.png", "label": "cat"},
                                                     {"image_url": "b.png", "label": "cat"}])
    report = validate_jsonl(multiclass, MC)
    [problem] = report.problems
    assert (problem.line, problem.field) == (0, "label")
    assert "image-classification needs at least two classes" in problem.message
    with pytest.raises(DataError, match="at least two classes"):
        read_dataset(multiclass, MC, skip_invalid=True)
    assert validate_jsonl(multiclass, MC, known_classes=["cat", "dog"]).ok  # a validation file may have one

    multilabel = write_jsonl(tmp_path / "ml.jsonl", [{"image_url": "a.png", "label": ["cat"]},
                                                     {"image_url": "b.png", "label": []}])
    report = validate_jsonl(multilabel, ML)
    assert report.ok and len(report.warnings) == 1
    assert "one class only ('cat', present in 1 of 2 images)" in report.warnings[0].message
    assert "1 warning:" in report.format()


# --------------------------------------------------------------------------------------------------------
# images: formats and arrays


def test_gif_is_refused_as_a_file_and_as_a_format(tmp_path):
    Image.new("RGB", (8, 8), (0, 0, 255)).save(tmp_path / "a.gif")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    jsonl = write_jsonl(tmp_path / "d.jsonl", [
        {"image_url": "a.gif", "label": "x"},
        {"image_url": "b.png", "image_details": {"format": "gif"}, "label": "y"}])
    report = validate_jsonl(jsonl, MC)
    assert [(p.line, p.field) for p in report.problems] == [(1, "image_url"), (2, "image_details.format")]
    assert "GIF images are not one of the spec's formats" in report.problems[0].message


def test_float_arrays_are_scaled_or_refused_never_black():
    gray = np.full((4, 6), 0.5, dtype=np.float32)
    assert image_from_array(gray).getpixel((0, 0)) == (128, 128, 128)
    rgb = np.zeros((4, 6, 3), dtype=np.float64)
    rgb[..., 0] = 1.0
    assert image_from_array(rgb).getpixel((5, 3)) == (255, 0, 0)
    assert image_from_array(np.full((2, 2, 3), 200.0)).getpixel((0, 0)) == (200, 200, 200)
    assert image_from_array(np.full((2, 2), 65535, dtype=np.uint16)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(DataError, match=r"values in \[-1, 3\]; scale it first"):
        image_from_array(np.array([[-1.0, 3.0]]))
    with pytest.raises(DataError, match="NaN"):
        image_from_array(np.array([[np.nan, 0.5]]))
    with pytest.raises(DataError, match=r"got shape \(2, 2, 5\)"):
        image_from_array(np.zeros((2, 2, 5)))


# --------------------------------------------------------------------------------------------------------
# configuration files and values


def test_not_utf8_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"task: image-classification\nrun_name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig.from_yaml(path)
    assert str(info.value).startswith(f"{path}:2: not UTF-8 text: invalid continuation byte at byte 40")


def test_yaml_nested_ten_thousand_deep(tmp_path, assert_quick):
    path = tmp_path / "deep.yaml"
    path.write_text("task: image-classification\nrun_name: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with assert_quick(3), pytest.raises(ConfigError) as info:
        AutoMLImageConfig.from_yaml(path)
    assert str(info.value) == f"{path}:2: nested more than {MAX_DEPTH} levels deep"


def test_duplicate_yaml_key_names_both_lines(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: image-classification\ntraining_data: a.jsonl\nlearning_rate: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:4: duplicate key 'learning_rate' \(lines 3 and 4\)"):
        AutoMLImageConfig.from_yaml(path)


def test_billion_laughs_under_a_known_key(tmp_path, assert_quick):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines).replace("a: &a", "x_a: &a", 1) + "\ntraining_batch_size: *i\n")
    with assert_quick(2), pytest.raises(ConfigError) as info:
        AutoMLImageConfig.from_yaml(path)
    message = str(info.value)
    assert "aliases expand the document to more than 100,000 values" in message and len(message) < 300


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="an alias refers to the value that contains it"):
        load_config_text("task: &t [*t]\n", "cell")


def test_values_echoed_in_errors_are_cut(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"task: image-classification\ntraining_data: a.jsonl\ntraining_batch_size: '{'9' * 900_000}'\n")
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig.from_yaml(path)
    message = str(info.value)
    assert len(message) < 500 and "... (900002 characters)" in message
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig(task="x" * 1_000_000, training_data="a.jsonl")
    assert len(str(info.value)) < 500
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig(task=MC, training_data="a.jsonl", **{"k" * 1_000_000: 1})
    assert len(str(info.value)) < 500


def test_configuration_file_that_is_a_device_or_too_large(tmp_path, char_device, assert_quick):
    with assert_quick(2), pytest.raises(ConfigError, match=r"not a regular file \(a character device\)"):
        AutoMLImageConfig.from_yaml(char_device)
    big = tmp_path / "big.yaml"
    big.write_text("run_name: " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: configuration file too large: 2,097,163 bytes"):
        AutoMLImageConfig.from_yaml(big)


def test_sweep_yaml_and_cell_body_use_the_same_loader(tmp_path):
    from jupyter_avml.sweep.config import load_yaml_nested, read_experiment

    path = tmp_path / "sweep.yaml"
    path.write_text("task: image-classification\nlimits:\n  max_trials: 2\n  max_trials: 3\n")
    with pytest.raises(ConfigError, match=r"sweep\.yaml:4: duplicate key 'max_trials' \(lines 3 and 4\)"):
        read_experiment(path)
    with pytest.raises(ConfigError, match="nested more than"):
        load_yaml_nested("\nsearch_space: " + "[" * 5000 + "]" * 5000)


def test_json_configuration_with_tabs_and_duplicates(tmp_path):
    good = tmp_path / "run.json"
    good.write_text('{\n\t"task": "image-classification",\n\t"training_data": "a.jsonl",\n\t"seed": 3\n}\n')
    assert AutoMLImageConfig.from_yaml(good).seed == 3
    bad = tmp_path / "dup.json"
    bad.write_text('{"task": "image-classification",\n "seed": 1,\n "seed": 2}')
    with pytest.raises(ConfigError, match=r"dup\.json:3: duplicate key 'seed' \(lines 2 and 3\)"):
        read_config_file(bad)


@pytest.mark.parametrize("settings, key, bound", [
    ({"train_crop_size": 100_000}, "train_crop_size", "an integer in [1, 4096]"),
    ({"valid_resize_size": 5000}, "valid_resize_size", "an integer in [1, 4096]"),
    ({"training_batch_size": 100_000}, "training_batch_size", "an integer in [1, 1024]"),
    ({"num_workers": 1000}, "num_workers", "an integer in [0, 64]"),
    ({"model_name": "fasterrcnn_resnet50_fpn", "max_size": 10_000}, "max_size", "an integer in [1, 4096]"),
    ({"model_name": "fasterrcnn_resnet50_fpn", "tile_grid_size": "(100, 100)"}, "tile_grid_size",
     "two integers in [1, 16]"),
    ({"model_name": "yolov5", "img_size": 8192}, "img_size", "an integer in [1, 4096]"),
    ({"training_batch_size": 10 ** 400}, "training_batch_size", "an integer in [1, 1024]"),
])
def test_sizes_are_bounded(settings, key, bound):
    task = "image-object-detection" if "model_name" in settings else MC
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig(task=task, training_data="a.jsonl", **settings)
    assert info.value.field == key and bound in str(info.value)


def test_memory_of_a_batch_is_estimated_before_starting():
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig(task=MC, training_data="a.jsonl", model_name="resnet18", training_batch_size=1024,
                          train_crop_size=4096, valid_crop_size=4096)
    assert info.value.field == "training_batch_size"
    assert "192.0 GiB of input per batch before the model runs (at most 16 GiB)" in str(info.value)


# --------------------------------------------------------------------------------------------------------
# the workspace


def test_workspace_that_is_a_file(workspace_is_a_file):
    with pytest.raises(WorkspaceError) as info:
        Workspace.resolve()
    assert str(info.value) == (f"workspace ($AVML_WORKSPACE) {workspace_is_a_file}: is a file, not a folder; "
                               f"a workspace is a folder (give another path)")


def test_runs_list_on_a_file_workspace_says_so(workspace_is_a_file):
    out = subprocess.run([sys.executable, "-m", "jupyter_avml", "runs", "list"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "AVML_WORKSPACE": str(workspace_is_a_file)})
    assert out.returncode != 0
    assert f"{workspace_is_a_file}: is a file, not a folder" in out.stderr
    assert "Traceback" not in out.stderr and "no runs" not in out.stdout


@pytest.mark.parametrize("path, problem", [
    ("/proc/avml-workspace", "is inside /proc, a system pseudo-filesystem"),
    ("/sys/kernel/avml", "is inside /sys, a system pseudo-filesystem"),
])
def test_workspace_in_a_pseudo_filesystem(path, problem):
    with pytest.raises(WorkspaceError, match=problem):
        Workspace.resolve(path)


def test_workspace_below_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkspaceError, match=f"cannot be created: {blocker} is a file, not a folder"):
        Workspace.resolve(blocker / "ws")


def test_read_only_workspace(read_only_dir):
    with pytest.raises(WorkspaceError, match="is not writable: permission denied"):
        Workspace.resolve(read_only_dir)
    with pytest.raises(WorkspaceError, match=f"is not writable \\({read_only_dir}, where it would be created\\)"):
        Workspace.resolve(read_only_dir / "ws")
    assert not (read_only_dir / "ws").exists()


def test_workspace_on_a_read_only_file_system(tmp_path, monkeypatch):
    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(AvmlError, match=f"{tmp_path / 'ws'}: is not writable .*: read-only file system"):
        Workspace.resolve(tmp_path / "ws")
    assert not (tmp_path / "ws").exists()  # checked before anything is written


# --------------------------------------------------------------------------------------------------------
# converters: the source files of `avml convert`


def test_convert_sources_that_never_end_or_nest_forever(tmp_path, char_device, assert_quick):
    from jupyter_avml.data.convert import convert

    with assert_quick(2), pytest.raises(DataError, match="must be a regular file, this is a character device"):
        convert("coco", char_device, tmp_path / "out.jsonl", images_dir=tmp_path)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="deep.json: not a COCO annotation file: nested too deeply"):
        convert("coco", deep, tmp_path / "out.jsonl", images_dir=tmp_path)


def test_yolo_data_yaml_goes_through_the_configuration_loader(tmp_path):
    from jupyter_avml.data.convert import convert

    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("train: images/train\nnames: [a, b]\ntrain: images/other\n")
    with pytest.raises(DataError, match=r"data\.yaml:3: not a YAML file: duplicate key 'train' \(lines 1 and 3\)"):
        convert("yolo", data_yaml, tmp_path / "out.jsonl")
