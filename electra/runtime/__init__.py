"""What every training run stands on: files written atomically, run checkpoints, torch.distributed, stop
signals, the device's precision and optimiser kernel, metrics.jsonl and the TensorBoard / W&B loggers.
Nothing here knows about ELECTRA's objective."""
