"""Scoring a trained checkpoint: metrics, plots, and the report evaluate.py writes."""
