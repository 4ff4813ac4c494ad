"""The ELECTRA encoder and its heads, in one file.

A BERT encoder (post-LayerNorm, GELU, learned absolute positions, token types)
with ELECTRA's factorised embeddings (``embedding_size`` may be smaller than
``hidden_size``, bridged by ``embeddings_project``). Module and parameter names are
exactly those of transformers' ``ElectraForPreTraining`` / ``ElectraForMaskedLM``,
so a state dict moves between the two by key, with no renaming table.

Shapes: B batch, T sequence length, E embedding size, H hidden size, nh heads,
hs = H / nh head size, V vocabulary, M number of selected (masked) positions.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig

_ACT = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class ElectraEmbeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """position_ids (B, T): where each token sits (the windows of a sequence-length warm-up keep the
        positions they had in their sequence); None is 0..T-1 for every row."""
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # (B, T, E)
        if position_ids is None:
            x = x + self.position_embeddings.weight[:T]  # (T, E) broadcasts over B
        else:
            x = x + F.embedding(position_ids, self.position_embeddings.weight)  # (B, T, E)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class ElectraSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = H // self.num_heads
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, H = x.shape
        # (B, T, H) -> (B, nh, T, hs)
        q = self.query(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)
        k = self.key(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)
        v = self.value(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)
        if attn_mask is not None and attn_mask.is_floating_point():
            # An additive mask (B, 1, 1, T) (0 attended, -10000 padding; ``explicit_attention``): BERT's own
            # arithmetic, the graph ONNX Runtime's transformer optimizer fuses into its Attention operator
            # (docs/serve.md, "ONNX"). Same result as SDPA's within float rounding.
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + attn_mask  # (B, nh, T, T)
            y = torch.matmul(F.dropout(scores.softmax(-1), self.dropout_p, self.training), v)  # (B, nh, T, hs)
        else:
            # SDPA picks flash / memory-efficient kernels where it can; attn_mask (B, 1, 1, T) is True where
            # attended.
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout_p if self.training else 0.0
            )  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, H)


class ElectraSelfOutput(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)  # post-LN, as BERT


class ElectraAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self = ElectraSelfAttention(config)
        self.output = ElectraSelfOutput(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, attn_mask), x)


class ElectraIntermediate(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACT[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class ElectraOutput(ElectraSelfOutput):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)


class ElectraLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention = ElectraAttention(config)
        self.intermediate = ElectraIntermediate(config)
        self.output = ElectraOutput(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, attn_mask)
        return self.output(self.intermediate(x), x)


class ElectraEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(ElectraLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, attn_mask)
        return x


def sdpa_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) of 1/0 -> (B, 1, 1, T) bool for SDPA (True = attend). Pass None when nothing is padded:
    SDPA then may use its fastest (flash) kernel. Deciding that here would cost a host sync on GPU."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


def additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) of 1/0 -> (B, 1, 1, T) float: 0 where attended, -10000 at padding, in the exact order of operations
    (unsqueeze, unsqueeze, cast, 1 - m, × -10000) that ONNX Runtime's attention fusion matches."""
    return (1.0 - attention_mask.unsqueeze(1).unsqueeze(2).to(torch.float32)) * -10000.0


@contextlib.contextmanager
def explicit_attention(model: nn.Module):
    """Within the block, every encoder in ``model`` attends with BERT's explicit arithmetic and an additive mask
    instead of SDPA: the form an ONNX export needs for ONNX Runtime to fuse attention."""
    encoders = [m for m in model.modules() if isinstance(m, ElectraModel)]
    for m in encoders:
        m.explicit_attention = True
    try:
        yield model
    finally:
        for m in encoders:
            m.explicit_attention = False


class ElectraModel(nn.Module):
    """Embeddings (+ projection to the hidden size when factorised) and the encoder stack."""

    explicit_attention = False  # set by ``explicit_attention``

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = ElectraEncoder(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, E) -> (B, T, H)
        if self.explicit_attention:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            return self.encoder(x, additive_mask(attention_mask))  # (B, T, H)
        return self.encoder(x, sdpa_mask(attention_mask))  # (B, T, H)


class ElectraDiscriminatorPredictions(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = _ACT[config.hidden_act]
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(h))).squeeze(-1)  # (..., H) -> (...)


class ElectraGeneratorPredictions(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))  # (..., H) -> (..., E); always GELU, as transformers


class ElectraPreTrainedModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    @torch.no_grad()
    def init_weights(self) -> None:
        """BERT/ELECTRA initialisation: truncated normal(0, 0.02) for weights, zeros for biases."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: one "replaced?" logit per token."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None) -> torch.Tensor:
        h = self.electra(input_ids, attention_mask, token_type_ids, position_ids)
        return self.discriminator_predictions(h)  # (B, T) logits


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator: a masked LM whose output layer is tied to the word embeddings (plus a bias)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.init_weights()
        self.tie_weights()

    def tie_weights(self) -> None:
        self.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                positions: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V), or (B, P, V) at ``positions`` only, a (B, P) index tensor.

        Pre-training needs the V-way logits only where tokens were selected (~15%):
        gathering the hidden states first skips ~85% of the largest matmul.
        """
        h = self.electra(input_ids, attention_mask, token_type_ids, position_ids)  # (B, T, H)
        if positions is not None:
            h = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
        return self.generator_lm_head(self.generator_predictions(h))


class ElectraClassificationHead(nn.Module):
    """Sentence(-pair) head on the [CLS] token, as transformers': dropout, dense, GELU, dropout, projection."""

    def __init__(self, config: ModelConfig, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.dropout(h[:, 0])  # (B, T, H) -> (B, H): the [CLS] position
        x = self.dropout(F.gelu(self.dense(x)))
        return self.out_proj(x)  # (B, num_labels)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    """Classification (num_labels >= 2) or regression (num_labels == 1) of a text or a text pair."""

    def __init__(self, config: ModelConfig, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.electra = ElectraModel(config)
        self.classifier = ElectraClassificationHead(config, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.classifier(self.electra(input_ids, attention_mask, token_type_ids))  # (B, num_labels)


class ElectraForTokenClassification(ElectraPreTrainedModel):
    """One label per token (tagging); the fine-tuning code reads the first piece of each word."""

    def __init__(self, config: ModelConfig, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.electra = ElectraModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        h = self.electra(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(h))  # (B, T, num_labels)


class ElectraForQuestionAnswering(ElectraPreTrainedModel):
    """Extractive QA: a start and an end logit per token."""

    def __init__(self, config: ModelConfig, num_labels: int = 2):
        super().__init__(config)
        self.num_labels = 2
        self.electra = ElectraModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(self.electra(input_ids, attention_mask, token_type_ids))  # (B, T, 2)
        start, end = logits.unbind(-1)
        return start, end  # (B, T) each


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
