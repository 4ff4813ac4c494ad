"""Pre-training: the replaced-token-detection objective and the loop that trains it.

The default path of one batch, in six files (docs/architecture.md): pretrain.py (the loop) -> batches.py (stream
-> windows -> mask) -> step.py (one optimiser step, and what a step's index decides) -> objective.py (generate ->
detect -> loss) -> electra/model.py -> stats.py (what a step counts).

- batches.py: keyed randomness and every salt, the training stream, windows, uniform masking, ``MaskedBatch``
- word_masking.py: whole-word and span selection (``train.masking``)
- step.py: ``train_step(run, mb)``, and the schedules: learning rate, phase, dropout seed
- objective.py: ``ElectraPretrainer``, the generator + discriminator, sampling, and every objective's step
- variants.py, algorithms.py: the ablations' networks and sharing, and the training algorithms (phases)
- stats.py: what one step counts, the logged means, the detection AUC and margin
- flops.py: FLOPs per step, budgets
- yardstick.py, health.py, evaluation.py: monitors (the held-out yardstick, the health checks, held-out
  evaluation)
- local_init.py: the small-budget recipe's locality-biased attention start
- setup.py: ``Run``, built once by ``build_run``
- export.py: a run to transformers folders, ``--init`` from them, fine-tuning sources
- plots.py: `electra plot`; inspect_tokens.py: `electra inspect`
"""
