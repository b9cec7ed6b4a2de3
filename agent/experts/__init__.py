"""Experts: policies that play a task's own solution (ground truth, walkthrough, plan, reference script, gold patch)."""

from gymbox.agent.experts.policy import ExpertPolicy
from gymbox.agent.experts.table import EXPERTS, NoDemonstration, expert_for, missing_demonstration

__all__ = ["EXPERTS", "ExpertPolicy", "NoDemonstration", "expert_for", "missing_demonstration"]
