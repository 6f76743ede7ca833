"""A bounded HTTP client for the service tests (http.client: every call has a timeout)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

TIMEOUT_S = 30


def call(url: str, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None,
         timeout: float = TIMEOUT_S) -> tuple[int, dict | list | None, dict]:
    """``(status, decoded JSON body, headers)`` of one request to the service at ``url``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None), dict(response.getheaders())
    finally:
        connection.close()


def post_image(url: str, data: bytes, key: str | None = None, query: str = "", **kwargs):
    headers = {"Content-Type": "application/octet-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return call(url, "POST", "/score" + query, data, headers, **kwargs)


def post_json(url: str, payload, key: str | None = None, path: str = "/score", **kwargs):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return call(url, "POST", path, json.dumps(payload), headers, **kwargs)
