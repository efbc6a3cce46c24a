"""The exceptions litseg raises for bad input, so entry points can report them cleanly."""


class LitsegError(Exception):
    """A problem with the user's input (config, files) rather than a bug in litseg."""


class ConfigError(LitsegError):
    """A configuration value or combination that litseg cannot run with."""


class DataError(LitsegError):
    """A dataset file or folder that is missing, unreadable or inconsistent."""


class RunDirExistsError(LitsegError):
    """A run directory that already holds a run and must not be overwritten."""
