"""Training: pure train/eval steps, length-bucketed batching, the epoch loop and checkpoints."""
