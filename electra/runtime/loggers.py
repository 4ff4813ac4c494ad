"""Where a run's scalars go besides metrics.jsonl: TensorBoard event files and Weights & Biases (``log.*``).

metrics.jsonl stays the record of truth; every record written to it is also sent here, the numbers only:
a training record's ``gen_loss`` becomes ``train/gen_loss``, an evaluation's ``eval_gen_loss`` becomes
``eval/gen_loss``, all at the record's step. Only the process that writes metrics.jsonl (rank 0) logs.

Resuming must not leave the steps after the checkpoint twice. metrics.jsonl drops them; TensorBoard is told
with ``purge_step`` (its reader then discards the earlier events from that step on). W&B resumes the same run
(its id is kept in the run folder) and refuses steps below the one it has reached, so there the redone steps
keep the values first sent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from electra.config import LogConfig
from electra.errors import UserError
from electra.runtime.files import write_text

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id.txt"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers as tags: ``train/<key>`` or, for an evaluation, ``eval/<key without eval_>``."""
    event = record.get("event")
    if event not in (None, "eval"):
        return {}  # start, warning, phase switches: not scalars over steps
    out = {}
    for key, value in record.items():
        if key in ("step", "event") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        out[f"eval/{key.removeprefix('eval_')}" if event == "eval" else f"train/{key}"] = float(value)
    return out


class ScalarSinks:
    """The configured sinks of one run folder; ``write`` each metrics record, ``close`` at the end."""

    def __init__(self, cfg: LogConfig, run_dir: Path, resume_step: int | None, config: dict[str, Any]):
        self.tb = self.wandb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("log.tensorboard=true needs the tensorboard package: pip install tensorboard "
                                "(or pip install 'electra[tensorboard]')") from None
            # purge_step: the events this folder holds from that step on are superseded by what follows
            self.tb = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR),
                                    purge_step=None if resume_step is None else resume_step + 1)
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                raise UserError("log.wandb=true needs the wandb package: pip install wandb") from None
            id_file = run_dir / WANDB_ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
            write_text(id_file, run_id + "\n")
            mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
            self.wandb = wandb.init(project=cfg.wandb_project, id=run_id, resume="allow", dir=str(run_dir),
                                    name=run_dir.name, config=config, mode=mode)

    def write(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if not values:
            return
        step = int(record["step"])
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
