"""The errors a user can cause. The CLIs print them as one sentence and exit with code 2."""


class JganError(Exception):
    """Base class: the message is one sentence naming the problem and the fix."""


class DataError(JganError):
    """A dataset folder or LMDB that cannot be used."""


class ConfigError(JganError):
    """A bad flag, configuration key or value."""


class CheckpointError(JganError):
    """A checkpoint that is missing, corrupt, or of another architecture."""
