"""Training: the epoch loop, LR schedules, early stopping, precision, and ``fit``."""
