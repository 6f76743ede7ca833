"""Calling a service: the request snippets ``deploy`` shows (and runs first), and a small client.

The Python snippet uses only the standard library, so it runs anywhere the image is.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import urllib.error
import urllib.request
from typing import Any

SNIPPET_TIMEOUT_S = 60


def python_snippet(score_url: str, key: str | None, image: str) -> str:
    """Python that sends ``image`` to ``score_url`` and prints the prediction."""
    auth = f', "Authorization": "Bearer {key}"' if key else ""
    return (f"import json, urllib.request\n"
            f"IMAGE = {image!r}\n"
            f"request = urllib.request.Request({score_url!r}, data=open(IMAGE, \"rb\").read(),\n"
            f"                                 headers={{\"Content-Type\": \"application/octet-stream\"{auth}}})\n"
            f"with urllib.request.urlopen(request, timeout={SNIPPET_TIMEOUT_S}) as response:\n"
            f"    prediction = json.load(response)\n"
            f"print(prediction)\n")


def curl_snippet(score_url: str, key: str | None, image: str) -> str:
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    return (f'curl -X POST {score_url} -H "Content-Type: application/octet-stream"{auth} '
            f'--data-binary @{image}')


def probe_image_bytes(size: int = 64) -> bytes:
    """A small PNG (a light square on grey) for test requests."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (128, 128, 128))
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(230, 200, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def run_snippet(snippet: str, image: str | None = None) -> dict[str, Any]:
    """Run a ``python_snippet`` as written (``IMAGE`` replaced by a generated image when ``image`` is None);
    returns ``{"image", "prediction"}``. Raises ``DeploymentError`` with the service's answer when it fails."""
    from jupyter_avml.serving.deployments import DeploymentError

    path, made = image, None
    if path is None:
        handle, made = tempfile.mkstemp(prefix="avml-probe-", suffix=".png")
        with os.fdopen(handle, "wb") as out:
            out.write(probe_image_bytes())
        path = made
    lines = snippet.splitlines()
    lines[1] = f"IMAGE = {path!r}"
    scope: dict[str, Any] = {}
    try:
        exec(compile("\n".join(lines).replace("print(prediction)", ""), "<deploy snippet>", "exec"), scope)  # noqa: S102
    except urllib.error.HTTPError as exc:
        answer = exc.read()[:500].decode(errors="replace")
        raise DeploymentError(f"the test request failed: HTTP {exc.code}: {answer}") from None
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"the test request failed: {exc}") from None
    finally:
        if made:
            os.unlink(made)
    return {"image": image or "a generated 64 x 64 image", "prediction": scope.get("prediction")}


def score(url: str, data: bytes, *, key: str | None = None, params: dict[str, Any] | None = None,
          timeout: float = 60.0) -> tuple[int, Any]:
    """POST image bytes to ``url`` (the ``/score`` URL); returns ``(status, decoded JSON answer)``."""
    if params:
        from urllib.parse import urlencode

        url = f"{url}?{urlencode(params)}"
    headers = {"Content-Type": "application/octet-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
