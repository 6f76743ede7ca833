"""image_url resolution: relative, absolute, file://, prefix maps, unmapped schemes, HTTP download cache."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from PIL import Image

from jupyter_avml.data.urls import DownloadLimits, HttpImageCache, UnresolvableURL, resolve_image_url
from jupyter_avml.data.validate import validate_jsonl
from jupyter_avml.errors import DataError


def test_relative_to_the_jsonl_folder(tmp_path):
    assert resolve_image_url("images/a.jpg", tmp_path) == tmp_path / "images" / "a.jpg"
    assert resolve_image_url("a b.jpg", tmp_path) == tmp_path / "a b.jpg"


def test_absolute_path(tmp_path):
    target = tmp_path / "x" / "a.jpg"
    assert resolve_image_url(str(target), "/somewhere/else") == target


def test_file_urls(tmp_path):
    assert resolve_image_url(f"file://{tmp_path}/a.jpg", "/elsewhere") == tmp_path / "a.jpg"
    assert resolve_image_url(f"file://localhost{tmp_path}/a.jpg") == tmp_path / "a.jpg"
    # percent-escapes are decoded exactly once
    assert resolve_image_url(f"file://{tmp_path}/a%20b.jpg") == tmp_path / "a b.jpg"
    assert resolve_image_url(f"file://{tmp_path}/a%2520b.jpg") == tmp_path / "a%20b.jpg"
    with pytest.raises(UnresolvableURL, match="not the host 'images'"):
        resolve_image_url("file://images/a.jpg", tmp_path)


def test_prefix_map(tmp_path):
    datastore = tmp_path / "datastore"
    azureml = ("azureml://subscriptions/0000-1111/resourcegroups/rg/workspaces/ws/datastores/"
               "workspaceblobstore/paths/")
    prefix_map = {"AmlDatastore://image_data/": datastore, azureml: tmp_path / "blob",
                  azureml + "special/": tmp_path / "special"}
    assert resolve_image_url("AmlDatastore://image_data/Image_01.png", tmp_path, prefix_map) \
        == datastore / "Image_01.png"
    assert resolve_image_url(azureml + "imgs/Image%2001.png", tmp_path, prefix_map) \
        == tmp_path / "blob" / "imgs" / "Image 01.png"
    # the longest prefix wins
    assert resolve_image_url(azureml + "special/x.png", tmp_path, prefix_map) == tmp_path / "special" / "x.png"


def test_paths_in_a_jsonl_file(tmp_path):
    data = tmp_path / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (data / "top.png", data / "sub" / "deeper" / "x.png", elsewhere / "abs.png",
                 elsewhere / "with space.png", tmp_path / "parent.png"):
        Image.new("RGB", (8, 8)).save(path)
    urls = ["top.png", "sub/deeper/x.png", "./sub/deeper/x.png", "../parent.png", str(elsewhere / "abs.png"),
            f"file://{elsewhere}/with%20space.png", "missing/nope.png"]
    jsonl = data / "d.jsonl"
    # two classes: image-classification training data of one class is a problem of its own
    jsonl.write_text("".join(json.dumps({"image_url": u, "label": "ab"[i % 2]}) + "\n" for i, u in enumerate(urls)))
    report = validate_jsonl(jsonl, "image-classification", check_images=False)
    assert [r.path for r in report.records] == [
        data / "top.png", data / "sub" / "deeper" / "x.png", data / "sub" / "deeper" / "x.png",
        data / ".." / "parent.png", elsewhere / "abs.png", elsewhere / "with space.png", data / "missing" / "nope.png"]
    assert report.ok  # without image checks a missing file is not looked for
    checked = validate_jsonl(jsonl, "image-classification")
    assert [(p.line, p.field) for p in checked.problems] == [(7, "image_url")]
    assert str(data / "missing" / "nope.png") in checked.problems[0].message


def test_unmapped_scheme_is_a_clear_error(tmp_path):
    with pytest.raises(UnresolvableURL) as info:
        resolve_image_url("AmlDatastore://image_data/Image_01.png", tmp_path)
    message = str(info.value)
    assert "AmlDatastore://image_data/Image_01.png" in message
    assert "image_url_prefix_map" in message and "'AmlDatastore://image_data/'" in message


def test_unmapped_scheme_in_validation(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    Image.new("RGB", (8, 8)).save(tmp_path / "local.png")
    # the local rows give the file two classes (one class would be a problem of its own)
    jsonl.write_text(json.dumps({"image_url": "AmlDatastore://image_data/a.png", "label": "cat"}) + "\n"
                     + json.dumps({"image_url": "local.png", "label": "dog"}) + "\n"
                     + json.dumps({"image_url": "./local.png", "label": "cat"}) + "\n")
    report = validate_jsonl(jsonl, "image-classification", check_images=False)
    [problem] = report.problems
    assert (problem.line, problem.field, problem.value) == (1, "image_url", "AmlDatastore://image_data/a.png")
    assert "no local folder is mapped" in problem.message
    assert not problem.message.startswith("AmlDatastore")  # the URL is the value, not repeated in the message

    (tmp_path / "store").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "store" / "a.png")
    report = validate_jsonl(jsonl, "image-classification",
                            prefix_map={"AmlDatastore://image_data/": tmp_path / "store"})
    assert report.ok, report.format()
    assert report.records[0].path == tmp_path / "store" / "a.png"


# --------------------------------------------------------------------------------------------------------
# HTTP


class _Server:
    def __init__(self, root: Path):
        requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output quiet
                pass

        self.requests = requests
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    Image.new("RGB", (16, 12), (200, 0, 0)).save(served / "red.png")
    (served / "copy.png").write_bytes((served / "red.png").read_bytes())
    with _Server(served) as srv:
        yield srv, served


def test_http_download_once_cached_by_content_hash(tmp_path, server):
    srv, served = server
    cache = tmp_path / "cache"
    url = srv.url + "/red.png"
    first = resolve_image_url(url, cache_dir=cache)
    second = resolve_image_url(url, cache_dir=cache)
    assert first == second
    assert srv.requests == ["/red.png"]  # downloaded once
    body = (served / "red.png").read_bytes()
    assert first.name == hashlib.sha256(body).hexdigest() + ".png"
    assert first.read_bytes() == body
    # another URL with the same bytes is downloaded, and stored once
    third = resolve_image_url(srv.url + "/copy.png", cache_dir=cache)
    assert third == first
    assert sorted(p.name for p in (cache / "images").iterdir()) == [first.name]
    assert HttpImageCache(cache).lookup(url) == first


def test_http_404_is_a_clear_error(tmp_path, server):
    srv, _ = server
    with pytest.raises(DataError, match=r"/missing\.png: download failed: HTTP 404"):
        resolve_image_url(srv.url + "/missing.png", cache_dir=tmp_path / "cache")
    # no partial file is left behind
    assert not list((tmp_path / "cache" / "images").glob("*.part"))


def test_http_needs_a_cache_folder(server):
    srv, _ = server
    with pytest.raises(UnresolvableURL, match="cache folder"):
        resolve_image_url(srv.url + "/red.png")


def test_http_in_validation(tmp_path, server):
    srv, _ = server
    rows = [{"image_url": srv.url + "/red.png", "image_details": {"width": 16, "height": 12}, "label": "red"},
            {"image_url": srv.url + "/missing.png", "label": "red"},
            {"image_url": srv.url + "/copy.png", "label": "copy"}]  # two classes: one would be a problem
    jsonl = tmp_path / "web.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    report = validate_jsonl(jsonl, "image-classification", cache_dir=cache)
    assert [(p.line, p.field) for p in report.problems] == [(2, "image_url")]
    assert "download failed: HTTP 404" in report.problems[0].message
    assert [r.line for r in report.records] == [1, 3]
    assert all(r.path.parent == cache / "images" for r in report.records)
    again = validate_jsonl(jsonl, "image-classification", cache_dir=cache)
    assert [r.path for r in again.records] == [r.path for r in report.records]
    # each good URL was fetched once over both validations; the 404 is asked again (nothing is cached for it)
    assert sorted(srv.requests) == ["/copy.png", "/missing.png", "/missing.png", "/red.png"]


def test_http_default_cache_is_the_workspace(tmp_path, server, workspace):
    srv, _ = server
    jsonl = tmp_path / "web.jsonl"
    jsonl.write_text(json.dumps({"image_url": srv.url + "/red.png", "label": "red"}) + "\n"
                     + json.dumps({"image_url": srv.url + "/copy.png", "label": "copy"}) + "\n")  # two classes
    report = validate_jsonl(jsonl, "image-classification")
    assert report.ok, report.format()
    assert report.records[0].path.parent == workspace / "cache" / "images"


@pytest.mark.parametrize("field", ["read_timeout_s", "deadline_s", "max_bytes", "total_deadline_s",
                                   "max_host_failures"])
def test_download_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"DownloadLimits.{field} must be a positive number"):
        DownloadLimits(**{field: 0})


def test_download_limits_apply_to_one_url(tmp_path, server):
    srv, served = server
    size = (served / "red.png").stat().st_size
    with pytest.raises(DataError, match=f"the server announces {size:,} bytes, more than the limit of 10 "):
        resolve_image_url(srv.url + "/red.png", cache_dir=tmp_path / "cache",
                          download_limits=DownloadLimits(max_bytes=10))
    assert resolve_image_url(srv.url + "/red.png", cache_dir=tmp_path / "cache",
                             download_limits=DownloadLimits(max_bytes=size)).stat().st_size == size


def test_cache_that_cannot_be_written_is_a_data_error(tmp_path, server):
    srv, _ = server
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(DataError, match=r"/red\.png: cannot write the download cache"):
        resolve_image_url(srv.url + "/red.png", cache_dir=tmp_path / "cache")


def test_leftovers_of_killed_downloads_are_swept(tmp_path, server):
    import os
    import time

    srv, _ = server
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    stale, fresh = downloads / ".abc.123.tmp", downloads / ".def.456.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress elsewhere")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    HttpImageCache._cleaned.discard(downloads)
    resolve_image_url(srv.url + "/red.png", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in downloads.iterdir()) == [fresh.name]
