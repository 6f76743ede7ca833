"""``review(TARGET)``: a dataset, an experiment (its best child, or ``child``) or a run, opened in the FiftyOne App.

The steps, each skipped when already done (predictions resume, evaluations are cheap to redo):

1. the dataset into FiftyOne (``to_fiftyone``; for a model, the run's ``training_data``) and its data views
   (``train``, ``validation``, ``duplicates``);
2. with a model: its predictions (``add_predictions``), their evaluation (``evaluate``), the saved views of mistakes
   (``views.save_views``) and mistakenness, hardness, near-duplicates and the 2-D map (``brain.find_mistakes``);
3. the App, served on 127.0.0.1 (``launch_app``), on the chosen view (default ``FIELD-mistakenness``: the most
   likely label errors first; ``view`` takes a saved view name with or without its ``FIELD-`` prefix).

In a notebook the App opens inline in the output cell, and with ``background=True`` (the notebook door's way) it
opens at once on the ground truth while step 2 runs in a thread; the session moves to the chosen view when it
is done. The ``Review`` object's display is the static fallback: a PNG grid of the first samples of the view, with
ground truth and predictions drawn (``static.worst_samples_png``), which stays in the saved notebook
(``ReviewDisplays`` replaces the "preparing" text by the picture at the next cell run, as the dashboards do).
Elsewhere (a shell, a script, a terminal IPython) no browser is opened: ``Review.url`` says where the App is.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from html import escape
from typing import Any

from jupyter_avml.qa._fo import quiet_fiftyone
from jupyter_avml.qa.sources import resolve_target
from jupyter_avml.workspace import Workspace

DEFAULT_VIEW = "mistakenness"
APP_ADDRESS = "127.0.0.1"
APP_START_TIMEOUT = 120.0  # seconds for the App server to answer (it imports much of FiftyOne first)


class Review:
    """What ``review`` opened: ``dataset``, ``field`` (the predictions, or None), ``view_name``, ``session``
    (FiftyOne's, or None when not launched), ``evaluation``, ``mistakes``; ``wait()`` for the background part."""

    def __init__(self, dataset, field: str | None, requested_view: str | None):
        self.dataset = dataset
        self.field = field
        self.requested_view = requested_view
        self.view_name: str | None = None
        self.session = None
        self.evaluation = None
        self.mistakes = None
        self.job = None  # PredictionJob while predicting in the background
        self.png: bytes | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    @property
    def url(self) -> str | None:
        return self.session.url if self.session is not None else None

    @property
    def view(self):
        """The chosen view (the whole dataset until it is ready, or without one)."""
        return self.dataset.load_saved_view(self.view_name) if self.view_name else self.dataset.view()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Review:
        """Block until the predictions, evaluation and views are ready; re-raises what failed there."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the review of {self.dataset.name} is still being prepared after {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self

    def text(self) -> str:
        lines = [f"FiftyOne dataset {self.dataset.name} ({len(self.dataset)} samples)"]
        if self.field:
            lines.append(f"  predictions: {self.field}")
        if self.error is not None:
            lines.append(f"  failed: {self.error}")
        elif not self.finished:
            done = f" ({self.job.done}/{self.job.total} images predicted)" if self.job is not None else ""
            lines.append(f"  preparing predictions, evaluation and views{done}")
        if self.evaluation is not None:
            lines.extend("  " + line for line in repr(self.evaluation).splitlines())
        if self.view_name:
            lines.append(f"  view: {self.view_name} ({len(self.view)} samples)")
        if self.url:
            lines.append(f"  App: {self.url}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = {"text/plain": self.text()}
        html = f'<pre class="avml-review-text">{escape(self.text())}</pre>'
        if self.png:
            data = base64.b64encode(self.png).decode("ascii")
            html += (f'<img class="avml-review-grid" alt="worst samples of {escape(self.view_name or "")}" '
                     f'src="data:image/png;base64,{data}"/>')
            bundle["image/png"] = data
        bundle["text/html"] = f'<div class="avml-review">{html}</div>'
        return bundle


def review(target, *, child: int | None = None, view: str | None = None, task: str | None = None,
           workspace: str | os.PathLike | Workspace | None = None, launch: bool = True, port: int | None = None,
           background: bool = False, progress=True, **model_settings: Any) -> Review:
    """Open ``target`` (a DATASET, an EXPERIMENT or a RUN) in the FiftyOne App; see the module docstring.

    Parameters
    ----------
    child : the experiment's child to review (default: its best child).
    view : the saved view to open (``errors``, ``false-positives``, ``mistakenness``..., or a full name).
    task : the task of a JSONL file given as the dataset.
    launch : serve the App (False: only prepare, e.g. for the static picture).
    port : the App's port (default: FiftyOne's, 5151).
    background : predict and evaluate in a thread; the App opens at once on the ground truth.
    model_settings : inference settings for the predictions (``load_model``'s).
    """
    from jupyter_avml.qa._fo import fiftyone
    from jupyter_avml.qa.importer import to_fiftyone
    from jupyter_avml.qa.views import save_data_views, view_name

    ws = Workspace.resolve(workspace)
    chosen = resolve_target(target, child=child, task=task, workspace=ws)
    fo = fiftyone(ws)
    dataset = to_fiftyone(chosen.dataset, task=chosen.task, workspace=ws, progress=progress)
    save_data_views(dataset)
    field = chosen.model.field if chosen.model is not None else None
    result = Review(dataset, field, view)
    if chosen.model is None:
        result.view_name = view_name(dataset, view, None)
        result.png = _picture(result)
        result._done.set()
    if launch:
        result.session = _launch(fo, dataset, result.view if result.view_name else None, port)
    if chosen.model is None:
        return result
    if background:
        threading.Thread(target=_prepare, args=(result, chosen.model, ws, progress, model_settings, True),
                         name=f"avml-qa-review-{field}", daemon=True).start()
        return result
    _prepare(result, chosen.model, ws, progress, model_settings, False)
    if result.error is not None:
        raise result.error
    return result


def _prepare(result: Review, model, ws: Workspace, progress, model_settings: dict, background: bool) -> None:
    """Predictions, evaluation, views, mistakes; then the session's view and the picture."""
    from jupyter_avml.qa.brain import find_mistakes
    from jupyter_avml.qa.evaluation import evaluate
    from jupyter_avml.qa.predict import add_predictions
    from jupyter_avml.qa.views import view_name

    dataset, field = result.dataset, result.field
    try:
        if background:
            result.job = add_predictions(dataset, model, workspace=ws, background=True, **model_settings)
            result.job.wait()
        else:
            add_predictions(dataset, model, workspace=ws, progress=progress, **model_settings)
        result.evaluation = evaluate(dataset, field, workspace=ws)
        result.mistakes = find_mistakes(dataset, field, workspace=ws)
        result.view_name = view_name(dataset, result.requested_view or DEFAULT_VIEW, field)
        result.png = _picture(result)
        if result.session is not None:
            result.session.view = result.view
    except BaseException as exc:  # a thread has nowhere else to put it: wait() and the display show it
        result.error = exc
    finally:
        result._done.set()


def _picture(result: Review) -> bytes:
    from jupyter_avml.qa.static import worst_samples_png

    return worst_samples_png(result.view, result.field)


def _launch(fo, dataset, view, port: int | None):
    """The App on 127.0.0.1: inline in a notebook; elsewhere served without opening a browser (``remote``).

    The session is made with ``auto=False`` and shown once its client has connected: FiftyOne's own automatic
    show raises "Client is not connected" when the App server takes longer to start than its first connection
    attempt (its client retries only every 10 s), and it would re-display the App in whatever cell runs when the
    background preparation later moves the session to its view (a state update moves the App already shown).
    """
    from fiftyone.core.context import is_notebook_context

    notebook = is_notebook_context()
    with quiet_fiftyone():
        session = fo.launch_app(dataset, view=view, port=port, address=APP_ADDRESS, remote=not notebook, auto=False)
    _wait_connected(session)  # the printed URL answers, and later view changes reach the App
    if notebook:
        session.show()
    return session


def _wait_connected(session, timeout: float = APP_START_TIMEOUT) -> None:
    """Wait until the App server answers and the session's client is connected to it.

    FiftyOne's client marks itself connected from the start and unconnected only after its first attempt failed
    (then retries 10 s later): so first the server's own answer, then the client's flag.
    """
    import time
    import urllib.request

    from jupyter_avml.qa._fo import FiftyOneError

    deadline = time.monotonic() + timeout
    url = session.url.rstrip("/") + "/fiftyone"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise FiftyOneError(f"the FiftyOne App server at {session.url} did not answer within {timeout:g} s "
                                    f"(is the port taken? choose another with --port)") from None
            time.sleep(0.2)
    client = getattr(session, "_client", None)
    while client is not None and not getattr(client, "_connected", True) and time.monotonic() < deadline + 15:
        time.sleep(0.2)


class ReviewDisplays:
    """Reviews displayed in this kernel whose picture is not ready yet; published at the next cell run.

    Output sent from a background thread lands in whatever cell runs then, so the picture is put in place from
    IPython's ``post_execute`` event, in the main thread (as ``magics._displays`` does for dashboards).
    """

    def __init__(self):
        self._pending: dict[str, Review] = {}
        self._lock = threading.Lock()
        self._shells: list = []

    def show(self, result: Review, shell=None) -> None:
        from IPython.display import display

        handle = display(result, display_id=True)
        if handle is not None and not result.finished:
            with self._lock:
                self._pending[handle.display_id] = result
            if shell is not None and shell not in self._shells:
                shell.events.register("post_execute", self.refresh)
                self._shells.append(shell)

    def refresh(self, *_: Any) -> int:
        from IPython.display import update_display

        with self._lock:
            done = [(key, r) for key, r in self._pending.items() if r.finished]
            for key, _ in done:
                del self._pending[key]
        for key, result in done:
            update_display(result, display_id=key)
        return len(done)


DISPLAYS = ReviewDisplays()


def dashboard_reviewer(experiment: str, workspace) -> Callable[[int], Review]:
    """The dashboard's "Review in FiftyOne": ``reviewer(child_id)`` reviews that child of ``experiment`` in the
    background (the App opens at once) and displays the ``Review``, where the dashboard captures output."""

    def reviewer(child_id: int) -> Review:
        from IPython.display import display

        result = review(experiment, child=child_id, workspace=workspace, background=True, progress=False)
        display(result)
        return result

    return reviewer
