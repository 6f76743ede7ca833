"""The HTTP service of a model: a Starlette application (served by uvicorn, ``serving.server``).

Routes
------
``POST /score`` (the spec's endpoint) and ``POST /invocations`` (MLflow's): a scoring request, in any of the
forms of ``serving.payload``; settings as query parameters or ``"params"``. ``GET /health`` (also ``/ping``):
``{"status": "ok"}``, never behind the key (for load balancers). ``GET /metadata``: task, labels, settings
with their defaults and ranges, versions, limits and batching statistics.

Every answer is JSON. A request the service cannot serve gets a 4xx (or a 503 when the service is saturated or
the request ran out of time) with ``{"error": {"code", "message"}}`` saying what is wrong, never a 500 and
never a crash: the service keeps serving. Each request is logged on one line (client, method, path, status,
images, bytes, milliseconds, and the error code when there is one).

With a key, scoring and metadata need ``Authorization: Bearer KEY`` (compared in constant time; 401 otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from jupyter_avml.serving.errors import RequestError
from jupyter_avml.serving.limits import ServiceLimits
from jupyter_avml.serving.payload import MLFLOW, SINGLE, check_content_type, parse_request

log = logging.getLogger("jupyter_avml.serving")

# An oversized body is still read (and dropped) up to this size or 4 times the limit, within the body timeout:
# most clients send the whole body before reading the answer, and would otherwise see a reset, not the 413.
DRAIN_BYTES = 64 * 1024 * 1024
INLINE_PARSE_BYTES = 256 * 1024  # JSON bodies up to this size are parsed on the event loop (well under 1 ms)


class _Service:
    """The state behind the routes: the model, its batcher, the key, the limits, the counters."""

    def __init__(self, model, key: str | None, limits: ServiceLimits):
        self.model = model
        self.key = key or None
        self.limits = limits
        self.in_flight = 0
        self.batcher = None
        self.started = time.time()
        self.counts: dict[str, int] = {"requests": 0, "errors": 0}

    # -- checks -------------------------------------------------------------------------------------------
    def check_key(self, request) -> None:
        if self.key is None:
            return
        header = request.headers.get("authorization")
        challenge = {"WWW-Authenticate": 'Bearer realm="avml"'}
        if not header:
            raise RequestError(401, "missing_key", "this service needs a key: send 'Authorization: Bearer KEY'",
                               headers=challenge)
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise RequestError(401, "bad_authorization", "the Authorization header must be 'Bearer KEY'",
                               headers=challenge)
        if not hmac.compare_digest(given.strip().encode("utf-8"), self.key.encode("utf-8")):
            raise RequestError(401, "wrong_key", "the key is not this service's key", headers=challenge)

    async def read_body(self, request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise RequestError(400, "bad_content_length", f"Content-Length must be a number, got {declared!r}")
            if int(declared) > limit:
                await self._drain(request, 0)
                raise _too_large(int(declared), limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                await self._drain(request, size)
                raise _too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _drain(self, request, seen: int) -> None:
        """Read and drop a bounded part of an oversized body: a client still sending when the answer comes
        would see a reset connection instead of the 413."""
        budget = max(DRAIN_BYTES, 4 * self.limits.max_body_bytes)
        if seen > budget:
            return
        try:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > budget:
                    return
        except Exception:  # noqa: BLE001 - the client went away: nothing to drain
            return

    # -- scoring ------------------------------------------------------------------------------------------
    async def score(self, request) -> tuple[Any, int]:
        """The answer to a scoring request and its number of images."""
        from starlette.concurrency import run_in_threadpool

        self.check_key(request)
        kind = check_content_type(request.headers.get("content-type"))
        with self.batcher.arriving():
            try:
                body = await asyncio.wait_for(self.read_body(request), self.limits.body_timeout_s)
            except asyncio.TimeoutError:
                raise RequestError(408, "body_timeout", f"the request body took more than "
                                                        f"{self.limits.body_timeout_s:g} s to arrive") from None
            query = dict(request.query_params)
            limit = self.limits.max_images_per_request
            if kind == "json" and len(body) > INLINE_PARSE_BYTES:  # a large JSON body is parsed off the loop
                parsed = await run_in_threadpool(parse_request, kind, body, query, limit)
            else:
                parsed = parse_request(kind, body, query, limit)
            key = self.model.settings_key(parsed.settings)
        # Decoded on the batch's worker thread (MicroBatcher.prepare): (bytes, how messages name it, filename).
        images = [(data, parsed.image_label(i), parsed.filename) for i, data in enumerate(parsed.images)]
        results = await self.batcher.submit(key, images)
        if parsed.form == MLFLOW:
            return {"predictions": [{k: v for k, v in r.items() if k != "filename"} for r in results]}, len(images)
        if parsed.form == SINGLE:
            return results[0], 1
        return results, len(images)


def _too_large(size: int, limit: int) -> RequestError:
    return RequestError(413, "body_too_large", f"the request body is {size} bytes or more; this service reads at "
                                               f"most {limit} bytes per request (--max-body-bytes)",
                        headers={"Connection": "close"})


def create_app(model, *, key: str | None = None, limits: ServiceLimits | None = None):
    """The Starlette application serving ``model`` (a ``serving.model_source.ServedModel``).

    Parameters
    ----------
    model:
        What to serve.
    key:
        The bearer key scoring and metadata requests must send (None: no key).
    limits:
        The service's bounds (``ServiceLimits()`` by default).
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from jupyter_avml.serving.batching import MicroBatcher
    from jupyter_avml.serving.decode import decode_image
    from jupyter_avml.serving.model_source import as_request_error

    service = _Service(model, key, limits or ServiceLimits())

    def error_response(error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    async def score(request: Request) -> JSONResponse:
        started = time.perf_counter()
        service.counts["requests"] += 1
        images, code = 0, None
        if service.in_flight >= service.limits.max_concurrent_requests:
            response = error_response(RequestError(
                503, "busy", f"the service is handling {service.in_flight} requests, its most "
                             f"(--max-concurrent-requests); retry shortly", headers={"Retry-After": "1"}))
            code = "busy"
        else:
            service.in_flight += 1
            try:
                answer, images = await asyncio.wait_for(service.score(request), service.limits.request_timeout_s)
                response = JSONResponse(answer)
            except asyncio.TimeoutError:
                code = "timeout"
                response = error_response(RequestError(
                    503, "timeout", f"the request took more than {service.limits.request_timeout_s:g} s "
                                    f"(--request-timeout); retry later or send fewer images",
                    headers={"Retry-After": "1"}))
            except Exception as exc:  # noqa: BLE001 - every failure becomes an answer; the service goes on
                error = as_request_error(exc)
                if error is None:
                    log.exception("unexpected failure of %s %s", request.method, request.url.path)
                    error = RequestError(500, "internal_error", f"the service failed on this request "
                                                                f"({type(exc).__name__}: {exc}); see its log")
                code = error.code
                response = error_response(error)
            finally:
                service.in_flight -= 1
        if code:
            service.counts["errors"] += 1
        _log_request(request, response.status_code, images, started, code)
        return response

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "task": service.model.task})

    async def metadata(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            service.check_key(request)
        except RequestError as error:
            _log_request(request, error.status, 0, started, error.code)
            return error_response(error)
        info = service.model.metadata()
        stats = service.batcher.stats if service.batcher is not None else None
        info["service"] = {"limits": vars(service.limits), "key_required": service.key is not None,
                           "uptime_s": round(time.time() - service.started, 1), **service.counts,
                           "batches": vars(stats) if stats is not None else {}}
        _log_request(request, 200, 0, started, None)
        return JSONResponse(info)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: f"no route {request.url.path}: POST /score (or /invocations), GET /health, GET /metadata",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        _log_request(request, exc.status_code, 0, time.perf_counter(), code)
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    max_pixels = service.limits.max_image_pixels

    def decode(item):
        data, label, filename = item
        image = decode_image(data, label, max_pixels)
        if filename:
            image.filename = filename
        return image

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.batcher = MicroBatcher(service.model.predict, prepare=decode,
                                       max_batch_size=service.limits.max_batch_size,
                                       max_wait_s=service.limits.max_batch_wait_s)
        try:
            yield
        finally:
            await service.batcher.close()

    routes = [Route("/score", score, methods=["POST"]), Route("/invocations", score, methods=["POST"]),
              Route("/health", health, methods=["GET"]), Route("/ping", health, methods=["GET"]),
              Route("/metadata", metadata, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.service = service
    return app


def _log_request(request, status: int, images: int, started: float, code: str | None) -> None:
    client = request.client
    where = f"{client.host}:{client.port}" if client else "-"
    size = request.headers.get("content-length", "-")
    elapsed = (time.perf_counter() - started) * 1000
    log.info("%s %s %s %d images=%d bytes=%s %.1fms%s", where, request.method, request.url.path, status, images,
             size, elapsed, f" error={code}" if code else "")
