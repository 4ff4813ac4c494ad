"""Pre-training: the replaced-token-detection objective and the loop that trains it.

- keyed_random.py: randomness as a function of (seed, example key, position), and every salt
- masking.py: which positions are selected and what the generator sees (uniform, whole words, spans)
- schedule.py: what a step's index decides: learning rate, phase, dropout seed
- objective.py: ``ElectraPretrainer``, the generator + discriminator and the default ELECTRA step
- replaced_tokens.py: the generator's losses at the selected slots, sampling, the replaced labels
- variants.py, algorithms.py: the paper's ablations (networks, sharing) and training algorithms (phases)
- stats.py: what one step counts, and the logged means
- flops.py: FLOPs per step, budgets
- detection.py, yardstick.py, health.py: progress you can see (AUC, the yardstick, the health checks)
- local_init.py: the small-budget recipe's locality-biased attention start
- setup.py: ``Run``, built once by ``build_run``; step.py: one optimiser step (``train_step(run, mb)``)
- export.py: a run to transformers folders, ``--init`` from them, fine-tuning sources
- pretrain.py: the loop, top to bottom; evaluation.py: held-out evaluation
- plots.py: `electra plot`; inspect_tokens.py: `electra inspect`
"""
