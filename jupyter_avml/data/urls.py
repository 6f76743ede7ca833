"""Resolve a JSONL ``image_url`` to a local file.

Accepted forms, tried in this order:

1. a prefix of ``prefix_map`` (e.g. ``{"AmlDatastore://image_data/": "/data/images"}`` or an
   ``azureml://.../paths/`` prefix): the rest of the URL is taken relative to the mapped folder;
2. ``http://`` / ``https://``: downloaded once into the workspace's content-addressed cache
   (``cache/images/<sha256 of the bytes><suffix>``, indexed by ``cache/urls/<sha256 of the URL>``);
3. ``file://`` URLs;
4. absolute paths;
5. paths relative to the folder of the JSONL file.

Downloads are bounded (``DownloadLimits``; defaults below, each one an argument of ``validate_jsonl``,
``read_dataset`` and ``resolve_image_url``):

- ``read_timeout_s`` (30 s): a server silent that long (connecting, or between two bytes) is given up;
- ``deadline_s`` (120 s): one download, however its bytes trickle in, ends by then (at most one read timeout
  later);
- ``max_bytes`` (100 MB): a body announced or found larger is refused without being kept;
- ``total_deadline_s`` (1800 s): all the downloads of one validation; URLs not done by then are reported
  as not downloaded, each on its rows;
- ``max_host_failures`` (3): after this many timeouts or connection failures in a row from one host, its
  other URLs are reported without being tried (a dead server costs three timeouts, not one per image).

Every failure is a ``DataError`` naming the URL and the reason. A download is written through
``fileio.atomic_write`` (into ``cache/downloads``, then moved to its content name), so a failed or interrupted
one leaves no partial file in the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.errors import DataError
from jupyter_avml.fileio import atomic_write, atomic_write_text

DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_DEADLINE_S = 120.0
DOWNLOAD_MAX_BYTES = 100_000_000
DOWNLOADS_TOTAL_DEADLINE_S = 1800.0
MAX_HOST_FAILURES = 3
_CHUNK = 1 << 16
_CLOCK_SLACK_S = 0.01  # a socket timeout set to end at the deadline counts as the deadline
_STALE_DOWNLOAD_S = 3600.0  # a leftover in cache/downloads older than this belongs to no live download


class UnresolvableURL(DataError):
    """The URL names a scheme or a prefix that cannot be mapped to a local file."""


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds of the HTTP downloads of remote ``image_url`` values (see the module docstring)."""

    read_timeout_s: float = DOWNLOAD_TIMEOUT_S
    deadline_s: float = DOWNLOAD_DEADLINE_S
    max_bytes: int = DOWNLOAD_MAX_BYTES
    total_deadline_s: float = DOWNLOADS_TOTAL_DEADLINE_S
    max_host_failures: int = MAX_HOST_FAILURES

    def __post_init__(self) -> None:
        for name in ("read_timeout_s", "deadline_s", "max_bytes", "total_deadline_s", "max_host_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"DownloadLimits.{name} must be a positive number, got {value!r}")


class DownloadSession:
    """The shared state of one batch of downloads: the overall deadline and the failures of each host.

    Thread-safe: validation downloads from a thread pool through one session.
    """

    def __init__(self, limits: DownloadLimits | None = None):
        self.limits = limits or DownloadLimits()
        self.deadline = time.monotonic() + self.limits.total_deadline_s
        self._lock = threading.Lock()
        self._host_failures: dict[str, int] = {}
        self._host_reason: dict[str, str] = {}

    def check_host(self, url: str) -> None:
        """Raise when the host of ``url`` failed too often, or the overall deadline passed."""
        if time.monotonic() >= self.deadline:
            raise DataError(f"{url}: not downloaded: the deadline for all downloads "
                            f"({self.limits.total_deadline_s:g} s) passed")
        host = _host(url)
        with self._lock:
            failures = self._host_failures.get(host, 0)
            reason = self._host_reason.get(host, "")
        if failures >= self.limits.max_host_failures:
            raise DataError(f"{url}: not tried: {failures} downloads from {host} failed in a row ({reason})")

    def record(self, url: str, reason: str | None) -> None:
        """Count a failure that says the host is unreachable (``reason``), or a success (None)."""
        host = _host(url)
        with self._lock:
            if reason is None:
                self._host_failures.pop(host, None)
            else:
                self._host_failures[host] = self._host_failures.get(host, 0) + 1
                self._host_reason[host] = reason


def resolve_image_url(url: str, base_dir: str | os.PathLike | None = None,
                      prefix_map: Mapping[str, str | os.PathLike] | None = None,
                      cache_dir: str | os.PathLike | None = None, *,
                      download_limits: DownloadLimits | None = None,
                      session: DownloadSession | None = None) -> Path:
    """The local path of ``url``. Remote URLs are downloaded into ``cache_dir`` (required for them).

    The path is returned whether or not the file exists; checking is the caller's business (validation
    reports a missing image with its line). ``session`` (else a new one of ``download_limits``) bounds the
    download.
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
        return HttpImageCache(cache_dir).fetch(url, session or DownloadSession(download_limits))
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


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).netloc.lower() or url
    except ValueError:
        return url


class _Refused(Exception):
    """A download stopped on purpose: ``reason`` says why; ``host_down`` when the host itself failed."""

    def __init__(self, reason: str, host_down: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.host_down = host_down


class HttpImageCache:
    """Downloads each URL once; files are named by the SHA-256 of their bytes."""

    _cleaned: set[Path] = set()  # download folders swept of stale leftovers, once per process

    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(cache_dir)
        self.images = self.root / "images"
        self.index = self.root / "urls"
        self.downloads = self.root / "downloads"

    def lookup(self, url: str) -> Path | None:
        entry = self.index / _sha256(url.encode())
        if entry.is_file():
            target = self.images / entry.read_text(encoding="utf-8").strip()
            if target.is_file():
                return target
        return None

    def fetch(self, url: str, session: DownloadSession | None = None) -> Path:
        """The cached file of ``url``, downloaded first when needed (bounded by ``session``).

        Raises
        ------
        DataError
            naming the URL: HTTP error, timeout, deadline, size limit, unreachable host, or a cache folder
            that cannot be written.
        """
        cached = self.lookup(url)
        if cached is not None:
            return cached
        session = session or DownloadSession()
        session.check_host(url)
        try:
            for folder in (self.images, self.index, self.downloads):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{url}: cannot write the download cache {self.root}: {exc.strerror or exc}") from None
        self._sweep_stale()
        staging = self.downloads / _sha256(url.encode())
        digest = hashlib.sha256()
        try:
            atomic_write(staging, lambda out: _download(url, out, digest, session))
        except _Refused as exc:
            session.record(url, exc.reason if exc.host_down else None)
            raise DataError(f"{url}: download failed: {exc.reason}") from None
        except OSError as exc:  # writing the cache (a full disk is named by fileio)
            raise DataError(f"{url}: cannot write the download cache: {exc}") from None
        session.record(url, None)
        suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()[:8]
        name = digest.hexdigest() + suffix
        target = self.images / name
        if target.exists():
            os.unlink(staging)
        else:
            # A complete file moves to its content name; a concurrent download of the same bytes replaces it
            # with identical content.
            os.replace(staging, target)
        atomic_write_text(self.index / _sha256(url.encode()), name)  # unique temporary names: threads index at once
        return target

    def _sweep_stale(self) -> None:
        """Remove what killed downloads left in ``downloads`` (older than any live download can be)."""
        if self.downloads in HttpImageCache._cleaned:
            return
        HttpImageCache._cleaned.add(self.downloads)
        cutoff = time.time() - _STALE_DOWNLOAD_S
        try:
            for entry in os.scandir(self.downloads):
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    pass  # removed meanwhile, or not ours to remove: the cache works without this
        except OSError:
            pass


def _download(url: str, out, digest, session: DownloadSession) -> None:
    """Stream ``url`` into ``out`` within the session's limits; raise ``_Refused`` when it cannot."""
    limits = session.limits
    start = time.monotonic()
    deadline = min(start + limits.deadline_s, session.deadline)
    if deadline <= start:  # the overall deadline passed since the session was asked
        raise _Refused(_deadline_reason(session, start, 0))
    # The socket timeout bounds every connect and every wait for bytes; the deadline is checked after each
    # chunk, so a download that trickles ends at most one timeout after its deadline.
    timeout = max(0.05, min(limits.read_timeout_s, deadline - start))
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _Refused(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if time.monotonic() >= deadline - _CLOCK_SLACK_S:  # the timeout was cut short by the deadline
            raise _Refused(_deadline_reason(session, start, 0)) from None
        reason = getattr(exc, "reason", None) or exc
        raise _Refused(_network_reason(reason, timeout), host_down=_host_down(reason)) from None
    with response:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.strip().isdigit() and int(announced) > limits.max_bytes:
            raise _Refused(f"the server announces {int(announced):,} bytes, more than the limit of "
                           f"{limits.max_bytes:,} (max_bytes)")
        # read1 returns what has arrived (at least one byte) instead of waiting for a whole chunk.
        read = getattr(response, "read1", response.read)
        size = 0
        while True:
            try:
                chunk = read(_CHUNK)
            except (http.client.HTTPException, OSError, ValueError) as exc:
                if time.monotonic() >= deadline - _CLOCK_SLACK_S:
                    raise _Refused(_deadline_reason(session, start, size)) from None
                raise _Refused(f"{_network_reason(exc, timeout)} after {size:,} bytes",
                               host_down=_host_down(exc)) from None
            if not chunk:
                return
            size += len(chunk)
            if size > limits.max_bytes:
                raise _Refused(f"more than the limit of {limits.max_bytes:,} bytes (max_bytes)")
            digest.update(chunk)
            out.write(chunk)
            if time.monotonic() > deadline:
                raise _Refused(_deadline_reason(session, start, size))


def _deadline_reason(session: DownloadSession, start: float, size: int) -> str:
    if time.monotonic() >= session.deadline:
        return (f"the deadline for all downloads ({session.limits.total_deadline_s:g} s) passed after "
                f"{size:,} bytes of this one")
    return (f"not complete within the deadline of {session.limits.deadline_s:g} s ({size:,} bytes in "
            f"{time.monotonic() - start:.1f} s)")


def _host_down(reason) -> bool:
    """Whether a failure says the server is unreachable or silent (not that one file is bad)."""
    return isinstance(reason, OSError) or "timed out" in str(reason)


def _network_reason(reason, timeout: float) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"no answer within {timeout:g} s (timed out)"
    return str(reason) or type(reason).__name__


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
