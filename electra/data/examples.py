"""Task examples as the readers (``electra.data.tasks``) produce them and fine-tuning consumes them.

Every example remembers where it came from (``source`` = "file:line") so that a later check
(an unknown label on dev, a QA answer missing from its context) can name the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClassificationExample:
    text: str
    text_pair: str | None = None
    label: str | float | None = None   # str for classes, float for regression, None when unlabelled (test)
    guid: str = ""                     # the row's id column when the format has one, else its line number
    source: str = ""                   # "path:line"


@dataclass
class TaggingExample:
    words: list[str]
    tags: list[str] | None = None      # one per word; None when unlabelled
    source: str = ""                   # "path:line" of the sentence's first token


@dataclass
class QAAnswer:
    text: str
    start: int                         # character offset of the answer in the context


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[QAAnswer] = field(default_factory=list)   # all gold answers (dev has several)
    is_impossible: bool = False        # SQuAD v2.0: no answer in the context
    title: str = ""
    source: str = ""                   # "path" (SQuAD JSON has no useful line numbers)
