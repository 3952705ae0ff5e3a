"""Evaluation: task specs (tasks/*.yaml), pure metric functions, feature extraction, the results JSON."""
