"""Typed configuration: the model architecture, the pre-training run, presets and ``--set`` overrides.

``ModelConfig`` uses the field names of transformers' ``ElectraConfig`` so that a
``config.json`` converts both ways by copying keys. ``PretrainConfig`` groups the
run in three sections (``model``, ``generator``, ``train``); ``--set`` addresses a
field as ``section.field=value`` (or just ``field=value`` when the name is unique).
Every invalid value fails at start-up with a message listing the valid choices.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from electra.errors import UserError


@dataclass
class ModelConfig:
    """One encoder (discriminator or generator); names as in transformers' ElectraConfig."""

    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def validate(self, what: str = "model") -> None:
        check_types(self, f"{what}: ")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{what}: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"{what}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"{what}: hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"{what}: pad_token_id {self.pad_token_id} must be a token id, in [0, vocab_size "
                            f"{self.vocab_size})")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{what}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:  # LayerNorm of a constant vector divides by sqrt(0 + eps)
            raise UserError(f"{what}: layer_norm_eps must be positive (ELECTRA uses 1e-12), got {self.layer_norm_eps}")
        if not 0 < self.initializer_range <= 1:  # the weights' standard deviation; wider ones overflow the first pass
            raise UserError(f"{what}: initializer_range must be in (0, 1] (ELECTRA uses 0.02), got "
                            f"{self.initializer_range}")

    def to_hf_dict(self, architecture: str) -> dict[str, Any]:
        """The config.json that transformers' ElectraConfig reads."""
        d = dataclasses.asdict(self)
        d.update(model_type="electra", architectures=[architecture], tie_word_embeddings=True,
                 summary_type="first", summary_use_proj=True, summary_activation="gelu",
                 summary_last_dropout=0.1, position_embedding_type="absolute")
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "ModelConfig":
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object of transformers' ElectraConfig fields, got "
                            f"{_json_kind(d)}")
        if d.get("model_type", "electra") != "electra":
            raise UserError(f"{source}: model_type is {d.get('model_type')!r}, expected 'electra'")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names and v is not None}
        if "embedding_size" not in kwargs and "hidden_size" in kwargs:
            kwargs["embedding_size"] = kwargs["hidden_size"]  # BERT-style configs have no factorisation
        cfg = _from_json(cls, kwargs)
        cfg.validate(source)
        return cfg


ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
# Pre-training objectives (docs/design.md, "Ablations"; docs/electra.md): ELECTRA, BERT's masked LM, ELECTRA with
# the discriminator loss on the selected tokens only, MLM on generator-corrupted input, and MLM on every
# token with a copy mechanism; and ``hybrid``: one network, one pass, a masked LM at the selected tokens and a
# replaced-token detector at every other token, the replacements drawn from ``train.noise`` (docs/electra.md).
OBJECTIVES = ("electra", "mlm", "electra15", "replace_mlm", "all_tokens_mlm", "hybrid")
# train.local_init: the position frequencies of the neighbour-reading heads (electra/pretraining/local_init.py), at most.
LOCAL_INIT_FREQUENCIES = 16


def local_init_frequencies(m: "ModelConfig") -> int:
    """How many position frequencies train.local_init uses: 16, fewer where the heads (2 per frequency) or the
    embeddings (4 per frequency: half of them stay for the words) are too small."""
    return min(LOCAL_INIT_FREQUENCIES, m.hidden_size // m.num_attention_heads // 2, m.embedding_size // 4)
# Where the hybrid objective's replacements come from: the training data's token frequencies, or any id alike.
NOISES = ("unigram", "uniform")
SHARING = ("embeddings", "none", "all", "gdes")
MASKINGS = ("uniform", "whole_word", "span")
# Training algorithms (paper §3.2 and appendix F; electra/pretraining/algorithms.py): joint MLE training of both networks,
# generator first then a frozen generator with the discriminator initialised from it, and a generator trained by
# REINFORCE to maximise the discriminator's loss.
ALGORITHMS = ("joint", "two_stage", "adversarial")
# Sharing that keeps a two-stage generator frozen while the discriminator trains (nothing trainable in common).
TWO_STAGE_SHARING = ("none", "gdes")
# How several processes (torchrun) share the model: replicas (DistributedDataParallel) or FSDP2 shards.
PARALLELS = ("ddp", "fsdp")
# Sequence-length warm-up: windows of short_seq_length for the whole warm-up, or doubling in equal stages.
SHORT_SEQ_SCHEDULES = ("constant", "doubling")
# How the selected tokens are corrupted for the masked LM (the generator; for ``mlm`` the model): ELECTRA's
# (mask_token_prob [MASK], the rest kept), BERT's (80% [MASK], 10% a random token, 10% kept), or auto: BERT's for
# the mlm objective, ELECTRA's for the others.
CORRUPTIONS = ("auto", "electra", "bert")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key} {value!r} is not one of {', '.join(choices)}")


_KINDS = {"int": int, "float": float, "str": str, "bool": bool}
_KIND_WORDS = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


def _field_kind(f: dataclasses.Field) -> type:
    """The declared type of a config field (a string under ``from __future__ import annotations``)."""
    return _KINDS.get(f.type, f.type) if isinstance(f.type, str) else f.type


def _from_json(cls: type, d: dict[str, Any]) -> Any:
    """``cls(**d)`` for a dict read from JSON, where ``1`` in a float field means ``1.0``."""
    kinds = {f.name: _field_kind(f) for f in dataclasses.fields(cls)}
    return cls(**{k: float(v) if kinds.get(k) is float and type(v) is int and abs(v) < 2**63 else v
                  for k, v in d.items()})


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def check_types(obj: Any, prefix: str) -> None:
    """Every field of the dataclass ``obj`` holds a value of its declared type: an int (within int64, as torch
    needs) for int, a finite float for float (torch's AdamW refuses an int beta), a bool for bool, a str for
    str. Values read from JSON come unchecked (``_from_json`` turns their ints into floats where a float is
    due); ``--set`` converts its text with the same rules."""
    for f in dataclasses.fields(obj):
        kind, value = _field_kind(f), getattr(obj, f.name)
        if kind is float:
            ok = type(value) is float and math.isfinite(value)
        elif kind is int:
            ok = type(value) is int and -2**63 <= value < 2**63
        else:
            ok = type(value) is kind
        if not ok and kind in _KIND_WORDS:
            limit = " within +-2**63" if kind is int and type(value) is int else ""
            raise UserError(f"{prefix}{f.name} must be {_KIND_WORDS[kind]}{limit}, got {value!r:.60}")


@dataclass
class GeneratorConfig:
    """How the generator is derived from the discriminator (docs/design.md, "Generator size")."""

    # Hidden size, heads and FFN are the discriminator's times this fraction;
    # the paper uses 1/4 for Small and Large and 1/3 for Base.
    hidden_fraction: float = 0.25
    # Depth as a fraction of the discriminator's (the paper keeps the same depth).
    layers_fraction: float = 1.0
    # What the generator shares with the discriminator (SHARING): embeddings (token, position, type
    # tables and their LayerNorm: the paper's default) | none | all (every encoder weight; needs
    # fractions 1) | gdes (DeBERTa-v3: discriminator tables = stop_gradient(generator's) + a delta).
    sharing: str = "embeddings"


def check_precision_and_device(precision: str, device: str, prefix: str) -> None:
    """The names that runtime.device.autocast_for and runtime.distributed.run_device accept (pre-training and
    fine-tuning alike); ``prefix`` names the field as the user spells it (``train.`` or nothing)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"{prefix}precision {precision!r:.60} is not one of auto, fp32, bf16")
    if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", device)):
        raise UserError(f"{prefix}device {device!r:.60} is not one of auto, cpu, cuda, cuda:N")


def check_optimiser_limits(learning_rate: float, weight_decay: float, adam_epsilon: float, max_grad_norm: float,
                           prefix: str) -> None:
    """AdamW and clipping settings that would fail or silently wreck training (pre-training and fine-tuning alike);
    ``prefix`` names the fields as the user spells them (``train.`` or nothing)."""
    # eps = 0: an unused parameter's first update is 0 / 0 = NaN. AdamW itself refuses a negative decay.
    if weight_decay < 0 or adam_epsilon <= 0 or max_grad_norm <= 0:
        raise UserError(f"{prefix}weight_decay must be >= 0, {prefix}adam_epsilon and {prefix}max_grad_norm > 0; "
                        f"got {weight_decay}, {adam_epsilon}, {max_grad_norm}")
    if learning_rate * weight_decay >= 1:  # AdamW scales the weights by 1 - lr * wd every step
        raise UserError(f"{prefix}learning_rate x {prefix}weight_decay must be below 1, or every step zeroes or "
                        f"flips the weights; got {learning_rate} x {weight_decay}")


@dataclass
class TrainConfig:
    """The optimisation recipe. Defaults are ELECTRA-Small's (paper, Table 6)."""

    learning_rate: float = 5e-4
    batch_size: int = 128            # global batch, examples per optimiser step
    micro_batch_size: int = 0        # examples per forward pass; 0 = batch_size (no accumulation)
    max_steps: int = 1_000_000       # length of the learning-rate schedule
    stop_at: int = 0                 # save and stop after this step (schedule unchanged; continue with --resume); 0 = max_steps
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    max_skipped_steps: int = 10      # stop after this many consecutive steps with non-finite gradients
    mask_prob: float = 0.15          # fraction of real tokens selected per sequence
    mask_token_prob: float = 0.85    # of the selected, the fraction shown as [MASK]; the rest keep their token
    corruption: str = "auto"         # CORRUPTIONS: auto (bert for mlm, else electra) | electra | bert (80/10/10)
    disc_weight: float = 50.0        # lambda in loss = MLM + lambda * discriminator BCE
    objective: str = "electra"       # OBJECTIVES: electra | mlm | electra15 | replace_mlm | all_tokens_mlm | hybrid
    noise: str = "unigram"           # NOISES, hybrid only: the distribution its replacements are drawn from
    local_init: bool = False         # layer 0's first heads start reading the previous / next token (pretraining/local_init.py)
    masking: str = "uniform"         # MASKINGS: uniform tokens | whole_word | span (SpanBERT)
    span_p: float = 0.2              # span masking: span length in words ~ Geometric(span_p) ...
    span_max: int = 10               # ... truncated to at most span_max words
    short_seq_length: int = 0        # sequence-length warm-up: for the first short_seq_steps steps, cut every
    short_seq_steps: int = 0         # example into windows of this many tokens (0 = off); see docs/finetune.md
    short_seq_schedule: str = "constant"  # SHORT_SEQ_SCHEDULES: constant | doubling (8, 16, 32, ... below full)
    seed: int = 12345
    log_every: int = 10
    eval_every: int = 500
    eval_examples: int = 512         # held-out examples per evaluation
    save_every: int = 1000
    keep_checkpoints: int = 2
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "auto"          # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False            # torch.compile the encoders
    flops_budget: float = 0.0        # > 0: the run's length (max_steps) is this many training FLOPs (analytic)
    algorithm: str = "joint"         # ALGORITHMS: joint | two_stage | adversarial (REINFORCE generator)
    two_stage_generator_steps: int = 0  # two_stage: generator-only steps before the switch; 0 = max_steps // 2,
                                        # fixed in config.json when the run is created
    parallel: str = "ddp"            # PARALLELS, under torchrun: ddp (replicas) | fsdp (FSDP2 shards: less memory)

    def uses_bert_corruption(self) -> bool:
        """BERT's 80/10/10 for the masked LM's input, instead of ELECTRA's mask_token_prob [MASK], rest kept."""
        return self.corruption == "bert" or (self.corruption == "auto" and self.objective == "mlm")

    def trains_detector(self) -> bool:
        """Whether the run trains a replaced-token detector (a binary discriminator, which the held-out yardstick
        scores); the masked-LM objectives do not."""
        return self.objective in ("electra", "electra15", "hybrid")

    def validate(self) -> None:
        check_types(self, "train.")
        check_precision_and_device(self.precision, self.device, "train.")
        for name in ("batch_size", "max_steps", "log_every", "eval_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.micro_batch_size < 0 or (self.micro_batch_size and self.batch_size % self.micro_batch_size):
            raise UserError(
                f"train.micro_batch_size {self.micro_batch_size} must divide train.batch_size {self.batch_size}"
            )
        if not 0 < self.mask_prob < 1 or not 0 <= self.mask_token_prob <= 1:
            raise UserError("train.mask_prob must be in (0, 1) and train.mask_token_prob in [0, 1]")
        if self.max_skipped_steps < 1:
            raise UserError(f"train.max_skipped_steps must be >= 1, got {self.max_skipped_steps}")
        if self.flops_budget < 0:
            raise UserError(f"train.flops_budget must be >= 0 (0 = none), got {self.flops_budget}")
        if self.stop_at < 0:
            raise UserError(f"train.stop_at must be >= 0, got {self.stop_at}")
        if self.warmup_steps < 0 or self.learning_rate <= 0:
            raise UserError("train.warmup_steps must be >= 0 and train.learning_rate > 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):  # AdamW raises ValueError otherwise
            raise UserError(f"train.adam_beta1 and train.adam_beta2 must be in [0, 1), "
                            f"got {self.adam_beta1}, {self.adam_beta2}")
        check_optimiser_limits(self.learning_rate, self.weight_decay, self.adam_epsilon, self.max_grad_norm, "train.")
        if self.disc_weight < 0:
            raise UserError(f"train.disc_weight must be >= 0, got {self.disc_weight}")
        if self.seed < 0:  # numpy's generators (the data order) take no negative seed
            raise UserError(f"train.seed must be >= 0, got {self.seed}")
        _check_choice("train.objective", self.objective, OBJECTIVES)
        _check_choice("train.noise", self.noise, NOISES)
        if self.objective == "hybrid" and (self.corruption != "auto" or not 0 < self.mask_token_prob < 1):
            raise UserError(f"train.objective=hybrid shows mask_token_prob of the selected tokens as [MASK] and "
                            f"replaces the rest with train.noise draws, so train.mask_token_prob must be in (0, 1) "
                            f"(got {self.mask_token_prob}) and train.corruption auto (got {self.corruption})")
        _check_choice("train.masking", self.masking, MASKINGS)
        _check_choice("train.corruption", self.corruption, CORRUPTIONS)
        _check_choice("train.algorithm", self.algorithm, ALGORITHMS)
        _check_choice("train.parallel", self.parallel, PARALLELS)
        _check_choice("train.short_seq_schedule", self.short_seq_schedule, SHORT_SEQ_SCHEDULES)
        if self.short_seq_length < 0 or self.short_seq_steps < 0 or self.short_seq_length == 1 \
                or bool(self.short_seq_length) != bool(self.short_seq_steps):
            raise UserError(f"train.short_seq_length (>= 2) and train.short_seq_steps (> 0) are set together, or "
                            f"both 0 for no sequence-length warm-up; got {self.short_seq_length} and "
                            f"{self.short_seq_steps}")
        if self.two_stage_generator_steps < 0:
            raise UserError(f"train.two_stage_generator_steps must be >= 0 (0 = half of max_steps), "
                            f"got {self.two_stage_generator_steps}")
        if self.two_stage_generator_steps and self.algorithm != "two_stage":
            raise UserError(f"train.two_stage_generator_steps applies only with train.algorithm=two_stage "
                            f"(got train.algorithm={self.algorithm}); valid algorithms: {', '.join(ALGORITHMS)}")
        if self.algorithm == "two_stage" and (self.max_steps < 2 or self.two_stage_switch_step() >= self.max_steps):
            raise UserError(f"train.algorithm=two_stage needs at least one step of each stage: "
                            f"train.two_stage_generator_steps ({self.two_stage_generator_steps}) must be below "
                            f"train.max_steps ({self.max_steps}), and max_steps >= 2")
        if not 0 < self.span_p <= 1 or self.span_max < 1:
            raise UserError(f"train.span_p must be in (0, 1] and train.span_max >= 1, got {self.span_p}, {self.span_max}")

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def window_length(self, step: int, full_length: int) -> int | None:
        """The sequence-length warm-up's window length at ``step``, or None for whole examples.

        ``doubling`` splits the warm-up into equal stages of short_seq_length, twice that, ... up to the last
        length below ``full_length`` (8, 16, 32, 64 for 128): a model that learned to attend among 8 tokens
        falls back to the plateau when it suddenly sees 128 (docs/finetune.md), less so at each doubling.
        """
        for start, end, length in self.window_stages(full_length):
            if start <= step < end:
                return length
        return None

    def window_stages(self, full_length: int) -> list[tuple[int, int, int]]:
        """The warm-up as (first step, end step, window length) stages: one for ``constant``; for ``doubling``
        n = ceil(log2(full_length / short_seq_length)) stages splitting short_seq_steps as evenly as whole
        steps allow. Empty when there is no warm-up."""
        if not self.short_seq_steps:
            return []
        n = 1 if self.short_seq_schedule == "constant" else \
            max(1, math.ceil(math.log2(full_length / self.short_seq_length)))
        S = self.short_seq_steps
        return [(-(-k * S // n), -(-(k + 1) * S // n), self.short_seq_length * 2 ** k) for k in range(n)]

    def two_stage_switch_step(self) -> int:
        """n, the number of generator-only steps of ``two_stage``: steps 0..n-1 train the generator, n.. the
        discriminator."""
        return self.two_stage_generator_steps or self.max_steps // 2


@dataclass
class LogConfig:
    """Where the scalars of metrics.jsonl also go (electra/runtime/loggers.py); pre-training and fine-tuning alike."""
    tensorboard: bool = False  # event files in RUN/tensorboard (pip install tensorboard)
    wandb: bool = False        # Weights & Biases (pip install wandb); offline unless WANDB_API_KEY or WANDB_MODE
    wandb_project: str = "electra"


@dataclass
class PretrainConfig:
    preset: str = "small"
    recipe: str = "paper"  # RECIPES: which hyper-parameters the preset was given (preset_config)
    model: ModelConfig = field(default_factory=ModelConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def generator_model_config(self) -> ModelConfig:
        """The generator's encoder: narrower (and optionally shallower), same embeddings. The hybrid objective's
        masked LM is the discriminator's own encoder with a second head: the discriminator's size."""
        if self.train.objective == "hybrid":
            return self.model
        d, frac = self.model, self.generator.hidden_fraction
        heads = max(1, round(d.num_attention_heads * frac))
        hidden = max(heads, round(d.hidden_size * frac))
        hidden -= hidden % heads
        return dataclasses.replace(
            d,
            hidden_size=hidden,
            num_attention_heads=heads,
            intermediate_size=max(1, round(d.intermediate_size * frac)),
            num_hidden_layers=max(1, round(d.num_hidden_layers * self.generator.layers_fraction)),
        )

    def validate(self) -> None:
        if not isinstance(self.preset, str):
            raise UserError(f"preset must be a string, got {self.preset!r:.60}")
        _check_choice("recipe", self.recipe, RECIPES)
        self.model.validate("model")
        if self.model.type_vocab_size < 2:
            raise UserError(f"model.type_vocab_size must be at least 2: pre-training examples have two segments "
                            f"(token types 0 and 1), got {self.model.type_vocab_size}")
        self.train.validate()
        check_types(self.generator, "generator.")
        check_types(self.log, "log.")
        if not 0 < self.generator.hidden_fraction <= 1 or not 0 < self.generator.layers_fraction <= 1:
            raise UserError("generator.hidden_fraction and generator.layers_fraction must be in (0, 1]")
        self.generator_model_config().validate("generator")
        g, objective = self.generator, self.train.objective
        _check_choice("generator.sharing", g.sharing, SHARING)
        if g.sharing == "all" and (g.hidden_fraction != 1 or g.layers_fraction != 1):
            raise UserError(f"generator.sharing=all shares every encoder weight, so it needs generator.hidden_fraction=1 "
                            f"and generator.layers_fraction=1 (got {g.hidden_fraction}, {g.layers_fraction}); "
                            f"valid sharing choices for a smaller generator: none, embeddings, gdes")
        if objective == "hybrid" and g.sharing != "embeddings":
            raise UserError(f"generator.sharing={g.sharing} has no effect with train.objective=hybrid, whose masked "
                            f"LM and detector share one encoder; valid generator.sharing with it: embeddings (the "
                            f"default)")
        if objective == "mlm" and g.sharing != "embeddings":
            raise UserError(f"generator.sharing={g.sharing} has no effect with train.objective=mlm, which has no "
                            f"generator; valid generator.sharing with it: embeddings (the default)")
        if g.sharing == "gdes" and objective not in ("electra", "electra15"):
            raise UserError(f"generator.sharing=gdes is defined for a replaced-token-detection discriminator; "
                            f"valid objectives with it: electra, electra15 (got {objective})")
        if self.train.local_init and (local_init_frequencies(self.model) < 2
                                      or self.model.hidden_size < self.model.embedding_size):
            raise UserError(f"train.local_init builds layer 0's neighbour-reading heads from position frequencies: "
                            f"it needs heads of at least 4 dimensions, an embedding size of at least 8 and no "
                            f"larger than the hidden size; valid: such a model, or --set train.local_init=false")
        algorithm = self.train.algorithm
        if algorithm != "joint" and objective not in ("electra", "electra15"):
            raise UserError(f"train.algorithm={algorithm} trains a replaced-token-detection discriminator against "
                            f"a generator; valid objectives with it: electra, electra15 (got {objective}); "
                            f"other objectives use train.algorithm=joint")
        if algorithm == "two_stage" and g.sharing not in TWO_STAGE_SHARING:
            raise UserError(f"train.algorithm=two_stage freezes the generator while the discriminator trains, so "
                            f"they cannot share trained weights; valid generator.sharing with it: "
                            f"{', '.join(TWO_STAGE_SHARING)} (got {g.sharing}). The discriminator is initialised "
                            f"from the generator's encoder tensors of equal name and shape (all of them with "
                            f"generator.hidden_fraction=1 and layers_fraction=1, else only those that match)")
        if algorithm == "adversarial" and g.sharing == "all":
            raise UserError("train.algorithm=adversarial trains the generator to maximise the discriminator's loss, "
                            "so one shared encoder would be trained against itself; valid generator.sharing with "
                            "it: embeddings, none, gdes")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "PretrainConfig":
        """The inverse of ``to_dict`` (a run's config.json). A field missing from a section takes its default;
        a wrong shape or an unknown key is a UserError. Call ``validate`` for the values."""
        sections = {"model": ModelConfig, "generator": GeneratorConfig, "train": TrainConfig, "log": LogConfig}
        required = ("preset", "model", "generator", "train")  # runs from before `log` existed have none
        if not isinstance(d, dict):
            raise UserError(f"expected a JSON object with {', '.join(required)}; got {_json_kind(d)}")
        _known_keys(d, ["preset", "recipe", *sections], "")
        missing = [k for k in required if k not in d]
        if missing:
            raise UserError(f"no {missing[0]!r}; a run config has {', '.join(required)}")
        parts = {}
        for name, section in sections.items():
            if name not in d:
                continue
            if not isinstance(d[name], dict):
                raise UserError(f"{name} must be a JSON object of its fields, got {_json_kind(d[name])}")
            _known_keys(d[name], [f.name for f in dataclasses.fields(section)], f"{name}.")
            parts[name] = _from_json(section, d[name])
        # Runs from before recipes existed were all the paper's.
        return cls(preset=d["preset"], recipe=d.get("recipe", "paper"), **parts)


def _known_keys(d: dict, valid: list[str], prefix: str) -> None:
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise UserError(f"{prefix + unknown[0]!r:.60} is not a known key; valid keys: "
                        f"{', '.join(prefix + k for k in valid)}")


# --------------------------------------------------------------------------- presets

# Architecture per preset (paper Table 6); generator fraction per docs/design.md, "Generator size".
_PRESET_MODELS = {
    # For tests and the demo: trains in minutes on a CPU.
    "tiny": dict(embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=512),
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                  intermediate_size=1024),
    # The released ELECTRA-Small ("Small++", paper appendix D): Small's encoder, trained on 512-token examples.
    "small++": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                    intermediate_size=1024),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096),
}
# Small++ used a generator as wide as the discriminator (google-research/electra issue 39 and README:
# "generator_hidden_size: 1.0" for ELECTRA-Small), unlike the paper's Small.
_PRESET_GENERATOR = {"tiny": 0.25, "small": 0.25, "small++": 1.0, "base": 1 / 3, "large": 0.25}
_PRESET_TRAIN = {
    "tiny": dict(learning_rate=5e-4, batch_size=32, max_steps=10_000, warmup_steps=1_000),
    "small": dict(learning_rate=5e-4, batch_size=128, max_steps=1_000_000, warmup_steps=10_000),
    "small++": dict(learning_rate=5e-4, batch_size=128, max_steps=4_000_000, warmup_steps=10_000),  # 4x longer
    "base": dict(learning_rate=2e-4, batch_size=256, max_steps=766_000, warmup_steps=10_000),
    "large": dict(learning_rate=2e-4, batch_size=2048, max_steps=400_000, warmup_steps=10_000,
                  mask_prob=0.25),
}
PRESETS = tuple(_PRESET_MODELS)

# Recipes: ``paper`` is the paper's hyper-parameters per preset, exactly; ``small_budget`` changes
# what measured runs showed to make a small discriminator learn context within minutes on a CPU (docs/electra.md,
# "The small-budget recipe"). Each change is an ordinary field, so --set can still override any of them.
RECIPES = ("paper", "small_budget")
_RECIPE_CHANGES = {
    "paper": {},
    "small_budget": {"train": dict(local_init=True, learning_rate=1e-3),
                     "generator": dict(hidden_fraction=1.0, layers_fraction=0.25)},
}
# The recipe a preset gets when none is given: tiny is the CPU preset, whose budgets are the small ones; the
# others keep the paper's until a budget they are run at shows the change helps there too.
_PRESET_RECIPE: dict[str, str] = {"tiny": "small_budget"}


def default_recipe(preset: str) -> str:
    return _PRESET_RECIPE.get(preset, "paper")


def preset_config(name: str, vocab_size: int = 30522, pad_token_id: int = 0, recipe: str | None = None) -> PretrainConfig:
    """A preset's architecture and hyper-parameters, with ``recipe`` (default: the preset's, default_recipe)."""
    if name not in _PRESET_MODELS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    recipe = recipe or default_recipe(name)
    _check_choice("recipe", recipe, RECIPES)
    changes = _RECIPE_CHANGES[recipe]
    return PretrainConfig(
        preset=name,
        recipe=recipe,
        model=ModelConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **_PRESET_MODELS[name]),
        generator=GeneratorConfig(**{"hidden_fraction": _PRESET_GENERATOR[name], **changes.get("generator", {})}),
        train=TrainConfig(**{**_PRESET_TRAIN[name], **changes.get("train", {})}),
    )


# --------------------------------------------------------------------------- --set overrides

def _parse_value(raw: str, kind: type, key: str) -> Any:
    """Convert the text of ``--set key=value`` to ``kind``, the declared type of the field it replaces (not the
    type of its current value: a config.json may hold 1 in a float field)."""
    try:
        if kind is bool:
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind is int:
            try:
                value = int(raw)  # exact, however large
            except ValueError:
                value = float(raw)  # accept 1e6
                if not value.is_integer():
                    raise ValueError from None
                value = int(value)
            if not -2**63 <= value < 2**63:  # torch's int64
                raise ValueError
            return value
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        return raw
    except ValueError:
        raise UserError(f"--set {key}={raw!r:.60}: expected a value of type {kind.__name__}") from None


def apply_overrides(cfg: PretrainConfig, pairs: list[str]) -> PretrainConfig:
    """Apply ``section.field=value`` (or unique ``field=value``) strings in order."""
    set_fields({"model": cfg.model, "generator": cfg.generator, "train": cfg.train, "log": cfg.log}, pairs)
    cfg.validate()
    return cfg


def set_fields(sections: dict[str, Any], pairs: list[str]) -> None:
    """``--set`` for any dataclasses: ``section.field=value``, or ``field=value`` when the name is unique."""
    all_keys = [f"{s}.{f.name}" for s, obj in sections.items() for f in dataclasses.fields(obj)]
    example = all_keys[0].split(".", 1)[1] if all_keys else "key"
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value, e.g. --set {example}=...")
        matches = [k for k in all_keys if k == key or k.split(".", 1)[1] == key]
        if len(matches) != 1:
            why = "is ambiguous" if matches else "is not a known key"
            raise UserError(f"--set {key!r:.60} {why}; valid keys: {', '.join(all_keys)}")
        section, name = matches[0].split(".", 1)
        obj = sections[section]
        kind = next(_field_kind(f) for f in dataclasses.fields(obj) if f.name == name)
        setattr(obj, name, _parse_value(raw.strip(), kind, matches[0]))


def dumps(cfg: PretrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
