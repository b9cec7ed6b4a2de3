"""Policies, chat formatting with token ids and loss masks, tool-call parsers, and the GRPO learner."""
