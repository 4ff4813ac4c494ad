"""The networks and weight sharing of the paper's ablations; the losses live in objective.py.

- ``pretraining_network``: what the discriminator-sized network is for each objective. ELECTRA and
  ELECTRA 15% train a replaced-token detector (``ElectraForPreTraining``); MLM and Replace MLM train a
  discriminator-sized masked LM (``ElectraForMaskedLM``); All-Tokens MLM adds the paper's copy head
  (``ElectraForAllTokensMLM``). It is always stored under the ``discriminator.`` prefix, so fine-tuning
  reads ``discriminator.electra.*`` from any run.
- ``share_weights``: none / all / gdes sharing between generator and discriminator (``embeddings``, the
  default, is done inline in ``ElectraPretrainer``).
- ``copy_mixture_nll``: All-Tokens MLM's loss, p(x_t) = D·1[x_t = input_t] + (1 − D)·softmax(x_t).
- ``exportable`` / ``merge_gdes_state`` / ``load_network_state``: turn these networks into plain
  transformers-shaped ones and back (export, fine-tuning sources, ``--init``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig
from electra.errors import UserError
from electra.model import ElectraDiscriminatorPredictions, ElectraForMaskedLM, ElectraForPreTraining

EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


class GradientDisentangledEmbedding(nn.Module):
    """An embedding table read as ``stop_gradient(source.weight) + delta`` (DeBERTa-v3's GDES).

    ``source`` is the generator's table, held as a plain reference (not a submodule: it stays the
    generator's parameter, stored once, under the generator's name). ``delta`` starts at zero, so the
    discriminator starts with the generator's embeddings; the discriminator's loss trains only ``delta``
    and never reaches the generator's table.
    """

    def __init__(self, source: nn.Embedding):
        super().__init__()
        self.__dict__["source"] = source  # bypasses nn.Module registration on purpose
        self.padding_idx = source.padding_idx
        self.delta = nn.Parameter(torch.zeros_like(source.weight))

    @property
    def weight(self) -> torch.Tensor:
        """The effective table (V, E); ElectraEmbeddings reads ``.weight`` of position and type tables."""
        return self.source.weight.detach() + self.delta

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight, self.padding_idx)  # (B, T) -> (B, T, E)


class ElectraForAllTokensMLM(ElectraForMaskedLM):
    """A masked LM over every token plus the paper's copy head: a sigmoid D(x, t) per token, the
    probability that the token at t is the input token. The copy head is ELECTRA's discriminator head
    (same module names), so the checkpoint reads like both a masked LM and a discriminator."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.init_weights()
        self.tie_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                position_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.electra(input_ids, attention_mask, token_type_ids, position_ids)  # (B, T, H)
        logits = self.generator_lm_head(self.generator_predictions(h))  # (B, T, V)
        return logits, self.discriminator_predictions(h)  # (B, T, V), (B, T) copy logits


def pretraining_network(config: ModelConfig, objective: str) -> nn.Module:
    """The discriminator-sized network that an objective trains (and that fine-tuning starts from)."""
    if objective in ("electra", "electra15", "hybrid"):  # the hybrid's masked LM is a second head on its encoder
        return ElectraForPreTraining(config)
    if objective in ("mlm", "replace_mlm"):
        return ElectraForMaskedLM(config)
    if objective == "all_tokens_mlm":
        return ElectraForAllTokensMLM(config)
    raise ValueError(f"unknown objective {objective!r}")


def share_weights(generator: ElectraForMaskedLM, discriminator: nn.Module, sharing: str) -> None:
    """Apply ``none``, ``all`` or ``gdes`` sharing (``embeddings`` is ElectraPretrainer's default path)."""
    if sharing == "none":
        return  # separate tables; each LM head stays tied to its own network's word embeddings
    if sharing == "all":
        # One encoder (embeddings, projection, layers) for both; the heads stay separate.
        generator.electra = discriminator.electra
        generator.tie_weights()
        return
    if sharing == "gdes":
        src, dst = generator.electra.embeddings, discriminator.electra.embeddings
        for name in EMBEDDING_TABLES:
            setattr(dst, name, GradientDisentangledEmbedding(getattr(src, name)))
        return
    raise ValueError(f"unknown sharing {sharing!r}")


# --------------------------------------------------------------------------- All-Tokens MLM

def copy_mixture_log_prob(logits: torch.Tensor, copy_logits: torch.Tensor, inputs: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under p(v) = D·1[v = input] + (1 − D)·softmax(logits)(v), D = sigmoid(copy_logits).

    logits (..., V), copy_logits (...), inputs/targets (...) int64 -> (...) float32. Computed in log
    space: where target == input, log(D + (1 − D)·s) = logaddexp(log D, log(1 − D) + log s).
    """
    log_s = -F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="none").view(targets.shape)
    c = copy_logits.float()
    generate = F.logsigmoid(-c) + log_s  # log((1 - D) s)
    return torch.where(inputs == targets, torch.logaddexp(F.logsigmoid(c), generate), generate)


@torch.no_grad()
def copy_mixture_argmax(logits: torch.Tensor, copy_logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The most probable token of the copy mixture: the input token if D + (1 − D)·s(input) >= (1 − D)·max s."""
    probs = logits.float().softmax(-1)
    d = torch.sigmoid(copy_logits.float())
    best_p, best = probs.max(-1)
    p_input = d + (1 - d) * probs.gather(-1, inputs[..., None]).squeeze(-1)
    return torch.where(p_input >= (1 - d) * best_p, inputs, best)


# --------------------------------------------------------------------------- export / import

def exportable(network: nn.Module) -> ElectraForPreTraining | ElectraForMaskedLM:
    """The network as transformers' class: GDES tables summed into plain ones; All-Tokens MLM without its
    copy head (an ElectraForMaskedLM). Plain networks are returned as they are."""
    gdes = any(isinstance(m, GradientDisentangledEmbedding) for m in network.modules())
    if not gdes and type(network) in (ElectraForPreTraining, ElectraForMaskedLM):
        return network
    plain = ElectraForPreTraining(network.config) if isinstance(network, ElectraForPreTraining) \
        else ElectraForMaskedLM(network.config)
    state = {k: v for k, v in effective_state_dict(network).items() if k in plain.state_dict()}
    plain.load_state_dict(state)
    if isinstance(plain, ElectraForMaskedLM):
        plain.tie_weights()
    return plain


def effective_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict()`` with each GDES table's ``X.delta`` replaced by its effective ``X.weight``."""
    state = dict(network.state_dict())
    for name, m in network.named_modules():
        if isinstance(m, GradientDisentangledEmbedding):
            del state[f"{name}.delta"]
            state[f"{name}.weight"] = m.weight.detach()
    return state


def merge_gdes_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A run checkpoint's state with ``discriminator.*.delta`` replaced by the effective ``*.weight``
    (generator table + delta), as the discriminator sees it."""
    out = dict(state)
    for name in EMBEDDING_TABLES:
        delta_key = f"discriminator.electra.embeddings.{name}.delta"
        if delta_key in out:
            source = out[f"generator.electra.embeddings.{name}.weight"]
            out[f"discriminator.electra.embeddings.{name}.weight"] = source + out.pop(delta_key)
    return out


def load_network_state(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load transformers-named weights into a pre-training network, for ``--init`` with non-default options.

    Every ``electra.*`` encoder tensor must be there; a head is loaded where the weights have it with the
    right shape and otherwise starts fresh; a GDES table takes ``delta = weight − generator's table``.
    """
    state = {k.removeprefix("discriminator.").removeprefix("generator."): v for k, v in state.items()}
    own = network.state_dict()
    with torch.no_grad():
        for name, m in network.named_modules():
            if isinstance(m, GradientDisentangledEmbedding):
                key = f"{name}.weight"
                if key not in state or state[key].shape != m.delta.shape:
                    raise UserError(f"{source}: weights lack {key} of shape {tuple(m.delta.shape)}")
                m.delta.copy_(state.pop(key).to(m.delta) - m.source.weight)
    missing = [k for k in own if k.startswith("electra.") and not k.endswith(".delta")
               and (k not in state or state[k].shape != own[k].shape)]
    if missing:
        raise UserError(f"{source}: weights lack {missing[0]} (or its shape differs; {len(missing)} in all); "
                        f"is it an ELECTRA model of this architecture?")
    network.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
