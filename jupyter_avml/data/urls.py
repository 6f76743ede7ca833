"""Resolve a JSONL ``image_url`` to a local file.

Accepted forms, tried in this order:

1. a prefix of ``prefix_map`` (e.g. ``{"AmlDatastore://image_data/": "/data/images"}`` or an
   ``azureml://.../paths/`` prefix): the rest of the URL is taken relative to the mapped folder;
2. ``http://`` / ``https://``: downloaded once into the workspace's content-addressed cache
   (``cache/images/<sha256 of the bytes><suffix>``, indexed by ``cache/urls/<sha256 of the URL>``);
3. ``file://`` URLs;
4. absolute paths;
5. paths relative to the folder of the JSONL file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

from jupyter_avml.errors import DataError
from jupyter_avml.fileio import atomic_write_text

DOWNLOAD_TIMEOUT_S = 60


class UnresolvableURL(DataError):
    """The URL names a scheme or a prefix that cannot be mapped to a local file."""


def resolve_image_url(url: str, base_dir: str | os.PathLike | None = None,
                      prefix_map: Mapping[str, str | os.PathLike] | None = None,
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """The local path of ``url``. Remote URLs are downloaded into ``cache_dir`` (required for them).

    The path is returned whether or not the file exists; checking is the caller's business (validation
    reports a missing image with its line).
    """
    if prefix_map:
        # Longest prefix first, so a specific mapping wins over a general one.
        for prefix in sorted(prefix_map, key=len, reverse=True):
            if url.startswith(prefix):
                rest = url[len(prefix):].lstrip("/")
                return Path(prefix_map[prefix]).expanduser() / urllib.parse.unquote(rest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        if cache_dir is None:
            raise UnresolvableURL(f"{url}: remote images need a cache folder (a workspace)")
        return HttpImageCache(cache_dir).fetch(url)
    if scheme == "file":
        parts = urllib.parse.urlsplit(url)
        # url2pathname unquotes (%20 -> space) exactly once; unquoting before it would turn %2520 into a space.
        if parts.netloc.lower() in ("", "localhost"):
            return Path(urllib.request.url2pathname(parts.path))
        if os.name == "nt":  # file://server/share/x.jpg: a UNC path
            return Path(urllib.request.url2pathname("//" + parts.netloc + parts.path))
        raise UnresolvableURL(f"{url}: a file:// URL names a local absolute path (file:///folder/image.jpg or "
                              f"file://localhost/folder/image.jpg), not the host {parts.netloc!r}; "
                              f"for a path relative to the JSONL file write it without file://")
    if len(scheme) > 1:  # not a Windows drive letter: an unknown scheme such as AmlDatastore://
        raise UnresolvableURL(f"{url}: no local folder is mapped to this URL; add its prefix to "
                              f"image_url_prefix_map (e.g. {{'{_prefix_hint(url)}': '/local/folder'}}; "
                              f"on the command line --prefix-map '{_prefix_hint(url)}=/local/folder')")
    path = Path(url).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def _prefix_hint(url: str) -> str:
    head, sep, _ = url.rpartition("/")
    return head + sep if sep else url


class HttpImageCache:
    """Downloads each URL once; files are named by the SHA-256 of their bytes."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(cache_dir)
        self.images = self.root / "images"
        self.index = self.root / "urls"

    def lookup(self, url: str) -> Path | None:
        entry = self.index / _sha256(url.encode())
        if entry.is_file():
            target = self.images / entry.read_text(encoding="utf-8").strip()
            if target.is_file():
                return target
        return None

    def fetch(self, url: str) -> Path:
        cached = self.lookup(url)
        if cached is not None:
            return cached
        self.images.mkdir(parents=True, exist_ok=True)
        self.index.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.images, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            os.unlink(tmp_name)
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise DataError(f"{url}: download failed: {reason}") from None
        suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()[:8]
        name = digest.hexdigest() + suffix
        target = self.images / name
        if target.exists():
            os.unlink(tmp_name)
        else:
            # Atomic: a concurrent download of the same bytes replaces the file with identical content.
            os.replace(tmp_name, target)
        atomic_write_text(self.index / _sha256(url.encode()), name)  # unique temporary names: threads index at once
        return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
