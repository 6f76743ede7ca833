"""Hostile requests to a model service: every one gets a 4xx (or a 503 when the service is saturated) with a JSON
error that says what is wrong, quickly; the service logs it and keeps serving (a good request works after each).

The service runs on a free 127.0.0.1 port and is answered by real HTTP requests (``http.client``, or raw sockets
where a client must misbehave). Limits are made small so that each bound is reached in well under a second.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import threading
import time
import zlib

import pytest

from jupyter_avml.serving.limits import ServiceLimits
from jupyter_avml.serving.model_source import ServedModel
from jupyter_avml.serving.server import ServiceThread
from tests.serving.http import call, post_image, post_json
from tests.serving.models import image_bytes, save_untrained

pytestmark = pytest.mark.timeout(120)

KEY = "hostile-key"
LIMITS = ServiceLimits(max_body_bytes=200_000, max_image_pixels=1_000_000, max_images_per_request=4,
                       max_concurrent_requests=2, body_timeout_s=1.0, request_timeout_s=3.0)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    outputs = save_untrained(tmp_path_factory.mktemp("hostile-service"), "image-classification")
    with ServiceThread(ServedModel(outputs, device="cpu"), key=KEY, limits=LIMITS) as running:
        yield running


@pytest.fixture
def requests_log(caplog):
    caplog.set_level(logging.INFO, logger="jupyter_avml.serving")
    return caplog


def _still_serves(service) -> None:
    status, answer, _ = post_image(service.url, image_bytes(), KEY)
    assert status == 200 and len(answer["probs"]) == 3, answer


def _refused(answer, status: int, expected_status: int, code: str, *words: str) -> None:
    assert status == expected_status, (status, answer)
    assert answer["error"]["code"] == code, answer
    for word in words:
        assert word in answer["error"]["message"], (word, answer)


def _flat_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: a few kilobytes that decode to a huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize("body, code, words", [
    (b"", "empty_body", ["empty"]),
    (b"hello, I am text", "not_an_image", ["not an image file"]),
    (image_bytes()[:200], "corrupt_image", ["truncated"]),
    (image_bytes(fmt="JPEG")[:300], "corrupt_image", ["truncated"]),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not_an_image", ["the request body"]),
], ids=["empty", "text", "truncated-png", "truncated-jpeg", "damaged-header"])
def test_bad_image_bodies_are_400_naming_the_problem(service, requests_log, body, code, words):
    status, answer, _ = post_image(service.url, body, KEY)
    _refused(answer, status, 400, code, *words)
    assert f"error={code}" in requests_log.text
    _still_serves(service)


def test_a_decompression_bomb_is_refused_from_its_header(service, assert_quick):
    bomb = _png_bomb(20_000, 20_000)  # 400 million pixels in about 50 KB
    assert len(bomb) < 200_000
    with assert_quick(3):
        status, answer, _ = post_image(service.url, bomb, KEY)
    _refused(answer, status, 413, "image_too_large", "400000000 pixels", "at most 1000000 pixels")
    status, answer, _ = post_image(service.url, _flat_png(1200, 1000), KEY)
    _refused(answer, status, 413, "image_too_large", "1200 x 1000 = 1200000 pixels")
    _still_serves(service)


def test_a_body_over_the_limit_is_413_with_or_without_a_length(service, assert_quick):
    with assert_quick(5):
        status, answer, _ = post_image(service.url, b"\0" * 1_000_000, KEY)
    _refused(answer, status, 413, "body_too_large", "200000 bytes")
    # Chunked: no Content-Length, the size is only known while reading.
    with socket.create_connection(_address(service), timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"\0" * 50_000
        for _ in range(6):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, answer = _read_response(sock)
    _refused(answer, status, 413, "body_too_large")
    _still_serves(service)


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded"])
def test_a_wrong_content_type_is_415_and_says_which_to_use(service, content_type):
    headers = {"Authorization": f"Bearer {KEY}"}
    if content_type:
        headers["Content-Type"] = content_type
    status, answer, _ = call(service.url, "POST", "/score", image_bytes(), headers)
    _refused(answer, status, 415, "unsupported_content_type", "application/octet-stream")
    _still_serves(service)


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_key"),
    ({"Authorization": "Bearer nope"}, "wrong_key"),
    ({"Authorization": "Bearer " + KEY[:-1]}, "wrong_key"),
    ({"Authorization": KEY}, "bad_authorization"),
    ({"Authorization": "Bearer "}, "bad_authorization"),
])
def test_a_missing_or_wrong_key_is_401(service, headers, code):
    status, answer, answer_headers = call(service.url, "POST", "/score", image_bytes(),
                                          {"Content-Type": "application/octet-stream", **headers})
    _refused(answer, status, 401, code)
    assert "www-authenticate" in answer_headers
    _still_serves(service)


@pytest.mark.parametrize("payload, code, words", [
    ({"image": "not base64 at all!"}, "bad_base64", ["image 0", "not valid base64"]),
    ({"image": [base64.b64encode(image_bytes()).decode(), 42]}, "bad_base64", ["image 1", "a base64 string"]),
    ({"picture": "AAAA"}, "bad_json", ['no "image"']),
    ([1, 2, 3], "bad_base64", ["image 0"]),
    ("just a string", "bad_json", ["a string"]),
    ({"dataframe_split": {"columns": ["x"], "data": [["AAAA"]]}}, "bad_json", ['no "image" column']),
    ({"dataframe_records": [], "instances": []}, "bad_json", ["exactly one"]),
    ({"image": base64.b64encode(b"not an image").decode()}, "not_an_image", ["image 0"]),
    ({"image": [base64.b64encode(image_bytes()).decode()] * 5}, "too_many_images", ["5 images", "at most 4"]),
    ({"image": base64.b64encode(image_bytes()).decode(), "params": [1]}, "bad_params", ["params"]),
    ({"image": base64.b64encode(image_bytes()).decode(), "params": {"valid_crop_size": "big"}}, "bad_setting",
     ["valid_crop_size must be an integer"]),
    ({"image": base64.b64encode(image_bytes()).decode(), "params": {"box_score_thresh": 0.5}}, "unknown_setting",
     ["valid_resize_size, valid_crop_size"]),
])
def test_bad_json_requests_are_4xx_naming_the_item(service, payload, code, words):
    status, answer, _ = post_json(service.url, payload, KEY)
    assert 400 <= status < 500
    _refused(answer, status, status, code, *words)
    _still_serves(service)


def test_a_body_that_is_not_json_is_400(service):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for body in (b"{not json", b"\xff\xfe\x00binary", b""):
        status, answer, _ = call(service.url, "POST", "/score", body, headers)
        assert status == 400 and answer["error"]["code"] in ("bad_json", "empty_body"), answer
    _still_serves(service)


def test_bad_settings_in_the_query_are_400_with_the_range(service):
    for query, code, words in (("?valid_crop_size=0", "bad_setting", ["in [1, 4096]", "'0'"]),
                               ("?valid_crop_size=9999999", "bad_setting", ["in [1, 4096]"]),
                               ("?nms=1", "unknown_setting", ["nms"])):
        status, answer, _ = post_image(service.url, image_bytes(), KEY, query=query)
        _refused(answer, status, 400, code, *words)
    _still_serves(service)


def test_a_trickling_body_is_cut_at_the_body_timeout(service, assert_quick):
    with assert_quick(4), socket.create_connection(_address(service), timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 5000\r\n\r\n")
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"\0")
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            status, answer = _read_response(sock)
        finally:
            stop.set()
    _refused(answer, status, 408, "body_timeout", "1 s")
    _still_serves(service)


def test_requests_beyond_the_concurrency_limit_are_503_at_once(service, assert_quick):
    held = []
    try:
        for _ in range(LIMITS.max_concurrent_requests):  # each holds a slot while its body trickles in
            sock = socket.create_connection(_address(service), timeout=10)
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                         b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n")
            held.append(sock)
        time.sleep(0.2)
        with assert_quick(2):
            status, answer, headers = post_image(service.url, image_bytes(), KEY)
        _refused(answer, status, 503, "busy", "retry")
        assert headers["retry-after"] == "1"
    finally:
        for sock in held:
            sock.close()
    time.sleep(LIMITS.body_timeout_s + 0.2)  # the held requests end at their body timeout
    _still_serves(service)


def test_unknown_routes_and_methods_are_json_errors(service):
    status, answer, _ = call(service.url, "GET", "/admin")
    _refused(answer, status, 404, "not_found", "POST /score")
    status, answer, _ = call(service.url, "DELETE", "/score")
    _refused(answer, status, 405, "method_not_allowed", "DELETE")
    _still_serves(service)


def _address(service) -> tuple[str, int]:
    host, port = service.url.rsplit("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _read_response(sock) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return status, json.loads(body)
