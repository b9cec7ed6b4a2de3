"""Bridges from gymbox to other training stacks (TRL)."""
