"""The bounds a model service keeps, whatever its clients send (``avml serve --help`` lists the flags).

Every request is bounded in size (body bytes, images per request, pixels per image), in time (reading the
body, the whole request) and in number (requests in flight at once); micro-batches are bounded in size and
in how long the first request of a batch waits for company.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from jupyter_avml.errors import ConfigError


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of one service.

    Parameters
    ----------
    max_body_bytes:
        The largest request body read (413 beyond it); checked on ``Content-Length`` and while reading.
    max_image_pixels:
        The largest image decoded, in pixels (width x height, from the header, before decoding): 413 beyond
        it. A small file that declares a huge image (a decompression bomb) is refused without being decoded.
    max_images_per_request:
        The most images one request may carry (JSON batches).
    max_concurrent_requests:
        Requests handled at once; one more is answered 503 with ``Retry-After`` at once instead of queueing
        without end.
    request_timeout_s:
        The longest a scoring request may take, queueing included (503 after it).
    body_timeout_s:
        The longest reading a request body may take (408 after it: a client trickling bytes cannot hold a
        request open).
    max_batch_size:
        The most images predicted together (a micro-batch gathers concurrent requests).
    max_batch_wait_s:
        How long a batch waits for requests whose bodies are still being read. A request alone never waits.
    predictor_cache_size:
        How many models with per-request settings (thresholds, sizes) are kept loaded besides the default.
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_images_per_request: int = 64
    max_concurrent_requests: int = 64
    request_timeout_s: float = 60.0
    body_timeout_s: float = 30.0
    max_batch_size: int = 8
    max_batch_wait_s: float = 0.01
    predictor_cache_size: int = 4

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            wait = item.name == "max_batch_wait_s"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (value == 0 and not wait and item.name != "predictor_cache_size"):
                raise ConfigError(f"{item.name} must be a positive number, got {value!r}", field=item.name,
                                  value=value)
