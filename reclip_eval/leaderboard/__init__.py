"""Leaderboards: the paper's tables with measured rows beside them, rebuilt from results JSON (a pure function)."""
