"""`toolcall`: function calling on the Berkeley Function Calling Leaderboard, single-turn and multi-turn."""
