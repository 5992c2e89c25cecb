"""Training: subject dataset, losses, error map, trainer, checkpoints."""
