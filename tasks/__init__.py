"""Task specifications, task suites (data files) and task generators."""

from gymbox.tasks.spec import Limits, TaskSpec
from gymbox.tasks.suites import Suite, list_suites, load_suite

__all__ = ["Limits", "Suite", "TaskSpec", "list_suites", "load_suite"]
