"""Model cards rendered from model_cards/NAME.yaml + a checkpoint's config/training record + results JSON."""
