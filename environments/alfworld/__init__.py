"""ALFWorld text games: a generator of solvable game folders and a runtime that plays one."""
