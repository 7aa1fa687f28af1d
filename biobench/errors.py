"""Errors that reach the user: each names the problem and the fix."""


class BiobenchError(Exception):
    """Base class: the message is shown to the user as is, without a traceback being needed to act on it."""


class ConfigError(BiobenchError):
    """config.yaml asks for something that does not exist or has the wrong shape."""


class DatasetMissingError(BiobenchError):
    """A task's data is not where the manifest builder looks for it."""


class DatasetCorruptError(BiobenchError):
    """A task's data exists but is damaged: wrong checksum, truncated archive, unreadable image."""


class ModelLoadError(BiobenchError):
    """A backbone could not be built or its weights could not be loaded."""
