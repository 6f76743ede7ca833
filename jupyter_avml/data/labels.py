"""Class names that only look different, and class counts that cannot train: checked on every validation.

Near-duplicate names: two spellings that are equal once case, surrounding spaces and invisible characters are
ignored (``"Cat"``, ``"cat "``, ``"ca\\u200bt"``; also Unicode compatibility forms, by NFKC) would be trained
as different classes. They are errors: every row that uses a less common spelling gets a problem naming both
spellings and where each first appears; the most common spelling (the first seen on a tie) is kept. There is
no opt-out: the spec names classes by their text, and two texts a reader cannot tell apart are one class
written two ways.

Class counts, for training data (no ``known_classes``): multi-class classification needs two classes (with
one, a model reaches accuracy 1.0 by always answering it): an error. Multi-label data with one class is legal
(the class is present or absent) but worth a warning. Validation data may have any number of classes.

Images per class (``few_images_hint``): the spec's guidance is to start with 10 to 15 images per label, more
when there are many labels; no minimum is enforced, but a class with fewer gets a hint (``FewImagesWarning``
where a run or an experiment starts).
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from jupyter_avml.config.loader import echo_value
from jupyter_avml.data.jsonl import Problem
from jupyter_avml.data.records import ImageRecord
from jupyter_avml.tasks import ImageTask


def label_key(name: str) -> str:
    """``name`` with what a reader cannot see removed: NFKC form, format characters (zero-width spaces and
    joiners, soft hyphens, byte-order marks), surrounding whitespace, and case."""
    text = unicodedata.normalize("NFKC", name)
    if not text.isascii():
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.strip().casefold()


def _shown(name: str) -> str:
    return echo_value(name, 60)


def _difference(a: str, b: str) -> str:
    """What tells ``a`` from ``b``, in words (they have the same ``label_key``)."""
    kinds = []
    if a.strip() != a or b.strip() != b:
        kinds.append("surrounding spaces")
    visible_a = "".join(c for c in a if unicodedata.category(c) != "Cf")
    visible_b = "".join(c for c in b if unicodedata.category(c) != "Cf")
    if visible_a != a or visible_b != b:
        kinds.append("invisible characters")
    if visible_a.strip().casefold() == visible_b.strip().casefold() and visible_a.strip() != visible_b.strip():
        kinds.append("case")
    if not kinds:
        kinds.append("Unicode form")
    return " and ".join(kinds)


def class_fields(record: ImageRecord, task: ImageTask) -> list[tuple[str, str]]:
    """``(field, class name)`` of every class a record names, fields as problems name them."""
    if task is ImageTask.IMAGE_CLASSIFICATION:
        return [("label", record.label)]
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        return [(f"label[{i}]", name) for i, name in enumerate(record.label)]
    return [(f"label[{i}].label", obj.label) for i, obj in enumerate(record.label)]


def near_duplicate_problems(records: list[ImageRecord], classes: list[str], task: ImageTask, source: str
                            ) -> list[Problem]:
    """A problem for each use of a less common spelling of a class (see the module docstring).

    ``classes`` are the distinct names of ``records``; rows are only read again when two of them collide,
    so a clean file pays for one ``label_key`` per class.
    """
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(label_key(name), []).append(name)
    clashing = {name for names in groups.values() if len(names) > 1 for name in names}
    if not clashing:
        return []
    uses: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    for record in records:
        for _, name in class_fields(record, task):
            if name in clashing:
                uses[name] += 1
                first_line.setdefault(name, record.line)
    kept = {}
    for names in groups.values():
        if len(names) > 1:
            best = max(names, key=lambda n: (uses[n], -first_line[n]))
            kept.update({name: best for name in names if name != best})
    problems = []
    for record in records:
        for field, name in class_fields(record, task):
            best = kept.get(name)
            if best is not None:
                shown, other = _shown(name), _shown(best)
                problems.append(Problem(source, record.line, field,
                                        f"class {shown} differs from {other} only in {_difference(name, best)} "
                                        f"({other}: {uses[best]} uses from line {first_line[best]}; {shown}: "
                                        f"{uses[name]} from line {first_line[name]}); write one spelling",
                                        name))
    return problems


def known_class_hint(name: str, known: frozenset[str]) -> str | None:
    """When ``name`` is a near-duplicate of a known class, a message that says so; else None."""
    key = label_key(name)
    for other in known:
        if label_key(other) == key:
            return (f"class {_shown(name)} differs from the training class {_shown(other)} only in "
                    f"{_difference(name, other)}; write it as in the training data")
    return None


RECOMMENDED_IMAGES_PER_LABEL = (10, 15)
"""The spec's recommended start (section 2): 10 to 15 images per label, more when there are many labels."""


class FewImagesWarning(UserWarning):
    """Training data with classes below the spec's recommended 10 to 15 images per label (a hint, not an error)."""


def few_images_hint(records: list[ImageRecord], classes: list[str]) -> str | None:
    """A hint naming the classes that appear in fewer than 10 images of training data (None when none does)."""
    low, high = RECOMMENDED_IMAGES_PER_LABEL
    images: Counter[str] = Counter()
    for record in records:
        images.update(set(record.class_names()))
    few = sorted((name for name in classes if images[name] < low), key=lambda n: (images[n], n))
    if not few:
        return None
    shown = ", ".join(f"{_shown(name)}: {images[name]}" for name in few[:5]) + (", ..." if len(few) > 5 else "")
    noun = "class has" if len(few) == 1 else f"{len(few)} classes have"
    return (f"{noun} fewer than {low} images ({shown}); {low} to {high} images per label is the recommended start, "
            f"more when there are many labels (a model may not learn a class from so few)")


def class_count_problems(classes: list[str], records: list[ImageRecord], task: ImageTask, source: str
                         ) -> tuple[list[Problem], list[Problem]]:
    """``(problems, warnings)`` about the number of classes of training data (see the module docstring)."""
    if len(classes) != 1 or not records:
        return [], []
    only = classes[0]
    if task is ImageTask.IMAGE_CLASSIFICATION:
        return [Problem(source, 0, "label",
                        f"every valid row has the class {_shown(only)}: image-classification needs at least two "
                        f"classes (a model would reach accuracy 1.0 by always answering it); for a validation file "
                        f"give the training classes (known_classes, or --known-classes-from TRAIN.jsonl)")], []
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        present = sum(1 for record in records if record.label)
        return [], [Problem(source, 0, "label",
                            f"one class only ({_shown(only)}, present in {present} of {len(records)} images): the "
                            f"model learns only whether it is present")]
    return [], []
