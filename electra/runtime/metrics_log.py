"""metrics.jsonl: the append-only record of a run, trimmed to the checkpoint on resume, and its one reader.

A run killed while appending leaves a torn last line (``{"step": 7, "gen_lo``). ``read_metrics`` is what
every command, study, benchmark and experiment uses to read the file: it keeps the good records and reports
each line it cannot read on one line (docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from electra.errors import UserError
from electra.runtime.files import WriteFailed, failure_reason, open_for_appending, write_text
from electra.runtime.loggers import ScalarSinks


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def read_metrics(path: str | Path, report: Callable[[str], None] | None = _warn) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, in order. A line that is not a JSON object (a torn last line from a
    run killed mid-write, or damage) is skipped and reported through ``report`` (stderr; None: silently)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({failure_reason(e)})") from None
    records, lines = [], text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            if report is not None:
                torn = "a torn last line (the run was stopped while writing it)" if number == len(lines) \
                    else "not a JSON record"
                report(f"warning: {path}:{number}: skipped {torn}")
            continue
        records.append(record)
    return records


class MetricsLog:
    """Append-only JSONL; on resume, records after the checkpoint's step are dropped (they will be redone),
    and so is a torn last line. ``sinks`` (TensorBoard, W&B: electra/runtime/loggers.py) get every record too."""

    def __init__(self, path: Path, resume_step: int | None, sinks: ScalarSinks | None = None):
        self.path, self.sinks = path, sinks
        if resume_step is not None and path.exists():
            kept = [r for r in read_metrics(path) if _step(r) <= resume_step]
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        try:
            self.f = open_for_appending(path)
        except OSError as e:
            raise WriteFailed(path, e) from None

    def write(self, record: dict[str, Any]) -> None:
        # One write call per record: a crash leaves at most this line torn, which read_metrics skips.
        try:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()
        except OSError as e:
            raise UserError(f"{self.path}: could not append a record ({failure_reason(e)}); the run stopped and "
                            f"its last checkpoint is intact: fix the cause and continue with --resume") from None
        if self.sinks is not None:
            self.sinks.write(record)

    def close(self) -> None:
        self.f.close()
        if self.sinks is not None:
            self.sinks.close()


def _step(record: dict[str, Any]) -> float:
    step = record.get("step", 0)
    return step if isinstance(step, (int, float)) else 0
