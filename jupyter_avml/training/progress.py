"""A terminal progress bar fed by run events (one bar per epoch, metrics in the postfix)."""

from __future__ import annotations

import sys

from jupyter_avml.runs.events import BatchProgress, EpochMetrics, EpochStarted, Event, RunFinished, RunStarted


class ProgressBar:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.epochs = 0

    def on_event(self, event: Event) -> None:
        from tqdm.auto import tqdm

        if isinstance(event, RunStarted):
            self.epochs = event.number_of_epochs
            if event.resumed_from_epoch:
                print(f"resuming after epoch {event.resumed_from_epoch}", file=self.stream)
        elif isinstance(event, EpochStarted):
            self._close()
            self.bar = tqdm(total=None, desc=f"epoch {event.epoch}/{event.number_of_epochs}", unit="batch",
                            file=self.stream, leave=True, dynamic_ncols=True)
        elif isinstance(event, BatchProgress) and self.bar is not None:
            self.bar.total = event.num_batches
            self.bar.update(event.batch - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        elif isinstance(event, EpochMetrics) and self.bar is not None:
            postfix = {"loss": f"{event.train_loss:.4f}"}
            if event.primary_value is not None:
                postfix[event.primary_metric] = f"{event.primary_value:.4f}" + (" *" if event.is_best else "")
            self.bar.set_postfix(postfix)
            self._close()
        elif isinstance(event, RunFinished):
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
