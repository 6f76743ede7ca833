"""``RequestError``: what a service answers to a request it cannot serve (always a 4xx or a 503, never a 500)."""

from __future__ import annotations

from jupyter_avml.errors import AvmlError


class RequestError(AvmlError):
    """A request the service refuses: an HTTP ``status``, a short machine-readable ``code`` and a message
    that says what is wrong and what is expected.

    The response body is ``{"error": {"code": code, "message": message}}``.
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(code: str, message: str) -> RequestError:
    return RequestError(400, code, message)
