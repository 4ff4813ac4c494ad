"""Stopping a run on request: SIGTERM (a scheduler preempting the job) or SIGINT (Ctrl-C).

The first signal only sets a flag: the training loop finishes the step it is in, saves a checkpoint
and stops with a message saying how to resume. The handlers are then back to the defaults, so a
second signal stops the process at once (a run killed that way, or by SIGKILL, loses only the steps
since its last checkpoint: checkpoints are atomic).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals() as stop: ... if stop.requested: save and leave``."""

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for s in SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # an ignored signal (nohup, `&`) stays ignored
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum)
        for s in SIGNALS:  # the next signal acts at once
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
