"""The `echo` reference environment."""
