"""The App: ``%avml qa RUN`` in an IPython shell returns a review whose session is on the chosen view, and the App
as served on 127.0.0.1, opened in Chromium, shows the samples with their labels (screenshots in test-artifacts/)."""

from __future__ import annotations

import time

import pytest

from jupyter_avml.data.shapes import make_shapes
from tests.cli.doors import cell, notebook_shell
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM_ARGS, ensure_chromium, free_port
from tests.qa.conftest import make_run

SETTINGS = dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)


@pytest.fixture(scope="module")
def reviewed(module_tmp):
    """``%avml qa RUN --view errors --var review`` run in an IPython shell; the App closed at the end."""
    from jupyter_avml.qa._fo import fiftyone

    root = module_tmp
    workspace = root / "ws"
    workspace.mkdir()
    jsonl = make_shapes(root / "data", "image-classification", n=12, size=32, seed=12, color_by_class=True)
    run_id = make_run(workspace, jsonl, "image-classification", "resnet18", **SETTINGS)
    fo = fiftyone(workspace)
    before = set(fo.list_datasets())
    shell = notebook_shell()
    ok, out, err, _ = cell(shell, f"%avml qa {run_id} --view errors --var review --port {free_port()} "
                                  f"--workspace {workspace}")
    assert ok, err
    review = shell.user_ns.pop("review")
    try:
        yield review, run_id
    finally:
        if review.session is not None:
            review.session.close()
        for name in set(fo.list_datasets()) - before:
            fo.delete_dataset(name)


def test_percent_avml_qa_returns_a_session_on_the_expected_view(reviewed):
    review, run_id = reviewed
    assert review.session is not None and review.url.startswith("http://127.0.0.1:")
    review.wait(300)  # predictions, evaluation and views, in the background
    field = f"resnet18_{run_id[:8]}"
    assert review.field == field and review.view_name == f"{field}-errors"
    assert review.session.view.name == f"{field}-errors"
    from fiftyone import ViewField as F

    wrong = review.dataset.match(F(review.evaluation.eval_key) == False)  # noqa: E712 (a query, not a test)
    assert len(review.session.view) == len(review.view) == len(wrong) > 0
    # The picture that stays in the saved notebook: the first samples of that view, drawn.
    bundle = review._repr_mimebundle_()
    assert bundle["image/png"] and 'class="avml-review-grid"' in bundle["text/html"]
    assert f"view: {field}-errors" in bundle["text/plain"]


@pytest.mark.browser
@pytest.mark.slow
def test_the_app_shows_the_samples_with_their_labels(reviewed):
    chromium = ensure_chromium()
    from playwright.sync_api import sync_playwright

    review, _ = reviewed
    review.wait(300)
    review.session.view = None  # the whole dataset: every sample in the grid
    expected = len(review.dataset)
    labels = set(review.dataset.distinct("ground_truth.label"))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            started = time.monotonic()
            page.goto(review.url)
            page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker] canvas[canvas-loaded=true]')"
                                   f".length >= {expected}", timeout=120_000)
            loaded = time.monotonic() - started
            page.locator("[data-cy=sidebar-field-ground_truth]").wait_for(timeout=30_000)
            # The classification labels of the grid are text (the looker's tags): every sample shows its label.
            page.wait_for_function(
                f"() => [...document.querySelectorAll('[data-cy=looker]')].filter(l => l.innerText.trim()).length "
                f">= {expected}", timeout=60_000)
            shown = page.evaluate("() => [...document.querySelectorAll('[data-cy=looker]')].map(l => l.innerText)")
            page.screenshot(path=str(ARTIFACTS / "fiftyone-app.png"))
        finally:
            browser.close()
    assert len(shown) == expected
    assert all(any(label in text for label in labels) for text in shown), shown
    assert loaded < 120, f"the App's grid took {loaded:.0f} s to show"
