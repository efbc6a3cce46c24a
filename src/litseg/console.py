"""A quiet console: litseg's own lines, other libraries' warnings and errors, nothing else.

Every entry point (train.py, eval.py, predict.py, scripts/export.py) calls
:func:`quiet_third_party_logs` once Hydra has configured logging. It

- drops INFO and DEBUG records of other libraries' loggers from the console (the run's log
  file keeps them): alembic's lines when MONAI or an Optuna sweep opens a study database,
  optuna's own stderr handler (switched off), onnxscript's rewriter
  lines on export, Lightning's tips and notes ("GPU available", "Trainer already configured
  with model summary callbacks", the litlogger / litmodels tips);
- ignores, by message, the warnings litseg has no way to act on and a user cannot act on
  either (see :data:`KNOWN_WARNINGS`). Any other warning is still shown.

``hydra.verbose=...`` leaves logging as Hydra configured it, and Python's ``-W`` options or
``PYTHONWARNINGS`` leave the warnings filters alone, so everything can still be seen.
"""

import logging
import sys
import warnings

# Loggers whose INFO lines are litseg's progress and results (hydra: the multirun job list).
OWN_LOGGERS = ("litseg", "__main__", "hydra", "hydra_plugins")
# A record carrying this attribute (``extra={SKIP_CONSOLE: True}``) goes to the log file only.
SKIP_CONSOLE = "litseg_skip_console"
# (message regex, category) of warnings that say nothing a litseg user can act on.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Lightning's pytree helper uses torch's deprecated LeafSpec (lightning 2.6, torch 2.10+)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # scripts/export.py format=torchscript: the format a user asked for is deprecated in torch
    (r"`torch\.jit\.\w+` is deprecated", FutureWarning),
    # DDP, once per metric: litseg's val/test metrics are torchmetrics states synchronised
    # before they are logged. train/loss's epoch mean stays each process's own: syncing it
    # every step (sync_dist=True) made gloo runs abort on a collective mismatch with
    # Lightning's lazily computed epoch metrics
    (r"It is recommended to use `self\.log\('(train|val|test)/", Warning),
    # Lightning on any machine with SLURM's client installed, outside a SLURM job: litseg's
    # SLURM route is hydra/launcher=submitit_slurm, whose jobs run under srun already
    (r"The `srun` command is available on your system but is not used", Warning),
)


def is_own(name: str) -> bool:
    """Whether a logger name belongs to litseg (or the entry point, or Hydra itself)."""
    return any(name == own or name.startswith(own + ".") for own in OWN_LOGGERS)


class ConsoleFilter(logging.Filter):
    """Lets through litseg's records at every level and other loggers' warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SKIP_CONSOLE, False):
            return False
        return record.levelno >= logging.WARNING or is_own(record.name)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def _hydra_verbose() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.initialized() and bool(HydraConfig.get().verbose)
    except Exception:  # no Hydra run: nothing asked for verbose logging
        return False


def quiet_third_party_logs() -> None:
    """Keep other libraries' INFO lines and known unactionable warnings off the console.

    Idempotent; call it after Hydra configured logging (inside the task function).
    """
    if not sys.warnoptions:
        for message, category in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
    if _hydra_verbose():
        return
    root = logging.getLogger()
    for handler in root.handlers:
        if _is_console(handler) and not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    # optuna prints through a stderr handler of its own: send its records to the root logger's
    # handlers instead (log file yes, console only from WARNING). Importers of optuna after
    # this call (litseg.optuna_trial) call this function again.
    if "optuna" in sys.modules:
        optuna_logging = sys.modules["optuna"].logging
        optuna_logging.disable_default_handler()
        optuna_logging.enable_propagation()
    # libraries that print through handlers of their own (Lightning, optuna) at level INFO
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or is_own(name):
            continue
        if logger.level != logging.NOTSET and logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


__all__ = ["KNOWN_WARNINGS", "SKIP_CONSOLE", "ConsoleFilter", "quiet_third_party_logs"]
