"""The process of a deployment: ``python -m jupyter_avml.serving.service_process WORKSPACE NAME``.

Started by ``deployments.deploy`` (detached). It takes the deployment's lock (one service per name), loads the
model named in ``launch.json``, serves it and records itself in ``service.json``: its url once it accepts
requests, ``ended`` when it stops (SIGTERM, SIGINT), ``error`` when it cannot start. Its output (one line
per request) goes to ``service.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from jupyter_avml.fileio import atomic_write_json, try_lock
    from jupyter_avml.serving.deployments import DeploymentFolder
    from jupyter_avml.serving.limits import ServiceLimits
    from jupyter_avml.serving.model_source import ServedModel
    from jupyter_avml.serving.server import serve

    workspace, name = (argv if argv is not None else sys.argv[1:])[:2]
    # SIGTERM (deploy --stop) ends the process through SystemExit, so that ``ended`` is recorded; uvicorn
    # replaces this handler while it serves, shuts down gracefully, then re-raises the signal here.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = DeploymentFolder(workspace, name)
    lock = try_lock(folder.lock_file)
    if lock is None:
        print(f"deployment {name!r} is already served by another process", file=sys.stderr)
        return 1
    import psutil

    record = {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "started": time.time()}

    def write(**fields):
        record.update(fields)
        atomic_write_json(folder.service_file, record)

    write()
    launch = folder.read(folder.launch_file)
    try:
        limits = ServiceLimits(**launch.get("limits", {}))
        model = ServedModel(launch["source"], workspace=launch.get("workspace") or workspace,
                            device=launch.get("device", "auto"), cache_size=limits.predictor_cache_size)
        serve(model, host=launch.get("host", "127.0.0.1"), port=int(launch.get("port", 0)), key=folder.read_key(),
              limits=limits, on_ready=lambda url: write(url=url, ready=time.time()))
    except Exception as exc:  # noqa: BLE001 - recorded for the launcher, which shows it
        logging.getLogger("jupyter_avml.serving").exception("the service could not start or failed")
        write(error=f"{type(exc).__name__}: {exc}" if not _is_avml(exc) else str(exc), ended=time.time())
        return 1
    finally:
        if "ended" not in record:
            write(ended=time.time())
        lock.close()
    return 0


def _is_avml(exc: BaseException) -> bool:
    from jupyter_avml.errors import AvmlError

    return isinstance(exc, AvmlError)


if __name__ == "__main__":
    sys.exit(main())
