"""The rollout harness, trajectory store, evaluation, replay and the `gymbox` command line."""
