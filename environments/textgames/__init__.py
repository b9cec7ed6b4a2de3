"""What the text-game environments (`textworld`, `alfworld`) share: reading commands and the base class."""
