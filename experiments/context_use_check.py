"""Does a masked LM use its context? [MASK]-only accuracy against always guessing the most frequent token,
and how often the prediction survives shuffling the unmasked context. Results: docs/finetune.md.

    python experiments/context_use_check.py EXPORTED_MLM_FOLDER CORPUS_FILE.txt.gz

EXPORTED_MLM_FOLDER: a transformers ElectraForMaskedLM folder (config.json, weights, tokenizer.json).
"""
import gzip
import sys
import torch, random, collections
from transformers import ElectraForMaskedLM
from tokenizers import Tokenizer
torch.set_num_threads(1); torch.manual_seed(0); random.seed(0)
d=sys.argv[1]
m = ElectraForMaskedLM.from_pretrained(d).eval()
tok = Tokenizer.from_file(d+'/tokenizer.json')
lines = [l.strip() for l in gzip.open(sys.argv[2],'rt') if len(l.split())>12][:3000]
random.shuffle(lines); lines=lines[:200]
mask_id = tok.token_to_id('[MASK]')
uni = collections.Counter()
for l in lines: uni.update(tok.encode(l).ids[1:-1])
top = uni.most_common(1)[0][0]
hit=n=uhit=shuf_same=0; nll=0.
for l in lines:
    ids = tok.encode(l).ids[:128]
    pos = random.sample(range(1,len(ids)-1), max(1,(len(ids)-2)//7))
    inp = list(ids)
    for p in pos: inp[p]=mask_id
    with torch.no_grad():
        lo = m(torch.tensor([inp])).logits[0]
        # same masked tokens, context order shuffled (positions of masks kept)
        ctx=[i for i in range(1,len(ids)-1) if i not in pos]; vals=[inp[i] for i in ctx]; random.shuffle(vals)
        inp2=list(inp)
        for i,v in zip(ctx,vals): inp2[i]=v
        lo2 = m(torch.tensor([inp2])).logits[0]
    for p in pos:
        pr = lo[p].argmax().item(); hit += pr==ids[p]; uhit += top==ids[p]; n+=1
        shuf_same += pr==lo2[p].argmax().item()
        nll += torch.nn.functional.cross_entropy(lo[p][None], torch.tensor([ids[p]])).item()
print(f"[MASK]-only acc {hit/n:.3f}  nll {nll/n:.3f}  most-frequent-token acc {uhit/n:.3f}  same argmax with shuffled context {shuf_same/n:.3f}  n={n}")
