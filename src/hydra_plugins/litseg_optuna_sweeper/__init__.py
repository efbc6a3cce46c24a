"""litseg's Hydra sweeper on Optuna's ask-and-tell API: ``hydra/sweeper=litseg_optuna``.

Hydra finds it in the ``hydra_plugins`` namespace package; ``hparams_search=optuna`` selects
it. See :mod:`hydra_plugins.litseg_optuna_sweeper._impl` for what it does.
"""
