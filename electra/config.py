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
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"{what}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"{what}: hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise UserError(f"{what}: {name} must be positive, got {getattr(self, name)}")

    def to_hf_dict(self, architecture: str) -> dict[str, Any]:
        """The config.json that transformers' ElectraConfig reads."""
        d = dataclasses.asdict(self)
        d.update(model_type="electra", architectures=[architecture], tie_word_embeddings=True,
                 summary_type="first", summary_use_proj=True, summary_activation="gelu",
                 summary_last_dropout=0.1, position_embedding_type="absolute")
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "ModelConfig":
        if d.get("model_type", "electra") != "electra":
            raise UserError(f"{source}: model_type is {d.get('model_type')!r}, expected 'electra'")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names and v is not None}
        if "embedding_size" not in kwargs and "hidden_size" in kwargs:
            kwargs["embedding_size"] = kwargs["hidden_size"]  # BERT-style configs have no factorisation
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg


ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
# Pre-training objectives (DESIGN.md §3 ablations; docs/electra.md): ELECTRA, BERT's masked LM, ELECTRA with
# the discriminator loss on the selected tokens only, MLM on generator-corrupted input, and MLM on every
# token with a copy mechanism.
OBJECTIVES = ("electra", "mlm", "electra15", "replace_mlm", "all_tokens_mlm")
SHARING = ("embeddings", "none", "all", "gdes")
MASKINGS = ("uniform", "whole_word", "span")
# Training algorithms (paper §3.2 and appendix F; electra/algorithms.py): joint MLE training of both networks,
# generator first then a frozen generator with the discriminator initialised from it, and a generator trained by
# REINFORCE to maximise the discriminator's loss.
ALGORITHMS = ("joint", "two_stage", "adversarial")
# Sharing that keeps a two-stage generator frozen while the discriminator trains (nothing trainable in common).
TWO_STAGE_SHARING = ("none", "gdes")
# How several processes (torchrun) share the model: replicas (DistributedDataParallel) or FSDP2 shards.
PARALLELS = ("ddp", "fsdp")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key} {value!r} is not one of {', '.join(choices)}")


@dataclass
class GeneratorConfig:
    """How the generator is derived from the discriminator (DESIGN.md §3)."""

    # Hidden size, heads and FFN are the discriminator's times this fraction;
    # the paper uses 1/4 for Small and Large and 1/3 for Base.
    hidden_fraction: float = 0.25
    # Depth as a fraction of the discriminator's (the paper keeps the same depth).
    layers_fraction: float = 1.0
    # What the generator shares with the discriminator (SHARING): embeddings (token, position, type
    # tables and their LayerNorm: the paper's default) | none | all (every encoder weight; needs
    # fractions 1) | gdes (DeBERTa-v3: discriminator tables = stop_gradient(generator's) + a delta).
    sharing: str = "embeddings"


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
    disc_weight: float = 50.0        # lambda in loss = MLM + lambda * discriminator BCE
    objective: str = "electra"       # OBJECTIVES: electra | mlm | electra15 | replace_mlm | all_tokens_mlm
    masking: str = "uniform"         # MASKINGS: uniform tokens | whole_word | span (SpanBERT)
    span_p: float = 0.2              # span masking: span length in words ~ Geometric(span_p) ...
    span_max: int = 10               # ... truncated to at most span_max words
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

    def validate(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"train.precision {self.precision!r} is not one of auto, fp32, bf16")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UserError(f"train.device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
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
        _check_choice("train.objective", self.objective, OBJECTIVES)
        _check_choice("train.masking", self.masking, MASKINGS)
        _check_choice("train.algorithm", self.algorithm, ALGORITHMS)
        _check_choice("train.parallel", self.parallel, PARALLELS)
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

    def two_stage_switch_step(self) -> int:
        """n, the number of generator-only steps of ``two_stage``: steps 0..n-1 train the generator, n.. the
        discriminator."""
        return self.two_stage_generator_steps or self.max_steps // 2


@dataclass
class PretrainConfig:
    preset: str = "small"
    model: ModelConfig = field(default_factory=ModelConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def generator_model_config(self) -> ModelConfig:
        """The generator's encoder: narrower (and optionally shallower), same embeddings."""
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
        self.model.validate("model")
        self.train.validate()
        if not 0 < self.generator.hidden_fraction <= 1 or not 0 < self.generator.layers_fraction <= 1:
            raise UserError("generator.hidden_fraction and generator.layers_fraction must be in (0, 1]")
        self.generator_model_config().validate("generator")
        g, objective = self.generator, self.train.objective
        _check_choice("generator.sharing", g.sharing, SHARING)
        if g.sharing == "all" and (g.hidden_fraction != 1 or g.layers_fraction != 1):
            raise UserError(f"generator.sharing=all shares every encoder weight, so it needs generator.hidden_fraction=1 "
                            f"and generator.layers_fraction=1 (got {g.hidden_fraction}, {g.layers_fraction}); "
                            f"valid sharing choices for a smaller generator: none, embeddings, gdes")
        if objective == "mlm" and g.sharing != "embeddings":
            raise UserError(f"generator.sharing={g.sharing} has no effect with train.objective=mlm, which has no "
                            f"generator; leave generator.sharing at embeddings")
        if g.sharing == "gdes" and objective not in ("electra", "electra15"):
            raise UserError(f"generator.sharing=gdes is defined for a replaced-token-detection discriminator; "
                            f"valid objectives with it: electra, electra15 (got {objective})")
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
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        return cls(
            preset=d["preset"],
            model=ModelConfig(**d["model"]),
            generator=GeneratorConfig(**d["generator"]),
            train=TrainConfig(**d["train"]),
        )


# --------------------------------------------------------------------------- presets

# Architecture per preset (paper Table 6); generator fraction per DESIGN.md §3.
_PRESET_MODELS = {
    # For tests and the demo: trains in minutes on a CPU.
    "tiny": dict(embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=512),
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                  intermediate_size=1024),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096),
}
_PRESET_GENERATOR = {"tiny": 0.25, "small": 0.25, "base": 1 / 3, "large": 0.25}
_PRESET_TRAIN = {
    "tiny": dict(learning_rate=5e-4, batch_size=32, max_steps=10_000, warmup_steps=1_000),
    "small": dict(learning_rate=5e-4, batch_size=128, max_steps=1_000_000, warmup_steps=10_000),
    "base": dict(learning_rate=2e-4, batch_size=256, max_steps=766_000, warmup_steps=10_000),
    "large": dict(learning_rate=2e-4, batch_size=2048, max_steps=400_000, warmup_steps=10_000,
                  mask_prob=0.25),
}
PRESETS = tuple(_PRESET_MODELS)


def preset_config(name: str, vocab_size: int = 30522, pad_token_id: int = 0) -> PretrainConfig:
    if name not in _PRESET_MODELS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PretrainConfig(
        preset=name,
        model=ModelConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **_PRESET_MODELS[name]),
        generator=GeneratorConfig(hidden_fraction=_PRESET_GENERATOR[name]),
        train=TrainConfig(**_PRESET_TRAIN[name]),
    )


# --------------------------------------------------------------------------- --set overrides

def _parse_value(raw: str, current: Any, key: str) -> Any:
    """Convert the text of ``--set key=value`` to the type of the field it replaces."""
    kind = type(current)
    try:
        if kind is bool:
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind is int:
            value = float(raw)  # accept 1e6
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        return raw
    except ValueError:
        raise UserError(f"--set {key}={raw}: expected a value of type {kind.__name__}") from None


def apply_overrides(cfg: PretrainConfig, pairs: list[str]) -> PretrainConfig:
    """Apply ``section.field=value`` (or unique ``field=value``) strings in order."""
    set_fields({"model": cfg.model, "generator": cfg.generator, "train": cfg.train}, pairs)
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
            raise UserError(f"--set {key} {why}; valid keys: {', '.join(all_keys)}")
        section, name = matches[0].split(".", 1)
        obj = sections[section]
        setattr(obj, name, _parse_value(raw.strip(), getattr(obj, name), matches[0]))


def dumps(cfg: PretrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
