"""The dataset registry: versions, content hashing, verification, concurrency, references; the CLI verb."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil

import pytest

from jupyter_avml.cli import datasets as datasets_cli
from jupyter_avml.data.dataset_registry import (
    dataset_from_reference,
    get_dataset,
    list_datasets,
    register_dataset,
    register_dataset_ex,
    resolve_dataset_reference,
)
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.data.summary import summarize
from jupyter_avml.data.validate import read_dataset
from jupyter_avml.errors import AvmlError, ConfigError, DataError, NotFoundError

DET = "image-object-detection"


@pytest.fixture
def shapes(tmp_path):
    """A tiny detection shapes dataset; returns its JSONL path."""
    return make_shapes(tmp_path / "shapes", DET, n=6, size=32, seed=0)


def _edit_first_label(jsonl, new_label):
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["label"][0]["label"] = new_label
    lines[0] = json.dumps(row)
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_register_creates_version_1_with_an_absolute_snapshot(shapes, workspace):
    v1 = register_dataset("shapes", shapes, task=DET, description="tiny")
    assert (v1.name, v1.version, v1.task, v1.rows, v1.images) == ("shapes", 1, DET, 6, 6)
    assert v1.classes == ["circle", "square", "triangle"]
    assert v1.source == str(shapes.resolve()) and v1.description == "tiny"
    assert v1.path == workspace / "datasets" / "shapes" / "v1" / "data.jsonl"
    assert len(v1.content_hash) == 64 and v1.created.endswith("+00:00")
    snapshot = [json.loads(line) for line in v1.path.read_text().splitlines()]
    originals = [json.loads(line) for line in shapes.read_text().splitlines()]
    assert [r["label"] for r in snapshot] == [r["label"] for r in originals]
    for row, original in zip(snapshot, originals, strict=True):
        assert row["image_url"] == str((shapes.parent / original["image_url"]).resolve())
    index = json.loads((workspace / "datasets" / "shapes" / "index.json").read_text())
    assert [e["version"] for e in index["versions"]] == [1]
    assert get_dataset("shapes") == v1 and list_datasets() == [v1]
    records = v1.records()
    assert len(records) == 6 and all(r.path.is_file() for r in records)


def test_versions_follow_content(shapes, tmp_path, workspace):
    v1 = register_dataset("shapes", shapes, task=DET)
    again, created = register_dataset_ex("shapes", shapes, task=DET, description="ignored")
    assert (again, created) == (v1, False)

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(shapes.parent, copy)
    assert register_dataset("shapes", copy / shapes.name, task=DET).version == 1

    _edit_first_label(copy / shapes.name, "blob")
    v2 = register_dataset("shapes", copy / shapes.name, task=DET)
    assert v2.version == 2 and v2.content_hash != v1.content_hash

    image = copy / "images" / "shape_00003.png"
    image.write_bytes(image.read_bytes() + b"\0")  # the same picture, other bytes
    v3 = register_dataset("shapes", copy / shapes.name, task=DET)
    assert v3.version == 3

    assert get_dataset("shapes").version == 3
    assert get_dataset("shapes", 1) == v1 and get_dataset("shapes", "2") == v2
    assert [v.version for v in list_datasets()] == [1, 2, 3]
    assert register_dataset("shapes", shapes, task=DET).version == 1  # the original is still version 1


def test_loose_spellings_and_prefix_maps_hash_like_the_original(shapes, tmp_path, workspace):
    v1 = register_dataset("shapes", shapes, task=DET)
    loose = tmp_path / "loose.jsonl"
    lines = []
    for line in shapes.read_text().splitlines():
        row = json.loads(line)
        row["image_url"] = "AmlDatastore://image_data/" + row["image_url"]
        row["image_details"]["width"] = f"{row['image_details']['width']}px"
        row["label"][0]["topX"] = str(row["label"][0]["topX"])
        lines.append(json.dumps(row))
    loose.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="image_url_prefix_map"):
        register_dataset("shapes", loose, task=DET)
    same = register_dataset("shapes", loose, task=DET,
                            prefix_map={"AmlDatastore://image_data/": str(shapes.parent)})
    assert same == v1


def test_verify_detects_a_changed_or_missing_image(shapes, workspace):
    register_dataset("shapes", shapes, task=DET)
    assert get_dataset("shapes", verify=True).version == 1
    image = shapes.parent / "images" / "shape_00002.png"
    image.write_bytes(image.read_bytes()[:-4])
    get_dataset("shapes")  # no check without verify
    with pytest.raises(DataError) as info:
        get_dataset("shapes", verify=True)
    assert str(image.resolve()) in str(info.value) and "changed since registration" in str(info.value)
    image.unlink()
    with pytest.raises(DataError, match="missing"):
        get_dataset("shapes", 1, verify=True)


def test_invalid_data_is_refused_with_file_line_and_field(shapes, workspace):
    lines = shapes.read_text().splitlines()
    row = json.loads(lines[1])
    row["image_url"] = "images/nope.png"
    lines[1] = json.dumps(row)
    lines[3] = "{not json"
    shapes.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        register_dataset("shapes", shapes, task=DET)
    message = str(info.value)
    assert message.startswith("dataset 'shapes' not registered")
    assert f"{shapes.resolve()}:2: image_url: " in message and "nope.png" in message
    assert f"{shapes.resolve()}:4: row: not valid JSON" in message
    assert not (workspace / "datasets" / "shapes" / "index.json").exists()
    with pytest.raises(DataError, match="no such file"):
        register_dataset("shapes", shapes.parent / "missing.jsonl", task=DET)
    with pytest.raises(DataError, match="problem"):
        register_dataset("shapes", shapes, task="image-classification")


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "-x", "a b", "x" * 129, None, "dataset:x"])
def test_bad_names_are_refused(shapes, workspace, name):
    with pytest.raises(ConfigError) as info:
        register_dataset(name, shapes, task=DET)
    assert repr(name) in str(info.value)
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())


def test_not_found_messages_list_what_exists(shapes, workspace):
    with pytest.raises(NotFoundError, match="none registered"):
        get_dataset("shapes")
    register_dataset("shapes", shapes, task=DET)
    register_dataset("other", shapes, task=DET)
    with pytest.raises(NotFoundError) as info:
        get_dataset("shapez")
    assert "known: other, shapes" in str(info.value) and "did you mean 'shapes'" in str(info.value)
    with pytest.raises(NotFoundError, match=r"no version 4 \(versions: 1\)"):
        get_dataset("shapes", 4)
    with pytest.raises(ConfigError, match="positive integer"):
        get_dataset("shapes", "first")


def test_dataset_references(shapes, workspace):
    v1 = register_dataset("shapes", shapes, task=DET)
    _edit_first_label(shapes, "triangle-ish")
    v2 = register_dataset("shapes", shapes, task=DET)
    assert resolve_dataset_reference("dataset:shapes") == v2.path
    assert resolve_dataset_reference("dataset:shapes:1", workspace) == v1.path
    assert dataset_from_reference("dataset:shapes:latest").version == 2
    assert v1.reference == "dataset:shapes:1"
    for bad in ("shapes", "dataset:", "dataset:shapes:"):
        with pytest.raises(ConfigError):
            resolve_dataset_reference(bad)
    with pytest.raises(NotFoundError):
        resolve_dataset_reference("dataset:shapes:9")


def _register_in_child(workspace, jsonl, barrier, queue):
    barrier.wait(timeout=60)
    version = register_dataset("race", jsonl, task=DET, workspace=workspace)
    queue.put(version.version)


def test_concurrent_registrations_get_distinct_versions(tmp_path):
    workspace = tmp_path / "ws"
    paths = [make_shapes(tmp_path / f"d{seed}", DET, n=4, size=32, seed=seed) for seed in (1, 2)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    queue = context.Queue()
    children = [context.Process(target=_register_in_child, args=(str(workspace), str(p), barrier, queue))
                for p in paths]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0]
    assert sorted(queue.get(timeout=5) for _ in children) == [1, 2]
    versions = list_datasets(workspace)
    assert [v.version for v in versions] == [1, 2]
    assert {v.source for v in versions} == {str(p.resolve()) for p in paths}


def test_summarize_counts_classes_sizes_and_objects(shapes):
    records = read_dataset(shapes, DET).records
    text = summarize(records, DET)
    objects = sum(len(r.label) for r in records)
    assert text.startswith(f"{DET}: 6 images, 3 classes, {objects} objects")
    assert "width  min/median/max: 32/32/32 px" in text
    per_image = [len(r.label) for r in records]
    assert f"objects per image min/mean/max: {min(per_image)}/{sum(per_image) / 6:.2f}/{max(per_image)}" in text
    for name in ("circle", "square", "triangle"):
        count = sum(o.label == name for r in records for o in r.label)
        assert any(line.split()[0] == name and line.split()[-1] == str(count) for line in text.splitlines())


# ------------------------------------------------------------------------------------------ CLI

def _cli(argv, capsys):
    """Run ``avml`` argv with a parser built from datasets_cli.register, as cli/main.py does."""
    parser = argparse.ArgumentParser(prog="avml")
    parser.add_argument("--workspace", default=None)
    datasets_cli.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except AvmlError as exc:
        print(f"avml datasets: error: {exc}")
        code = 2
    out = capsys.readouterr().out
    return code, out


def test_cli_make_register_list_show(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    code, out = _cli(["--workspace", ws, "datasets", "make-shapes", str(tmp_path / "mc"),
                      "--task", "image-classification", "-n", "9", "--size", "32", "--seed", "4"], capsys)
    jsonl = tmp_path / "mc" / "multiclass.jsonl"
    assert code == 0 and out.splitlines()[0] == str(jsonl) and jsonl.is_file()
    assert "image-classification: 9 images, 3 classes" in out
    assert all(f"{name}" in out for name in ("circle", "square", "triangle"))

    code, out = _cli(["--workspace", ws, "datasets", "register", "mc", str(jsonl),
                      "--task", "image-classification", "--description", "nine"], capsys)
    version = get_dataset("mc", workspace=ws)
    assert code == 0
    assert out.startswith(f"registered mc version 1 (sha256 {version.content_hash[:12]}, 9 rows, 9 images")
    code, out = _cli(["--workspace", ws, "datasets", "register", "mc", str(jsonl),
                      "--task", "image-classification"], capsys)
    assert code == 0 and out.startswith("already registered: mc version 1")

    code, out = _cli(["--workspace", ws, "datasets", "list"], capsys)
    header, row = out.splitlines()
    assert header.split() == ["name", "version", "task", "rows", "images", "classes", "created"]
    assert row.split()[:5] == ["mc", "1", "image-classification", "9", "9"]

    code, out = _cli(["--workspace", ws, "datasets", "show", "mc", "--version", "1", "--verify"], capsys)
    assert code == 0
    assert "mc version 1" in out and "description: nine" in out and "verified" in out
    assert any(line.split()[:2] == ["circle", "3"] for line in out.splitlines())


def test_cli_errors_exit_2_with_a_message(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    code, out = _cli(["--workspace", ws, "datasets", "list"], capsys)
    assert code == 0 and "no datasets registered" in out
    code, out = _cli(["--workspace", ws, "datasets", "show", "nope"], capsys)
    assert code == 2 and "no dataset named 'nope'" in out
    code, out = _cli(["--workspace", ws, "datasets", "make-shapes", str(tmp_path / "x"), "--task", "segmentation"],
                     capsys)
    assert code == 2 and "task must be one of" in out
    code, out = _cli(["--workspace", ws, "datasets", "register", "bad name", str(tmp_path / "x.jsonl"),
                      "--task", DET], capsys)
    assert code == 2 and "'bad name'" in out
    code, out = _cli(["--workspace", ws, "datasets", "register", "ok", str(tmp_path / "x.jsonl"),
                      "--task", DET, "--prefix-map", "nofolder"], capsys)
    assert code == 2 and "PREFIX=FOLDER" in out
    with pytest.raises(SystemExit) as info:
        _cli(["--workspace", ws, "datasets"], capsys)
    assert info.value.code == 2


def test_summarize_multilabel_counts_images_per_class_and_empty_labels():
    from jupyter_avml.data.records import ImageRecord

    records = [ImageRecord("a.png", ("cat", "dog"), 40, 30), ImageRecord("b.png", ("dog",), 60, 50),
               ImageRecord("c.png", (), 80, 70)]
    text = summarize(records, "image-classification-multilabel")
    lines = text.splitlines()
    assert lines[0] == "image-classification-multilabel: 3 images, 2 classes"
    assert lines[2].split() == ["cat", "1", "33.3%"] and lines[3].split() == ["dog", "2", "66.7%"]
    assert "width  min/median/max: 40/60/80 px; height: 30/50/70 px" in text
    assert "labels per image min/mean/max: 0/1.00/2; 1 image with no label" in text
