"""Errors meant for people: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, ...); the message says how."""


class ConfigError(UserError):
    """A config file or override that does not match the schema."""


class DataError(UserError):
    """A data set that is missing, empty, unreadable or does not match the checkpoint."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, or not one of ours."""


class LaunchError(UserError):
    """A problem every torchrun process on a machine finds alike (more processes than GPUs):
    only its first process (``LOCAL_RANK`` 0) prints it, so the user reads it once."""
