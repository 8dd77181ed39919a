"""What a running sweep shows: its trials done out of those planned, the best score so far,
the time spent and what is left (a Ray Tune callback on the driver).

Ray's own table is off (`verbose=0`), and the trials write to their run directories, so
without this a sweep was minutes of silence. On a terminal it is a bar; elsewhere (a log
file, CI) one line per finished trial.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from encoderlab.runtime import bar_columns, clock_text

FINISHED = ("TERMINATED", "ERROR")
_SHOWN: weakref.WeakSet = weakref.WeakSet()  # bars on the screen: `close_all` when fit ends
_SAY: list[Callable[[str], None]] = [print]  # where the lines go: the running sweep's `say`


def say_with(say: Callable[[str], None]) -> None:
    """The running sweep's output. Not part of the callback, which Tune saves and a resumed
    sweep takes back: its lines go to the resuming command's output."""
    _SAY[0] = say


class SweepProgress(Callback):
    """Counts finished trials from Tune's own list at every event, so a resumed sweep starts
    from the trials it had finished. Pickled into Tune's experiment state with the run
    config: the live bar is not part of its state."""

    def __init__(self, planned: int, metric: str, mode: str, budget_s: float | None) -> None:
        self.planned = planned
        self.metric = metric
        self.mode = mode
        self.budget_s = budget_s
        self._live: dict[str, Any] = {}  # the bar and the clock, made at the first event

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_live"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._live = {}

    # --- Tune's hooks (the driver's event loop calls them) ---------------------------------

    def setup(self, **info: Any) -> None:
        self._live["t0"] = time.monotonic()  # the experiment starts (or resumes) here

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._show(trials)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._show(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trials, trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trials, trial, failed=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stops the bar (the sweep's end, or an interruption), leaving its last state shown."""
        bar = self._live.pop("bar", None)
        if bar is not None:
            bar.stop()
        _SHOWN.discard(self)

    # --- what is shown -----------------------------------------------------------------------

    def summary(self, trials: list, ending: Any = None) -> tuple[int, int, float | None]:
        """(finished, running, best score so far) over Tune's trials; `ending`: a trial Tune
        is finishing, which its list still shows running."""
        done = sum(t.status in FINISHED or t is ending for t in trials)
        running = sum(t.status == "RUNNING" and t is not ending for t in trials)
        scores = [s for t in trials if (s := self.best_of(t)) is not None]
        best = (max if self.mode == "max" else min)(scores) if scores else None
        return done, running, best

    def best_of(self, trial: Any) -> float | None:
        """The trial's best evaluation so far, as the sweep's table ranks it."""
        value = (getattr(trial, "metric_analysis", None) or {}).get("score", {}).get(self.mode)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def eta_s(self, done: int, elapsed: float) -> float | None:
        """From the pace of the trials finished since this command started (a resumed sweep's
        earlier ones took other time); never past the sweep's time budget."""
        left = max(self.planned - done, 0)
        here = done - self._live.get("done_before", 0)
        eta = elapsed * left / here if here > 0 else None
        if self.budget_s:
            budget_left = max(self.budget_s - elapsed, 0.0)
            eta = budget_left if eta is None else min(eta, budget_left)
        return eta

    def _clock(self) -> float:
        return self._live.setdefault("t0", time.monotonic())

    def _show(self, trials: list, ending: Any = None) -> None:
        t0 = self._clock()
        self._live.setdefault("done_before", sum(t.status in FINISHED for t in trials))
        if not sys.stderr.isatty():
            return  # lines only when a trial finishes
        done, running, best = self.summary(trials, ending)
        bar = self._live.get("bar")
        if bar is None:
            from rich.console import Console
            from rich.progress import Progress

            bar = Progress(*bar_columns("sweep"), console=Console(stderr=True))
            self._live["bar"], self._live["task"] = bar, bar.add_task("sweep", total=self.planned)
            bar.start()
            _SHOWN.add(self)
        info = f"{running} running" + (
            f", best {self.metric} {best:.4f}" if best is not None else ""
        )
        eta = self.eta_s(done, time.monotonic() - t0)
        bar.update(self._live["task"], completed=done, info=info, eta=eta)

    def _finished(self, trials: list, trial: Any, failed: bool) -> None:
        self._show(trials, trial)
        if sys.stderr.isatty():
            return
        done, _, best = self.summary(trials, trial)
        elapsed = time.monotonic() - self._clock()
        score = self.best_of(trial)
        values = ", ".join(f"{k}={v}" for k, v in sorted((trial.config or {}).items()))
        how = "failed" if failed else f"{self.metric} {score:.4f}" if score is not None else "ended"
        best_text = f"best {best:.4f}" if best is not None else "no score yet"
        _SAY[0](
            f"trial {done}/{self.planned} ({values}): {how}; {best_text}; "
            f"{clock_text(elapsed)} elapsed, ETA {clock_text(self.eta_s(done, elapsed))}"
        )


def close_all() -> None:
    """Stops every sweep bar still on the screen: Tune skips `on_experiment_end` when the
    sweep is interrupted, and a resumed sweep's callback is the one Tune saved, not ours."""
    for progress in list(_SHOWN):
        progress.close()
