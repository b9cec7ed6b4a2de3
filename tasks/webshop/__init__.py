"""Web shop tasks: the generated catalog, goals, the original WebShop files, and the expert."""
