"""`swe`: fix a real Python repository until its hidden tests pass."""
