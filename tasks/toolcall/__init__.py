"""Tasks of the `toolcall` environment (BFCL data) and the leaderboard's answer matching, which the environment and
the rewards both use."""
