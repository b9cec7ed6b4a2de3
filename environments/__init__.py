"""Containerized multi-turn environments behind one step API."""
