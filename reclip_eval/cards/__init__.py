"""Model cards (a checkpoint's Hub README.md) rendered from a zoo entry (zoo/NAME.yaml) if the checkpoint is a named
model's, its config and training record, results JSON and the paper's tables."""
