"""The exceptions litseg raises for bad input, so entry points can report them cleanly."""


class LitsegError(Exception):
    """A problem with the user's input (config, files) rather than a bug in litseg."""


class ConfigError(LitsegError):
    """A configuration value or combination that litseg cannot run with."""


class DataError(LitsegError):
    """A dataset file or folder that is missing, unreadable or inconsistent."""


class RunDirExistsError(LitsegError):
    """A run directory that already holds a run and must not be overwritten."""


class CheckpointWriteError(LitsegError):
    """A checkpoint could not be written (disk full, permission); earlier ones are intact."""


class RunStopped(Exception):  # noqa: N818 - a stop, not an error in the user's input
    """Training stopped before its end on purpose; ``status`` and ``exit_code`` say why."""

    status = "failed"
    exit_code = 1


class RunInterrupted(RunStopped):
    """A stop signal (SIGTERM, SIGINT, SIGUSR1) arrived; the current step was checkpointed."""

    status = "interrupted"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class TrainingDiverged(RunStopped):
    """The loss became non-finite; no non-finite state was kept as a checkpoint."""

    status = "diverged"
    exit_code = 3


class TrialPruned(RunStopped):
    """An Optuna sweep's pruner stopped this trial early: a normal outcome of a search."""

    status = "pruned"
    exit_code = 0
