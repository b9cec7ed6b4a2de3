"""Reward functions, their composition, and advantage estimators."""
