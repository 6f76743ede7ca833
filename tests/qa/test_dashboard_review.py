"""The dashboard's "Review in FiftyOne" control: shown with a controller, enabled for a finished child, calling the
reviewer with the chosen child and showing its error where the user clicked (no FiftyOne needed: the reviewer is
recorded)."""

from __future__ import annotations

import html

from jupyter_avml.dashboard import DashboardSource, ExperimentFiles, open_dashboard
from jupyter_avml.dashboard._widget import DashboardWidget
from jupyter_avml.errors import NotFoundError
from tests.notebook.conftest import ScriptedSweep


class _Handle:
    def stop(self): ...

    def stop_child(self, child_id): ...


def test_review_in_fiftyone_opens_the_chosen_finished_child(tmp_path):
    sweep = ScriptedSweep(tmp_path / "ws", name="reviewable", iterations=2, epochs=1)
    sweep.start_child(0)
    sweep.epoch(0, 1, 0.7)
    sweep.finish_child(0)
    sweep.start_child(1)
    files = ExperimentFiles("reviewable", sweep.workspace)
    asked = []
    widget = DashboardWidget(report_loader=files.run_report, controller=_Handle(), reviewer=asked.append)
    widget.render(DashboardSource(files).poll())
    assert widget.review_button.layout.display != "none"
    widget.child_select.value = 1  # still running: nothing to review yet
    assert widget.review_button.disabled
    widget.child_select.value = 0
    assert not widget.review_button.disabled
    widget.review_button.click()
    assert asked == [0] and "child 0: open in FiftyOne below" in widget.message.value

    def failing(child_id):
        raise NotFoundError(f"child {child_id} of experiment 'reviewable' has no model")

    widget.reviewer = failing
    widget.review_button.click()
    message = html.unescape(widget.message.value)
    assert "could not open child 0 in FiftyOne: child 0 of experiment 'reviewable' has no model" in message
    assert "avml-error" in message
    widget.close()
    # open_dashboard gives the control to dashboards with a handle only.
    with_handle = open_dashboard("reviewable", sweep.workspace, controller=_Handle(), start=False)
    bare = open_dashboard("reviewable", sweep.workspace, start=False)
    assert with_handle.reviewer is not None and with_handle.review_button.layout.display != "none"
    assert bare.reviewer is None and bare.review_button.layout.display == "none"
    for w in (with_handle, bare):
        w.close()
