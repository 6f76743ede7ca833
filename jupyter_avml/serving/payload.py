"""What a scoring request carries: image bytes, inference settings, and the form its answer takes.

Accepted bodies (``POST /score`` and ``POST /invocations`` take them all):

* the spec's request: the raw bytes of one image, ``Content-Type: application/octet-stream`` (or ``image/*``);
  settings as query parameters (``?box_score_thresh=0.5``; ``?filename=NAME`` names the image in the answer).
  The answer is one prediction object;
* ``application/json`` ``{"image": BASE64}`` (one prediction object) or ``{"image": [BASE64, ...]}`` and
  ``[{"image": BASE64}, ...]`` (a list of predictions), with optional ``"params": {setting: value}``;
* MLflow's scoring-server JSON (what MLflow clients send): exactly one of ``dataframe_split``
  (``{"columns": ["image"], "data": [[BASE64], ...]}``), ``dataframe_records`` (``[{"image": BASE64}, ...]``),
  ``instances`` or ``inputs`` (records, ``{"image": [BASE64, ...]}`` or a list of BASE64), with optional
  ``"params"``. The answer is ``{"predictions": [...]}``, as MLflow's own server answers.

A BASE64 value is standard base64 of the image file's bytes; ``{"b64": BASE64}`` (TF-serving's binary form)
and ``data:image/...;base64,`` prefixes are accepted too.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.serving.errors import RequestError, bad_request

RAW_TYPES = ("application/octet-stream",)
JSON_TYPE = "application/json"
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
IMAGE_COLUMN = "image"

SINGLE, LIST, MLFLOW = "single", "list", "mlflow"


@dataclass
class ParsedRequest:
    """The images of a request (bytes, and a name for messages), its settings and its answer's form."""

    images: list[bytes]
    form: str
    settings: dict[str, Any] = field(default_factory=dict)
    filename: str | None = None
    from_json: bool = True

    def image_label(self, index: int) -> str:
        """How messages name image ``index``."""
        return f"image {index}" if self.from_json else "the request body"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    """``"raw"`` or ``"json"`` for a scoring request's ``Content-Type``; 415 otherwise."""
    kind = media_type(content_type)
    if kind in RAW_TYPES or kind.startswith("image/"):
        return "raw"
    if kind == JSON_TYPE or kind.endswith("+json"):
        return "json"
    shown = repr(content_type) if content_type else "none"
    raise RequestError(415, "unsupported_content_type",
                       f"Content-Type {shown} is not accepted: send the image bytes with 'Content-Type: "
                       f"application/octet-stream', or JSON ('Content-Type: application/json') such as "
                       f'{{"image": BASE64}} or an MLflow input ({", ".join(MLFLOW_FORMATS)})')


def parse_request(kind: str, body: bytes, query: dict[str, str], max_images: int) -> ParsedRequest:
    """The ``ParsedRequest`` of a body whose kind ``check_content_type`` gave; ``RequestError`` (400/413)
    for anything else."""
    settings = {k: v for k, v in query.items() if k != "filename"}
    if kind == "raw":
        if not body:
            raise bad_request("empty_body", "the request body is empty: send the bytes of one image file "
                                            "(Content-Type: application/octet-stream)")
        return ParsedRequest([body], SINGLE, settings, filename=query.get("filename"), from_json=False)
    data = _json(body)
    if isinstance(data, list):
        images, form = _records(data, "the JSON list"), LIST
    elif isinstance(data, dict):
        params = data.get(PARAMS_KEY, {})
        if not isinstance(params, dict):
            raise bad_request("bad_params", f'"params" must be an object of settings, got {_kind(params)}')
        settings.update(params)
        formats = [key for key in MLFLOW_FORMATS if key in data]
        if len(formats) > 1:
            raise bad_request("bad_json", f"give exactly one MLflow input, got {', '.join(formats)}")
        if formats:
            images, form = _mlflow_images(formats[0], data[formats[0]]), MLFLOW
        elif IMAGE_COLUMN in data:
            value = data[IMAGE_COLUMN]
            if isinstance(value, list):
                images, form = [_image_bytes(v, f"image {i}") for i, v in enumerate(value)], LIST
            else:
                images, form = [_image_bytes(value, "image 0")], SINGLE
        else:
            keys = ", ".join(sorted(map(str, data))[:8]) or "none"
            raise bad_request("bad_json", f'the JSON object has no "image" and no MLflow input (keys: {keys}); '
                                          f'send {{"image": BASE64}} or one of {", ".join(MLFLOW_FORMATS)}')
    else:
        raise bad_request("bad_json", f'the JSON body is {_kind(data)}; send {{"image": BASE64}}, a list of such '
                                      f"objects, or an MLflow input")
    if not images:
        raise bad_request("no_images", "the request holds no image")
    if len(images) > max_images:
        raise RequestError(413, "too_many_images", f"the request holds {len(images)} images; this service takes at "
                                                   f"most {max_images} per request (--max-images-per-request)")
    return ParsedRequest(images, form, settings)


def _json(body: bytes) -> Any:
    if not body:
        raise bad_request("empty_body", 'the request body is empty: send JSON such as {"image": BASE64}')
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise bad_request("bad_json", "the body is not UTF-8 JSON (Content-Type says application/json; for image "
                                      "bytes use application/octet-stream)") from None
    except ValueError as exc:
        raise bad_request("bad_json", f"the body is not valid JSON ({exc})") from None


def _mlflow_images(key: str, value: Any) -> list[bytes]:
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise bad_request("bad_json", 'dataframe_split must be {"columns": ["image"], "data": [[BASE64], ...]}')
        columns = value.get("columns", [IMAGE_COLUMN])
        if not isinstance(columns, list) or IMAGE_COLUMN not in columns:
            raise bad_request("bad_json", f'dataframe_split has no "image" column (columns: {columns!r})')
        position = columns.index(IMAGE_COLUMN)
        rows = value["data"]
        out = []
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise bad_request("bad_json", f"dataframe_split row {index} must be a list of {len(columns)} "
                                              f"value(s), got {_kind(row)}")
            out.append(_image_bytes(row[position], f"image {index}"))
        return out
    if isinstance(value, dict):  # {"image": [BASE64, ...]} (columnar)
        column = value.get(IMAGE_COLUMN)
        if not isinstance(column, list):
            column = [column] if column is not None else None
        if column is None:
            raise bad_request("bad_json", f'{key} has no "image" column (keys: {", ".join(map(str, value))})')
        return [_image_bytes(v, f"image {i}") for i, v in enumerate(column)]
    if isinstance(value, list):
        return _records(value, key)
    raise bad_request("bad_json", f"{key} must be a list of records or an object of columns, got {_kind(value)}")


def _records(items: list, where: str) -> list[bytes]:
    out = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            if IMAGE_COLUMN not in item:
                raise bad_request("bad_json", f'{where}[{index}] has no "image" field')
            item = item[IMAGE_COLUMN]
        out.append(_image_bytes(item, f"image {index}"))
    return out


def _image_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, dict) and set(value) == {"b64"}:
        value = value["b64"]
    if not isinstance(value, str):
        raise bad_request("bad_base64", f"{what} must be a base64 string of the image file's bytes, got {_kind(value)}")
    text = value.strip()
    if text.startswith("data:") and ";base64," in text[:100]:
        text = text.split(";base64,", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("bad_base64", f"{what} is not valid base64 ({exc}; {len(text)} characters)") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}")
