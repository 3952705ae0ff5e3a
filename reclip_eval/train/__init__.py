"""The RECLIP trainer: recipes of stages, contrastive loss, optimizers and schedules, the training loop."""
