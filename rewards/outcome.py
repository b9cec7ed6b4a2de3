"""The outcome reward: how the episode ended, read from the environment's own signals."""

from __future__ import annotations

from gymbox.environments.records import Trajectory

# Keys an environment uses to report how well the episode ended, most specific first: `success` (1/0), a
# `score`, then the fraction of checks or tests that pass (the shell environment reports `checks_passed`).
OUTCOME_KEYS = ("success", "score", "checks_passed")


def success(trajectory: Trajectory) -> float | None:
    """1.0 or 0.0 from the environment's `success` signal; an episode cut short without one counts as 0.0.

    None when the environment reports no success at all (a task with no notion of winning).
    """
    if "success" in trajectory.signals:
        return float(trajectory.signals["success"] >= 1.0)
    # Timeouts and running out of turns never reach the step that reports success: the episode failed.
    return 0.0 if trajectory.truncated else None


def outcome(trajectory: Trajectory) -> float | None:
    """The episode's outcome: `success`, else `score`, else tests passed / total, from the last turn's signals,
    else the environment's own reward.

    An episode cut short (timeout, out of turns, context) with none of these counts as 0.0: it never submitted.
    None when the environment reports no outcome (the reward is not applicable to the task).
    """
    signals = trajectory.signals
    for key in OUTCOME_KEYS:
        if key in signals:
            return float(signals[key])
    if "tests_total" in signals and signals["tests_total"] > 0:
        return float(signals.get("tests_passed", 0.0)) / float(signals["tests_total"])
    env = trajectory.rewards.get("env")
    if env is not None:
        return float(env)
    return 0.0 if trajectory.truncated else None


def signal(trajectory: Trajectory, key: str) -> float | None:
    """One named signal of the last turn, as the environment reported it (swe's `outcome_level`, `f2p_passed`).

    An episode cut short without it counts as 0.0, as for the outcome; None when the environment does not report it.
    """
    if key in trajectory.signals:
        return float(trajectory.signals[key])
    return 0.0 if trajectory.truncated else None
