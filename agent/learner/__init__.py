"""The GRPO learner: samples from trajectories, the clipped policy loss, updates, checkpoints, weight sync."""
