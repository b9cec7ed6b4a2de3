"""`gymbox view`: a local web viewer for trajectory stores, training runs and evaluation folders."""
