"""Health checks of a pre-training run: one clear warning, with what to do, when a run is stuck.

Each check reads the training records (one per logging window) of the last ``span`` steps and fires at most
once per run. Thresholds and why (measured runs: docs/electra.md, "Health checks"):

- ``discriminator_stalled``: the discriminator's loss stays within MARGIN_FLOOR nats of the label entropy
  H(p) of its labels, i.e. it knows no more than the replaced fraction. Stalled `tiny` runs sit at margins
  of 0.000-0.005 nats (knowing that [CLS]/[SEP] are never replaced is worth about that much); a
  discriminator that uses context is at 0.02 and more.
- ``generator_at_unigram``: the generator's loss at the corrupted positions stays within PLATEAU_BAND nats of
  the training data's unigram entropy: it predicts token frequencies and ignores its context, so its
  samples are unigram draws.
- ``generator_too_strong``: the replaced fraction falls below a third of the mask rate: the generator guesses
  most masked tokens, and the discriminator gets few positive labels (ELECTRA-Large raised the mask rate to
  25% for this reason).

A check looks only after the learning-rate warm-up and after ``start_fraction`` of the run, when a
healthy run has left its first transient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MARGIN_FLOOR = 0.01        # nats below the label entropy
PLATEAU_BAND = 0.3         # nats below the unigram entropy
TOO_STRONG_FRACTION = 1 / 3  # of train.mask_prob
SPAN_FRACTION = 0.1        # the window a condition must hold for: 10% of the run ...
MIN_SPAN = 100             # ... and at least 100 steps
START_FRACTION = 0.2       # checks start after 20% of the run (and after the learning-rate warm-up)


@dataclass
class HealthMonitor:
    """Feed it every training record (``observe``); it returns the warning records to log and print.

    ``unigram_entropy``: the training data's unigram entropy in nats (None: no generator check).
    ``detector``: whether the run trains a replaced-token detector (objectives electra, electra15).
    ``recipe``, ``generator_fraction``, ``length_warmup``: what the run already does, so that a warning only
    suggests what it does not.
    """

    max_steps: int
    warmup_steps: int
    mask_prob: float
    unigram_entropy: float | None
    detector: bool
    log_every: int = 1
    recipe: str = "paper"
    generator_fraction: float = 0.25
    length_warmup: bool = False
    fired: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def span(self) -> int:
        return max(MIN_SPAN, round(SPAN_FRACTION * self.max_steps))

    @property
    def start(self) -> int:
        return max(self.warmup_steps, round(START_FRACTION * self.max_steps))

    def observe(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Take the training record of the window ending at ``record["step"]``; return new warning records."""
        step = record["step"]
        first = step - self.span  # the span is the steps (first, step]
        self.history = [r for r in self.history + [record] if r["step"] > first]
        covered = self.history[0]["step"] <= first + self.log_every  # records seen for the whole span
        if first < self.start or not covered:
            return []
        out = []
        for name, condition, message in self._checks():
            if name not in self.fired and all(condition(r) for r in self.history):
                self.fired.add(name)
                out.append({"event": "warning", "step": step, "check": name, "message": message(self.history)})
        return out

    def _try(self, *remedies: str) -> str:
        """'Try A, B or C' over the remedies the run does not use yet (each named by its option)."""
        available = {"small_budget": self.recipe != "small_budget", "wider": self.generator_fraction < 1,
                     "warmup": not self.length_warmup}
        words = {"small_budget": "the small-budget recipe (--recipe small_budget, for a new run)",
                 "wider": "a generator as wide as the discriminator (--set generator.hidden_fraction=1.0)",
                 "warmup": "the sequence-length warm-up (--set train.short_seq_length=8 --set train.short_seq_steps=N "
                           "--set train.short_seq_schedule=doubling)"}
        chosen = [words[r] for r in remedies if available[r]]
        if not chosen:
            return "This run already uses the remedies we know; a longer run may be needed (docs/electra.md)"
        return "Try " + (chosen[0] if len(chosen) == 1 else ", ".join(chosen[:-1]) + " or " + chosen[-1])

    def _checks(self):
        checks = []
        if self.detector:
            checks.append(("discriminator_stalled",
                           lambda r: "disc_margin" in r and r["disc_margin"] < MARGIN_FLOOR,
                           lambda w: (f"the discriminator has known no more than the replaced fraction for "
                                      f"{self.span} steps (loss "
                                      f"{mean(w, 'disc_margin'):.4f} nats below the label entropy, AUC "
                                      f"{mean(w, 'disc_auc'):.3f}): it uses no context yet. "
                                      f"{self._try('small_budget', 'wider')}; docs/electra.md, 'Health checks'")))
            checks.append(("generator_too_strong",
                           lambda r: "replaced_frac" in r and r["replaced_frac"] < TOO_STRONG_FRACTION * self.mask_prob,
                           lambda w: (f"only {mean(w, 'replaced_frac'):.1%} of tokens are replaced (mask rate "
                                      f"{self.mask_prob:.0%}): the generator guesses most masked tokens, so the "
                                      f"discriminator sees few replacements. Raise --set train.mask_prob (ELECTRA-Large "
                                      f"used 0.25) or narrow the generator (generator.hidden_fraction)")))
        if self.unigram_entropy is not None:
            floor = self.unigram_entropy - PLATEAU_BAND
            checks.append(("generator_at_unigram",
                           lambda r: "corrupted_loss" in r and r["corrupted_loss"] > floor,
                           lambda w: (f"the masked LM's loss at corrupted positions ({mean(w, 'corrupted_loss'):.2f} "
                                      f"nats) has stayed near the corpus's unigram entropy "
                                      f"({self.unigram_entropy:.2f}): it predicts token frequencies and ignores "
                                      f"its context. {self._try('warmup', 'wider', 'small_budget')}")))
        return checks


def mean(window: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in window if key in r]
    return sum(values) / len(values) if values else float("nan")
