"""Hold out part of the training data for validation (``split_ratio``, spec section 2).

Rules
-----
* Determinism: the split depends only on the records' content (``image_url`` and label), the ratio and
  the seed, not on the order of the input: records are put in a canonical order (by image URL, then
  label) before shuffling, and both returned lists keep the input order. Records with identical URL
  and label are interchangeable; among those, the input order decides.
* Multi-class: stratified by class. A class with ``m`` images gives ``round_half_up(ratio * m)`` of them
  to validation, at least 1 when ``m >= 2`` and at most ``m - 1`` (every class keeps a training image).
  A class with a single image stays in training.
* Multi-label: stratified the same way by the *rarest* label of each image (the label with the fewest
  images in the whole set; ties broken by name), so that rare labels reach both sides; images with an
  empty label list form their own stratum.
* Detection and segmentation: a plain seeded random split of ``round_half_up(ratio * n)`` images.
* Each stratum is shuffled by its own generator seeded from ``(seed, stratum name)``, so adding a class
  does not reshuffle the others.

Neither part may be empty: tiny data raises ``DataError`` saying to give ``validation_data`` or more
data. ``ratio`` must be a number strictly between 0 and 1 (``ConfigError`` on ``split_ratio``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from numbers import Real

import numpy as np

from jupyter_avml.data.records import ImageRecord
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

EMPTY_STRATUM = ""  # multi-label images with no class


def split_records(records: Sequence[ImageRecord], task: ImageTask | str, ratio: float = 0.2,
                  seed: int = 0) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split ``records`` into ``(train, validation)`` by the rules of the module docstring.

    Raises
    ------
    ConfigError
        ``ratio`` is not a number in (0, 1) or ``seed`` is not an integer.
    DataError
        One of the two parts would be empty.
    """
    task = ImageTask.parse(task)
    ratio = _check_ratio(ratio)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}", field="seed", value=seed)
    records = list(records)
    total = len(records)

    keys = [_content_key(record, task) for record in records]
    canonical = sorted(range(total), key=lambda i: (keys[i], i))

    strata: dict[str, list[int]] = defaultdict(list)
    stratified = task.is_classification
    if task is ImageTask.IMAGE_CLASSIFICATION:
        for i in canonical:
            strata[str(records[i].label)].append(i)
    elif task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        frequency = Counter(name for record in records for name in set(record.class_names()))
        for i in canonical:
            names = set(records[i].class_names())
            rarest = min(names, key=lambda name: (frequency[name], name)) if names else EMPTY_STRATUM
            strata[rarest].append(i)
    else:
        strata[""] = canonical

    validation: set[int] = set()
    for name in sorted(strata):
        members = strata[name]
        count = len(members)
        take = _round_half_up(ratio * count)
        if stratified and count >= 2:
            take = min(max(take, 1), count - 1)
        order = _generator(seed, name).permutation(count)
        validation.update(members[j] for j in order[:take])

    if not validation or len(validation) == total:
        empty = "validation" if not validation else "training"
        detail = (f" (stratified by class: {len(strata)} classes)" if stratified and total else "")
        raise DataError(f"{total} row{'s' if total != 1 else ''} cannot be split with split_ratio {ratio:g}: "
                        f"the {empty} part would be empty{detail}; give validation_data or more data")
    train = [record for i, record in enumerate(records) if i not in validation]
    valid = [record for i, record in enumerate(records) if i in validation]
    return train, valid


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not math.isfinite(float(ratio)) \
            or not 0.0 < float(ratio) < 1.0:
        raise ConfigError(f"split_ratio must be a number strictly between 0 and 1, got {ratio!r}",
                          field="split_ratio", value=ratio)
    return float(ratio)


def _round_half_up(value: float) -> int:
    # Python's round() rounds half to even (round(0.5) == 0); a split of 0.5 * 1 should give 1.
    return int(math.floor(value + 0.5 + 1e-9))


def _content_key(record: ImageRecord, task: ImageTask) -> str:
    label = record.to_json(task)["label"]
    return record.image_url + "\n" + json.dumps(label, sort_keys=True, separators=(",", ":"))


def _generator(seed: int, stratum: str) -> np.random.Generator:
    digest = hashlib.sha256(stratum.encode("utf-8")).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, int.from_bytes(digest[:8], "little")])
