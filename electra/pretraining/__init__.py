"""Pre-training: the replaced-token-detection objective and the loop that trains it.

- masking.py: which positions are selected and what the generator sees (keyed randomness; whole words, spans)
- objective.py: ``ElectraPretrainer``, the generator + discriminator and the default ELECTRA step
- variants.py, algorithms.py: the paper's ablations (networks, sharing) and training algorithms (phases)
- stats.py: what one step counts, and the logged means
- flops.py: FLOPs per step, budgets
- detection.py, yardstick.py, health.py: progress you can see (AUC, the yardstick, the health checks)
- local_init.py: the small-budget recipe's locality-biased attention start
- pretrain.py: set-up -> loop -> evaluate -> checkpoint; plots.py: `electra plot`; inspect_tokens.py: `electra inspect`
"""
