"""Running the service: uvicorn on a socket we bind ourselves (so port 0 gives a free port we can report).

``serve`` runs in the foreground until Ctrl-C or SIGTERM (``avml serve``, the deployment process).
``ServiceThread`` runs the same server on a background thread of this process (tests, benchmarks, a notebook
that wants a throwaway endpoint); ``stop()`` ends it.

Why Starlette and uvicorn: they come with MLflow (its own scoring server is built on them), are well kept, and
give what the spec's service needs and MLflow's scoring server lacks: the raw image body, a bearer key,
micro-batching across requests, and bounds on bodies, pixels, concurrency and time (``serving.app``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from jupyter_avml.errors import ConfigError
from jupyter_avml.serving.limits import ServiceLimits

log = logging.getLogger("jupyter_avml.serving")

KEEP_ALIVE_S = 5
CONNECTIONS_PER_REQUEST = 4  # uvicorn's own backstop: connections beyond this many per allowed request get a 503


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one); ``ConfigError`` when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they are
    # TCP, and with it on, every answer on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                          f"(0 picks a free one)", field="port", value=port) from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_server(app, limits: ServiceLimits, on_ready: Callable[[], None] | None = None):
    """A uvicorn ``Server`` for ``app`` that calls ``on_ready`` once it accepts connections."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready()

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_keep_alive=KEEP_ALIVE_S,
                            limit_concurrency=limits.max_concurrent_requests * CONNECTIONS_PER_REQUEST,
                            server_header=False)
    return _Server(config)


def serve(model, *, host: str = "127.0.0.1", port: int = 5000, key: str | None = None,
          limits: ServiceLimits | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``model`` (a ``ServedModel``) on ``host:port`` until interrupted.

    ``on_ready(url)`` is called once the service accepts requests.
    """
    from jupyter_avml.serving.app import create_app

    limits = limits or ServiceLimits()
    sock = bind_socket(host, port)
    url = url_of(sock)
    server = build_server(create_app(model, key=key, limits=limits), limits,
                          on_ready=(lambda: on_ready(url)) if on_ready else None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class ServiceThread:
    """The service on a background thread of this process: ``with ServiceThread(model) as service: service.url``.

    Parameters are those of ``serve``; ``port`` defaults to 0 (a free port).
    """

    def __init__(self, model, *, host: str = "127.0.0.1", port: int = 0, key: str | None = None,
                 limits: ServiceLimits | None = None, start_timeout_s: float = 30.0):
        from jupyter_avml.serving.app import create_app

        self.limits = limits or ServiceLimits()
        self.sock = bind_socket(host, port)
        self.url = url_of(self.sock)
        self.app = create_app(model, key=key, limits=self.limits)
        self._ready = threading.Event()
        self.server = build_server(self.app, self.limits, on_ready=self._ready.set)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="avml-service")
        self.start_timeout_s = start_timeout_s

    def start(self) -> ServiceThread:
        self.thread.start()
        if not self._ready.wait(self.start_timeout_s):
            self.stop()
            raise RuntimeError(f"the service at {self.url} did not start within {self.start_timeout_s:g} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
