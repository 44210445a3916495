"""What a running study shows: its phases, then trials done, pruned, failed and the best value.

In a terminal a tqdm bar is redrawn, with each phase (data loaded, the warm start's picks, the
trials, the refit) printed above it. Without one (piped, a CI log, ``docker compose logs``) the
same phases are plain lines, and the counts are one plain line every ``interval`` seconds and at
the end, never the same line twice. The rate counts trials from the first progress report, so
the warm start does not skew it; the ETA appears once a tenth of the run's trials have finished
(before that, a batch's first pruned members and the workers' start-up made it wrong by 6×), and
not at all when nothing is left to run. ``-v`` adds one line per finished trial (number, state,
value, epochs, parameters, worker) in either mode. ``--quiet`` turns it all off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal, TextIO

from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from svmhpo.hpo import records
from svmhpo.hpo.records import metric_key
from svmhpo.hpo.studies import Counts
from svmhpo.view.tables import params_text

__all__ = ["StudyProgress", "trial_line"]

Mode = Literal["bar", "lines", "off"]


def _duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def trial_line(trial: FrozenTrial, key: str = "val_acc") -> str:
    """One finished trial on one line, the way ``-v`` prints it; ``key`` names its value
    (:func:`~svmhpo.svm.params.metric_key`)."""
    epochs = len(trial.intermediate_values)
    if trial.state == TrialState.COMPLETE:
        what = f"complete, {key} {trial.value:.4f} after {epochs} epochs"
    elif trial.state == TrialState.PRUNED:
        if records.diverged(trial):
            what = f"pruned, diverged ({records.diverged(trial)})"
        else:
            last = trial.intermediate_values[max(trial.intermediate_values)] if epochs else None
            what = f"pruned after {epochs} epochs" + ("" if last is None else f", {key} {last:.4f}")
    else:
        reason = records.fail_reason(trial)
        what = trial.state.name.lower() + (f" ({reason})" if reason else "")
    return f"trial {trial.number} {what}: {params_text(trial.params)}; worker {records.trial_worker(trial) or '-'}"


class StudyProgress:
    """Callable on study :class:`~svmhpo.hpo.studies.Counts`, plus :meth:`phase` for phase lines.

    ``mode`` is ``bar`` (a terminal), ``lines`` (anything else) or ``off``; ``None`` picks bar
    or lines from whether ``stream`` is a terminal. ``verbose`` prints :meth:`trial` lines.
    """

    def __init__(
        self,
        budget: int,
        *,
        stream: TextIO | None = None,
        mode: Mode | None = None,
        verbose: bool = False,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        metric: str = "accuracy",
    ) -> None:
        self.stream = stream or sys.stderr
        self.mode: Mode = mode or ("bar" if self.stream.isatty() else "lines")
        self.budget = budget
        self.key = metric_key(metric)  # what a value is called: val_acc, val_balanced_acc, val_macro_f1
        self.verbose = verbose and self.mode != "off"
        self.interval = interval
        self.clock = clock
        self.bar: tqdm | None = None
        self._start: tuple[float, int] | None = None  # (time, finished) at the first report
        self._last_line = 0.0
        self._last: Counts | None = None
        self._printed: Counts | None = None
        self._printed_text = ""

    def phase(self, text: str) -> None:
        """A line that says what the study is doing now."""
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def trial(self, trial: FrozenTrial) -> None:
        """A trial finished (``-v``): print its line above the bar, or as a plain line."""
        if self.verbose:
            self.phase(trial_line(trial, self.key))

    def __call__(self, counts: Counts) -> None:
        if self.mode == "off":
            return
        now = self.clock()
        if self._start is None:
            self._start = (now, counts.finished)
            self._last_line = now  # the first line after one interval of trials, not before any
        self._last = counts
        if self.mode == "bar":
            if self.bar is None:  # created at the first trial report, so that its rate is the trials'
                self.bar = tqdm(total=self.budget, initial=counts.finished, file=self.stream, unit="trial")
            self.bar.n = min(counts.finished, self.budget)
            self.bar.set_postfix_str(self._postfix(counts), refresh=False)
            self.bar.refresh()
        elif counts != self._printed and (now - self._last_line >= self.interval or counts.finished >= self.budget):
            self._line(counts, now)

    def _postfix(self, counts: Counts) -> str:
        best = "-" if counts.best is None else f"{counts.best:.4f}"
        return f"pruned {counts.pruned}, failed {counts.failed}, best {self.key} {best}"

    def _line(self, counts: Counts, now: float) -> None:
        start_time, start_finished = self._start or (now, counts.finished)
        elapsed = now - start_time
        done = counts.finished - start_finished
        rate = done / elapsed if elapsed > 0 else 0.0
        left = max(0, self.budget - counts.finished)
        self._last_line, self._printed = now, counts
        if left == 0 and done == 0:  # a finished study run again: nothing ran
            return
        if not left:
            pace = f"{rate:.2f} trials/s, done"
        elif done == 0:
            pace = "no trial finished yet"
        elif done >= max(1, (self.budget - start_finished) / 10):  # enough of the run to say
            pace = f"{rate:.2f} trials/s, ETA {_duration(left / rate)}"
        else:
            pace = f"{rate:.2f} trials/s"
        text = f"trials {counts.finished}/{self.budget}: {counts.complete} complete, {self._postfix(counts)}; {pace}"
        if text != self._printed_text:
            print(text, file=self.stream, flush=True)
            self._printed_text = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self._last is not None and self._last != self._printed:
            self._line(self._last, self.clock())
