"""The `shell` environment: bash in a sandbox, graded by checker scripts."""
