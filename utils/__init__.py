"""Shared utilities: typed config, errors, checkpoints, devices, seeding."""
