"""metrics.jsonl: the append-only record of a run, trimmed to the checkpoint on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from electra.runtime.loggers import ScalarSinks


class MetricsLog:
    """Append-only JSONL; on resume, records after the checkpoint's step are dropped (they will be redone).
    ``sinks`` (TensorBoard, W&B: electra/loggers.py) get every record too."""

    def __init__(self, path: Path, resume_step: int | None, sinks: ScalarSinks | None = None):
        self.path, self.sinks = path, sinks
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))
        self.f = open(path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.sinks is not None:
            self.sinks.write(record)

    def close(self) -> None:
        self.f.close()
        if self.sinks is not None:
            self.sinks.close()
