"""Does the tiny masked LM learn any context? Ours against transformers' ElectraForMaskedLM, same start.

Both models start from the same weights (transformers' init copied into ours) and take the same batches of
the shared corpus (every selected token becomes [MASK], so the loss is the [MASK]-only cross-entropy and no
copying shortcut exists). Compare the loss with the corpus's unigram entropy (6.70 nats for the 8k
vocabulary of docs/finetune.md): a model that sits there predicts the token frequencies and uses no context.

    python experiments/mlm_plateau_check.py DATA_DIR LR STEPS [hf,ours]

DATA_DIR: an `electra data build` folder (tiny config, 8k vocabulary). Results: docs/finetune.md.
"""
import sys

import numpy as np, torch, torch.nn.functional as F
from transformers import ElectraConfig, ElectraForMaskedLM as HFMLM
from electra.model import ElectraForMaskedLM
from electra.config import ModelConfig
torch.manual_seed(0); torch.set_num_threads(2)
data_dir, lr, steps, warm = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), 100
which = (sys.argv[4] if len(sys.argv) > 4 else 'hf,ours').split(',')
a = np.load(f'{data_dir}/train-00000.ids.npy').astype(np.int64)
hc = ElectraConfig(vocab_size=8000, embedding_size=128, hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                   intermediate_size=512, max_position_embeddings=512)
models = {}
hf = HFMLM(hc)
if 'hf' in which: models['hf'] = hf
if 'ours' in which:
    ours = ElectraForMaskedLM(ModelConfig(vocab_size=8000, embedding_size=128, hidden_size=128, num_hidden_layers=4,
                                          num_attention_heads=2, intermediate_size=512))
    missing = ours.load_state_dict(hf.state_dict(), strict=False); print(missing)
    ours.tie_weights(); models['ours'] = ours
opts = {k: torch.optim.AdamW(m.parameters(), lr=lr, eps=1e-6, weight_decay=0.01) for k, m in models.items()}
rng = np.random.default_rng(0)
hist = {k: [] for k in models}
for step in range(steps):
    ids = torch.from_numpy(a[rng.integers(0, len(a), 32)])
    sel = (torch.rand(ids.shape) < 0.15) & (ids > 4)
    inp = ids.masked_fill(sel, 4)  # all selected -> [MASK]: loss on [MASK] only, no copy shortcut
    am = (ids != 0).long()
    for k, m in models.items():
        m.train()
        for g in opts[k].param_groups: g['lr'] = lr * min(1, (step + 1) / warm)
        logits = m(input_ids=inp, attention_mask=am).logits if k == 'hf' else m(inp, am)
        loss = F.cross_entropy(logits[sel], ids[sel])
        opts[k].zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opts[k].step()
        hist[k].append(loss.item())
    if (step + 1) % 50 == 0:
        print(step + 1, {k: round(float(np.mean(v[-50:])), 3) for k, v in hist.items()}, flush=True)
