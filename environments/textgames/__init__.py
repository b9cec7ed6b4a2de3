"""What the text-game environments (`textworld`, `alfworld`) share: reading commands, the game cache, the base class."""
