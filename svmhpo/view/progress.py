"""A live progress bar of a study: trials done, pruned, and the best value, on a terminal only."""

from __future__ import annotations

import sys

from tqdm import tqdm

from svmhpo.hpo.studies import Counts

__all__ = ["StudyProgress"]


class StudyProgress:
    """Callable that redraws a tqdm bar from study :class:`~svmhpo.hpo.studies.Counts`.

    It is silent unless ``stream`` is a terminal, so logs and pipes stay clean.
    """

    def __init__(self, budget: int, *, stream=None, enabled: bool | None = None) -> None:
        stream = stream or sys.stderr
        self.enabled = stream.isatty() if enabled is None else enabled
        self.bar = tqdm(total=budget, file=stream, unit="trial", dynamic_ncols=True) if self.enabled else None

    def __call__(self, counts: Counts) -> None:
        if self.bar is None:
            return
        self.bar.n = min(counts.finished, self.bar.total)
        best = "-" if counts.best is None else f"{counts.best:.4f}"
        self.bar.set_postfix_str(f"pruned {counts.pruned}, failed {counts.failed}, best val_acc {best}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
