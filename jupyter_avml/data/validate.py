"""Validating a JSONL file of one task, and reading it into an ``ImageDataset``.

Validation never stops at the first problem: every row is parsed (``jsonl.parse_record``), every image URL
resolved (``urls.resolve_image_url``; remote images are downloaded once into the cache), and, with
``check_images``, every image decoded once (in a thread pool: PIL releases the GIL while decoding). Each
problem is reported as ``FILE:LINE: field: message (value)``; a row with any problem is rejected.

Duplicates (rows with the same ``image_url`` as written):

- with the same label (compared after parsing, order of boxes and of multi-label classes ignored) and the same
  ``image_details``: the later rows are dropped without a problem, and the summary counts them;
- with a different label (or different ``image_details``): a problem on the later row (field ``image_url``)
  that names the earlier line; the earlier row is kept.

Labels (``data.labels``): class names that differ only in case, surrounding spaces or invisible characters are
problems on the rows of the less common spelling; training data of one class is a problem for
image-classification and a warning for multi-label. Problems at line 0 concern the file as a whole (empty,
not JSON Lines, one class): no row can be skipped to fix them, so ``read_dataset`` raises for them even with
``skip_invalid``.

The file must be a regular file and its lines at most ``jsonl_file.MAX_LINE_BYTES``; remote images are
downloaded within ``urls.DownloadLimits``.

Why one module of about 510 lines: the passes over a file (rows, spellings, classes, paths, images, rejected
rows) share one list of problems and run in one order that the report follows; the row parser is ``jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.data.images import inspect_image
from jupyter_avml.data.jsonl import Problem, parse_record, suggest
from jupyter_avml.data.jsonl_file import check_data_file, iter_jsonl_checked, not_jsonl_reason
from jupyter_avml.data.labels import (
    FewImagesWarning,
    class_count_problems,
    class_fields,
    few_images_hint,
    known_class_hint,
    near_duplicate_problems,
)
from jupyter_avml.data.records import ImageDataset, ImageRecord
from jupyter_avml.data.urls import DownloadLimits, DownloadSession, resolve_image_url
from jupyter_avml.errors import DataError
from jupyter_avml.tasks import ImageTask

MAX_CLASSES_SHOWN = 30


@dataclass
class RejectedRow:
    """A row that cannot be used: its line number, its text as written, and its problems."""

    line: int
    text: str
    problems: list[Problem]

    def to_json(self) -> dict:
        return {"line": self.line, "text": self.text, "problems": [str(p) for p in self.problems]}


@dataclass
class ValidationReport:
    """What ``validate_jsonl`` found.

    ``records`` are the valid rows only, in file order, each with ``path`` resolved to a local file.
    ``problems`` are all problems, ordered by line (line 0: the file as a whole). ``rows`` counts the
    non-blank lines.
    """

    task: ImageTask
    source: Path
    records: list[ImageRecord]
    rejected: list[RejectedRow]
    problems: list[Problem]
    classes: list[str]
    rows: int
    duplicates_dropped: int = 0
    images_checked: int | None = None  # None: images were not checked
    warnings: list[Problem] = field(default_factory=list)  # legal but probably unintended (they do not fail)
    hints: list[str] = field(default_factory=list)  # advice about the data as a whole (``labels.few_images_hint``)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def file_problems(self) -> list[Problem]:
        """Problems of the file as a whole (line 0): skipping rows cannot fix them."""
        return [p for p in self.problems if p.line == 0]

    def class_counts(self) -> dict[str, tuple[int, int]]:
        """``class -> (objects, images)``; for classification both numbers are the images with the class."""
        objects: Counter[str] = Counter()
        images: Counter[str] = Counter()
        for record in self.records:
            names = record.class_names()
            objects.update(names)
            images.update(set(names))
        return {name: (objects[name], images[name]) for name in self.classes}

    def summary(self) -> str:
        """Counts: rows, valid, rejected, duplicates dropped, images checked, per-class counts."""
        lines = [f"{self.source}: {self.task.value}: {_count(self.rows, 'row')}, {len(self.records)} valid, "
                 f"{len(self.rejected)} rejected"
                 + (f", {_count(self.duplicates_dropped, 'identical duplicate')} dropped"
                    if self.duplicates_dropped else "")]
        if self.images_checked is None:
            lines.append("images: not checked")
        else:
            lines.append(f"images checked: {self.images_checked} (decoded; sizes compared with image_details)")
        counts = self.class_counts()
        lines.append(f"classes ({len(counts)}):")
        for name, (objects, images) in list(counts.items())[:MAX_CLASSES_SHOWN]:
            if self.task.has_boxes:
                lines.append(f"  {name}: {_count(objects, 'object')} in {_count(images, 'image')}")
            else:
                lines.append(f"  {name}: {_count(images, 'image')}")
        if len(counts) > MAX_CLASSES_SHOWN:
            lines.append(f"  ... and {len(counts) - MAX_CLASSES_SHOWN} more classes")
        if self.task.is_multilabel:
            empty = sum(1 for r in self.records if not r.label)
            if empty:
                lines.append(f"  (no class): {_count(empty, 'image')}")
        elif self.task.has_boxes:
            empty = sum(1 for r in self.records if not r.label)
            if empty:
                lines.append(f"  (no objects): {_count(empty, 'image')}")
        return "\n".join(lines)

    def format(self, max_problems: int = 50) -> str:
        """The summary, the warnings, then the first ``max_problems`` problems one per line, then ``... and K more``."""
        parts = [self.summary()]
        if self.warnings:
            parts.append(f"{_count(len(self.warnings), 'warning')}:")
            parts.extend(str(w) for w in self.warnings)
        parts.extend(f"hint: {hint}" for hint in self.hints)
        if not self.problems:
            parts.append("OK: no problems found")
            return "\n".join(parts)
        where = f" in {_count(len(self.rejected), 'rejected row')}" if self.rejected else ""
        parts.append(f"{_count(len(self.problems), 'problem')}{where}:")
        count = len(self.problems)
        parts.extend(str(p) for p in self.problems[:max(0, max_problems)])
        if count > max_problems:
            parts.append(f"... and {count - max(0, max_problems)} more")
        return "\n".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _workers() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


def _label_key(record: ImageRecord):
    """The label with order ignored, to tell identical duplicates from conflicting ones."""
    label = record.label
    if isinstance(label, str):
        return label
    if label and not isinstance(label[0], str):
        return tuple(sorted(label, key=lambda o: (o.label, o.box, o.is_crowd, o.polygon)))
    return frozenset(label)


def _strip_url(message: str, url: str) -> str:
    prefix = f"{url}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _parse_file(path: Path, task: ImageTask, problems: list[Problem], bad_text: dict[int, str]
                ) -> tuple[list[ImageRecord], int]:
    """Parse every row; rows with problems go to ``bad_text`` (line -> text)."""
    source = str(path)
    records: list[ImageRecord] = []
    rows = 0
    # The decoder's scanner is what json.loads calls, without its two Python-level wrapper frames; lines are
    # stripped, so only trailing data needs a check.
    scan = json.JSONDecoder().scan_once
    for line, text, line_error in iter_jsonl_checked(path):
        rows += 1
        if line_error:
            problems.append(Problem(source, line, "row", line_error, text))
            bad_text[line] = text
            continue
        try:
            try:
                obj, end = scan(text, 0)
            except StopIteration as stop:  # how the scanner says "no JSON value here" (as json.loads reports it)
                raise json.JSONDecodeError("Expecting value", text, stop.value) from None
            if end != len(text):
                raise json.JSONDecodeError("Extra data", text, end)
        except json.JSONDecodeError as exc:
            problems.append(Problem(source, line, "row", f"not valid JSON: {exc.msg} (column {exc.colno})", text))
            bad_text[line] = text
            continue
        except (ValueError, RecursionError) as exc:
            problems.append(Problem(source, line, "row", f"not valid JSON: {exc}", text))
            bad_text[line] = text
            continue
        record = parse_record(obj, task, source=source, line=line, problems=problems)
        if record is None:
            bad_text[line] = text
        else:
            records.append(record)
    return records, rows


def classes_of(path: str | os.PathLike, task: ImageTask | str) -> list[str]:
    """The sorted class names of the valid rows of ``path`` (parsing only: no URL resolution, no images)."""
    path = Path(path)
    check_data_file(path)
    task = ImageTask.parse(task)
    records, _ = _parse_file(path, task, [], {})
    return _classes(records, task)


def validate_jsonl(path: str | os.PathLike, task: ImageTask | str, *, check_images: bool = True,
                   prefix_map: Mapping[str, str | os.PathLike] | None = None,
                   cache_dir: str | os.PathLike | None = None,
                   known_classes: Iterable[str] | None = None,
                   download_limits: DownloadLimits | None = None) -> ValidationReport:
    """Check every row of a JSONL file for ``task`` and collect all problems.

    Parameters
    ----------
    path : the JSONL file; relative ``image_url`` values are taken relative to its folder.
    task : the task whose label form the rows must have.
    check_images : decode every image (missing, empty, truncated, not an image) and compare its size after
        EXIF orientation with ``image_details``. Without it no image file is opened (remote URLs are still
        downloaded into the cache, since the records need a local path).
    prefix_map : URL prefix -> local folder (``{"AmlDatastore://image_data/": "/data/images"}``).
    cache_dir : where remote images are cached (default: the workspace's ``cache`` folder, created only when
        a download happens).
    known_classes : the classes of the training data; rows of a validation file naming other classes are
        problems. Without it the file is taken as training data and its class count is checked.
    download_limits : bounds of the downloads of remote images (``urls.DownloadLimits``; its defaults when
        None): per read, per download, size, all downloads together, failures per host.

    Raises
    ------
    DataError
        when ``path`` itself cannot be read (missing, a folder, not a regular file). Problems in its rows are
        in the report.
    """
    task = ImageTask.parse(task)
    path = Path(path)
    check_data_file(path)
    source = str(path)
    not_jsonl = not_jsonl_reason(path)
    if not_jsonl is not None:
        return ValidationReport(task=task, source=path, records=[], rejected=[],
                                problems=[Problem(source, 0, "file", not_jsonl)], classes=[], rows=0)
    problems: list[Problem] = []
    bad_text: dict[int, str] = {}
    late: set[int] = set()  # lines rejected after parsing (their text is read again at the end)

    candidates, rows = _parse_file(path, task, problems, bad_text)
    candidates, duplicates = _check_rows(candidates, task, source, known_classes, problems, late)
    candidates, classes = _check_spellings(candidates, task, source, problems, late)
    spelled = len(candidates)
    candidates = _resolve_paths(candidates, path, prefix_map, cache_dir, problems, late,
                                DownloadSession(download_limits))

    images_checked = None
    if check_images:
        candidates, images_checked = _check_images(candidates, problems, late)

    if len(candidates) != spelled:  # rows were rejected since the classes were listed
        classes = _classes(candidates, task)
    warnings: list[Problem] = []
    hints: list[str] = []
    if known_classes is None:
        count_problems, warnings = class_count_problems(classes, candidates, task, source)
        problems.extend(count_problems)
        hint = few_images_hint(candidates, classes)
        if hint:
            hints.append(f"{source}: {hint}")
    problems.sort(key=lambda p: p.line)
    rejected = _rejected_rows(path, problems, bad_text, late)
    if rows == 0:
        problems.insert(0, Problem(source, 0, "file", "no rows (the file is empty)"))
    return ValidationReport(task=task, source=path, records=candidates, rejected=rejected, problems=problems,
                            classes=classes, rows=rows, duplicates_dropped=duplicates,
                            images_checked=images_checked, warnings=warnings, hints=hints)


def _check_spellings(candidates: list[ImageRecord], task: ImageTask, source: str, problems: list[Problem],
                     late: set[int]) -> tuple[list[ImageRecord], list[str]]:
    """Reject the rows that use a less common spelling of a class (``labels.near_duplicate_problems``).

    Returns the rows kept and their classes.
    """
    classes = _classes(candidates, task)
    found = near_duplicate_problems(candidates, classes, task, source)
    if not found:
        return candidates, classes
    problems.extend(found)
    bad = {p.line for p in found}
    late.update(bad)
    kept = [r for r in candidates if r.line not in bad]
    return kept, _classes(kept, task)


def _classes(records: list[ImageRecord], task: ImageTask) -> list[str]:
    """``records.sorted_classes`` for one task, without a list per record (it runs on every validation)."""
    if task.has_boxes:
        names = {obj.label for record in records for obj in record.label}
    elif task.is_multilabel:
        names = {name for record in records for name in record.label}
    else:
        names = {record.label for record in records}
    return sorted(names)


def _check_rows(candidates: list[ImageRecord], task: ImageTask, source: str, known_classes,
                problems: list[Problem], late: set[int]) -> tuple[list[ImageRecord], int]:
    """Classes unknown to training, then duplicates of ``image_url``."""
    if known_classes is not None:
        known = frozenset(known_classes)
        shown = tuple(sorted(known))
        listing = ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "")
        kept = []
        for record in candidates:
            unknown = [(f, n) for f, n in class_fields(record, task) if n not in known]
            for field_name, name in unknown:
                message = known_class_hint(name, known) or \
                    f"class not in the training data (known: {listing}){suggest(name, shown)}"
                problems.append(Problem(source, record.line, field_name, message, name))
            if unknown:
                late.add(record.line)
            else:
                kept.append(record)
        candidates = kept

    # Duplicates, by image_url as written.
    first: dict[str, ImageRecord] = {}
    duplicates = 0
    kept = []
    for record in candidates:
        earlier = first.setdefault(record.image_url, record)
        if earlier is record:
            kept.append(record)
        elif _label_key(earlier) != _label_key(record):
            problems.append(Problem(source, record.line, "image_url",
                                    f"duplicate of line {earlier.line} with a different label",
                                    record.image_url))
            late.add(record.line)
        elif (earlier.width, earlier.height, earlier.format) != (record.width, record.height, record.format):
            problems.append(Problem(source, record.line, "image_url",
                                    f"duplicate of line {earlier.line} with different image_details",
                                    record.image_url))
            late.add(record.line)
        else:
            duplicates += 1
    return kept, duplicates


def _resolve_paths(records: list[ImageRecord], path: Path, prefix_map, cache_dir, problems: list[Problem],
                   late: set[int], session: DownloadSession) -> list[ImageRecord]:
    source = str(path)
    base = path.absolute().parent
    kept: list[ImageRecord] = []
    remote: dict[str, list[ImageRecord]] = {}
    # Joined as text: Path(base_text + url) == base / url for a relative url, and ImageRecord builds the Path
    # when it is first read (see ImageRecord.path).
    base_text = str(base) if str(base).endswith(os.sep) else str(base) + os.sep
    for record in records:
        url = record.image_url
        if not prefix_map and ":" not in url and url[0] not in "/~\\":
            # The common case, a plain relative path: no URL parsing, no stat, no Path per row.
            record.path = base_text + url
            kept.append(record)
            continue
        if not prefix_map or not any(url.startswith(p) for p in prefix_map):
            scheme = url.split(":", 1)[0].lower()
            if scheme in ("http", "https"):
                remote.setdefault(url, []).append(record)
                continue
        try:
            record.path = resolve_image_url(url, base, prefix_map, cache_dir)
        except (DataError, ValueError) as exc:
            problems.append(Problem(source, record.line, "image_url", _strip_url(str(exc), url), url))
            late.add(record.line)
            continue
        kept.append(record)
    if remote:
        if cache_dir is None:
            from jupyter_avml.workspace import Workspace

            cache_dir = Workspace.resolve(None).cache_dir

        def fetch(url: str):
            try:
                return resolve_image_url(url, base, None, cache_dir, session=session), None
            except (DataError, ValueError) as exc:
                return None, _strip_url(str(exc), url)

        urls = list(remote)
        with ThreadPoolExecutor(_workers()) as pool:
            results = list(pool.map(fetch, urls))
        for url, (local, error) in zip(urls, results, strict=True):
            for record in remote[url]:
                if error is None:
                    record.path = local
                    kept.append(record)
                else:
                    problems.append(Problem(source, record.line, "image_url", error, url))
                    late.add(record.line)
        kept.sort(key=lambda r: r.line)
    return kept


def _check_images(records: list[ImageRecord], problems: list[Problem], late: set[int]
                  ) -> tuple[list[ImageRecord], int]:
    paths = list(dict.fromkeys(r.path for r in records))
    if len(paths) > 1:
        with ThreadPoolExecutor(_workers()) as pool:
            results = dict(zip(paths, pool.map(inspect_image, paths), strict=True))
    else:
        results = {p: inspect_image(p) for p in paths}
    kept = []
    for record in records:
        reason, size = results[record.path]
        source = record.source or "<memory>"
        if reason is not None:
            problems.append(Problem(source, record.line, "image_url", f"image {record.path}: {reason}",
                                    record.image_url))
            late.add(record.line)
            continue
        bad = False
        for field_name, given, actual in (("width", record.width, size[0]), ("height", record.height, size[1])):
            if given is not None and given != actual:
                problems.append(Problem(source, record.line, f"image_details.{field_name}",
                                        f"does not match the image, which is {actual} px "
                                        f"{'wide' if field_name == 'width' else 'high'} (after EXIF orientation)",
                                        given))
                bad = True
        if bad:
            late.add(record.line)
        else:
            kept.append(record)
    return kept, len(paths)


def _rejected_rows(path: Path, problems: list[Problem], bad_text: dict[int, str], late: set[int]
                   ) -> list[RejectedRow]:
    lines = set(bad_text) | late
    if not lines:
        return []
    texts = dict(bad_text)
    missing = late - set(bad_text)
    if missing:  # rows rejected after parsing: read their text again rather than keep every line in memory
        for line, text, _ in iter_jsonl_checked(path):
            if line in missing:
                texts[line] = text
    by_line: dict[int, list[Problem]] = {}
    for problem in problems:
        by_line.setdefault(problem.line, []).append(problem)
    return [RejectedRow(line, texts.get(line, ""), by_line.get(line, [])) for line in sorted(lines)]


def read_dataset(path: str | os.PathLike, task: ImageTask | str, *, skip_invalid: bool = False,
                 check_images: bool = True, prefix_map: Mapping[str, str | os.PathLike] | None = None,
                 cache_dir: str | os.PathLike | None = None, known_classes: Iterable[str] | None = None,
                 rejected_out: str | os.PathLike | None = None,
                 download_limits: DownloadLimits | None = None) -> ImageDataset:
    """Validate ``path`` and return its rows as an ``ImageDataset`` (paths resolved).

    Raises
    ------
    DataError
        when a problem was found and ``skip_invalid`` is false; its message is ``report.format()`` and its
        ``problems`` the ``Problem`` objects. With ``skip_invalid`` the valid rows are returned, and the
        rejected rows are written to ``rejected_out`` (when given) as JSONL:
        ``{"line": N, "text": "...", "problems": ["FILE:LINE: field: message (value)", ...]}``; problems of
        the whole file (``report.file_problems``: empty, not JSON Lines, one class) still raise.
    """
    report = validate_jsonl(path, task, check_images=check_images, prefix_map=prefix_map, cache_dir=cache_dir,
                            known_classes=known_classes, download_limits=download_limits)
    if (not report.ok and not skip_invalid) or report.file_problems:
        raise DataError(report.format(), report.problems)
    if rejected_out is not None:
        write_rejected(report.rejected, rejected_out)
    return ImageDataset(report.task, report.records, report.source, list(report.classes))


def emit_hints(report: ValidationReport, logger: logging.Logger | None = None) -> None:
    """Show a report's hints where a run or an experiment starts: as ``FewImagesWarning`` (a notebook shows it
    under the cell) and in ``logger`` (the run's log)."""
    for hint in report.hints:
        if logger is not None:
            logger.warning("%s", hint)
        warnings.warn(hint, FewImagesWarning, stacklevel=3)


def write_rejected(rejected: list[RejectedRow], path: str | os.PathLike) -> Path:
    """Write rejected rows as JSONL (one ``RejectedRow.to_json()`` per line); returns the path."""
    from jupyter_avml.fileio import atomic_write

    def write(handle) -> None:
        for row in rejected:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")

    return atomic_write(path, write, binary=False)
