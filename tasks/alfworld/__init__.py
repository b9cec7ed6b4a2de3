"""ALFWorld tasks: the suite, and the generator of solvable game folders from the rooms the alfworld package ships."""
