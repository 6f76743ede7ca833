"""Offline scoring: ``avml predict MODEL IMAGES...`` and ``avml score MODEL INPUT.jsonl -o OUT.jsonl``.

``score_jsonl`` reads INPUT one line at a time: each line is a JSON object with ``image_url`` (the spec's
JSONL: relative to the file, absolute, ``file://``, or http(s) through the workspace's image cache; other
fields such as ``label`` are kept) or ``image`` (base64 bytes). It writes one line per input line, in order:
the input's fields except ``image``, the ``line`` number, and the prediction (``probs``/``labels`` or
``boxes``), or ``error`` when that line could not be scored (the others go on).

Lines go to ``OUT.partial`` as they are scored and become ``OUT`` at the end; an interrupted score resumes
from what ``OUT.partial`` holds (the same input scored with the same model), so nothing is scored twice.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_avml.errors import AvmlError, ConfigError

PARTIAL_SUFFIX = ".partial"


@dataclass
class ScoreSummary:
    """What ``score_jsonl`` did."""

    output: str
    lines: int
    scored: int
    failed: int
    resumed: int
    errors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def parse_settings(items: list[str]) -> dict[str, str]:
    """``["box_score_thresh=0.5"]`` -> ``{"box_score_thresh": "0.5"}`` (values are checked by the model)."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects SETTING=VALUE (e.g. --set box_score_thresh=0.5), got {item!r}",
                              field="--set", value=item)
        settings[key.strip()] = value.strip()
    return settings


def predict_files(model: str, images: list[str], *, settings: dict[str, Any] | None = None, workspace=None,
                  device: str = "auto") -> list[dict[str, Any]]:
    """Predictions for image files (``avml predict``), each with its ``filename`` as given."""
    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.serving.model_source import resolve_model_reference

    predictor = load_model(resolve_model_reference(model, workspace), device=device, workspace=workspace,
                           **(settings or {}))
    results = predictor.predict(list(images))
    for result, image in zip(results, images, strict=True):
        result["filename"] = image
    return results


def score_jsonl(model: str, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                settings: dict[str, Any] | None = None, workspace=None, device: str = "auto", batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None) -> ScoreSummary:
    """Score every line of ``input_path`` into ``output_path`` (see the module docstring).

    ``progress(done, total)`` is called after each batch.
    """
    from jupyter_avml.data.jsonl_file import check_data_file, iter_jsonl_checked
    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.serving.model_source import resolve_model_reference
    from jupyter_avml.workspace import Workspace

    source = Path(input_path)
    check_data_file(source)
    output = Path(output_path)
    if output.resolve() == source.resolve():
        raise ConfigError(f"the output {output} is the input file; choose another -o", field="-o", value=str(output))
    ws = Workspace.resolve(workspace)
    predictor = load_model(resolve_model_reference(model, ws), device=device, workspace=ws, **(settings or {}))
    rows = list(iter_jsonl_checked(source))
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    done = _completed_lines(partial, [number for number, _, _ in rows])
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = ScoreSummary(str(output), len(rows), 0, 0, len(done), [])
    with open(partial, "a" if done else "w", encoding="utf-8") as out:
        todo = [row for row in rows if row[0] not in done]
        finished = len(done)
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = todo[start:start + batch_size]
            for record in _score_chunk(predictor, chunk, source, ws):
                if "error" in record:
                    summary.failed += 1
                    summary.errors.append(f"{source}:{record['line']}: {record['error']}")
                else:
                    summary.scored += 1
                out.write(json.dumps(record) + "\n")
            out.flush()
            finished += len(chunk)
            if progress is not None:
                progress(finished, len(rows))
    os.replace(partial, output)
    return summary


def _completed_lines(partial: Path, numbers: list[int]) -> set[int]:
    """The input line numbers an earlier, interrupted score wrote completely (in order) to ``partial``."""
    if not partial.is_file():
        return set()
    done: list[int] = []
    kept_bytes = 0
    with open(partial, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a line cut by the interruption: scored again
            try:
                number = json.loads(raw)["line"]
            except (ValueError, KeyError, TypeError):
                break
            if len(done) >= len(numbers) or number != numbers[len(done)]:
                break
            done.append(number)
            kept_bytes += len(raw)
    with open(partial, "r+b") as handle:
        handle.truncate(kept_bytes)
    return set(done)


def _score_chunk(predictor, chunk, source: Path, workspace) -> list[dict[str, Any]]:
    from jupyter_avml.data.images import load_image

    records, images, slots = [], [], []
    for number, text, problem in chunk:
        record: dict[str, Any] = {"line": number}
        try:
            if problem:
                raise ConfigError(problem)
            row = json.loads(text)
            if not isinstance(row, dict):
                raise ConfigError(f"a line must be a JSON object with image_url or image, got {type(row).__name__}")
            record.update({k: v for k, v in row.items() if k != "image"})
            images.append(load_image(_image_of(row, source, workspace)))
            slots.append(len(records))
        except (AvmlError, ValueError, OSError) as exc:
            record["error"] = str(exc)
        records.append(record)
    if images:
        try:
            predictions = predictor.predict(images)
        except AvmlError as exc:
            for slot in slots:
                records[slot]["error"] = str(exc)
        else:
            for slot, prediction in zip(slots, predictions, strict=True):
                prediction.pop("filename", None)
                records[slot].update(prediction)
    return records


def _image_of(row: dict[str, Any], source: Path, workspace):
    import io

    from jupyter_avml.data.urls import resolve_image_url

    if isinstance(row.get("image"), str):
        try:
            return io.BytesIO(base64.b64decode(row["image"], validate=True))
        except ValueError as exc:
            raise ConfigError(f"image is not valid base64 ({exc})", field="image") from None
    url = row.get("image_url")
    if not isinstance(url, str) or not url:
        raise ConfigError("the line has neither image_url (a path or URL) nor image (base64)", field="image_url")
    return resolve_image_url(url, source.parent, cache_dir=workspace.cache_dir)
