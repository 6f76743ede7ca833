"""Train/validation splitting: deterministic, stratified, never an empty side."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.data.split import split_records
from jupyter_avml.errors import ConfigError, DataError

MC = "image-classification"
ML = "image-classification-multilabel"
OD = "image-object-detection"


def _multiclass(counts: dict[str, int]) -> list[ImageRecord]:
    return [ImageRecord(f"{name}_{i:03d}.png", name) for name, count in counts.items() for i in range(count)]


def _detection(n: int) -> list[ImageRecord]:
    return [ImageRecord(f"img_{i:03d}.png", (ObjectLabel("can", 0.1, 0.1, 0.5, 0.5),)) for i in range(n)]


def _urls(records):
    return [r.image_url for r in records]


def test_split_is_deterministic_and_independent_of_input_order():
    records = _multiclass({"a": 30, "b": 20, "c": 10})
    train1, valid1 = split_records(records, MC, 0.2, seed=1)
    train2, valid2 = split_records(list(records), MC, 0.2, seed=1)
    assert _urls(train1) == _urls(train2) and _urls(valid1) == _urls(valid2)
    shuffled = records[:]
    random.Random(4).shuffle(shuffled)
    train3, valid3 = split_records(shuffled, MC, 0.2, seed=1)
    assert set(_urls(valid3)) == set(_urls(valid1))
    # The output keeps the input order.
    position = {r.image_url: i for i, r in enumerate(shuffled)}
    assert [position[u] for u in _urls(valid3)] == sorted(position[u] for u in _urls(valid3))
    _, valid_other_seed = split_records(records, MC, 0.2, seed=2)
    assert set(_urls(valid_other_seed)) != set(_urls(valid1))


def test_parts_are_disjoint_and_complete():
    records = _detection(37)
    train, valid = split_records(records, OD, 0.3, seed=0)
    assert len(valid) == 11  # round(0.3 * 37) = 11
    assert sorted(_urls(train) + _urls(valid)) == sorted(_urls(records))
    assert not set(_urls(train)) & set(_urls(valid))


def test_multiclass_is_stratified_per_class():
    records = _multiclass({"a": 50, "b": 30, "c": 20, "pair": 2, "single": 1})
    train, valid = split_records(records, MC, 0.2, seed=0)
    counts = Counter(r.label for r in valid)
    # round(0.2 * count) per class; a class of 2 gives 1 (at least one), a class of 1 stays in training.
    assert counts == {"a": 10, "b": 6, "c": 4, "pair": 1}
    assert Counter(r.label for r in train)["single"] == 1


def test_rounding_is_half_up_and_every_class_keeps_a_training_image():
    _, valid = split_records(_multiclass({"a": 10, "b": 2}), MC, 0.25, seed=0)
    assert Counter(r.label for r in valid) == {"a": 3, "b": 1}  # 2.5 -> 3, 0.5 -> 1
    train, valid = split_records(_multiclass({"a": 3, "b": 3}), MC, 0.9, seed=0)
    assert Counter(r.label for r in valid) == {"a": 2, "b": 2}
    assert Counter(r.label for r in train) == {"a": 1, "b": 1}


def test_multilabel_is_stratified_by_the_rarest_label():
    records = ([ImageRecord(f"a{i}.png", ("a",)) for i in range(40)]
               + [ImageRecord(f"ab{i}.png", ("a", "b")) for i in range(10)]
               + [ImageRecord(f"ac{i}.png", ("c", "a")) for i in range(5)]
               + [ImageRecord(f"none{i}.png", ()) for i in range(5)])
    train, valid = split_records(records, ML, 0.2, seed=3)
    def stratum(record):  # the rarest label: c (5 images) < b (10) < a (55); "-" for no label
        for name in ("c", "b", "a"):
            if name in record.label:
                return name
        return "-"

    assert Counter(stratum(r) for r in valid) == {"a": 8, "b": 2, "c": 1, "-": 1}
    assert len(train) + len(valid) == 60


@pytest.mark.parametrize("records, task, message", [
    (_detection(2), OD, "2 rows cannot be split with split_ratio 0.2"),
    (_multiclass({"a": 1, "b": 1}), MC, "2 rows cannot be split with split_ratio 0.2"),
    (_detection(1), OD, "1 row cannot be split"),
    ([], MC, "0 rows cannot be split"),
])
def test_tiny_data_raises_a_clear_error(records, task, message):
    with pytest.raises(DataError) as info:
        split_records(records, task, 0.2)
    assert message in str(info.value)
    assert "validation_data" in str(info.value)


def test_a_ratio_that_would_take_everything_raises():
    with pytest.raises(DataError, match="training part would be empty"):
        split_records(_detection(3), OD, 0.9)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1, float("nan"), "0.2", None, True])
def test_ratio_must_be_strictly_between_0_and_1(ratio):
    with pytest.raises(ConfigError) as info:
        split_records(_detection(10), OD, ratio)
    assert info.value.field == "split_ratio"
    assert repr(ratio) in str(info.value)
