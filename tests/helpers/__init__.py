"""Test helpers shared by the test modules (``from tests.helpers import TINY, run_cli``).

- :mod:`tests.helpers.configs`: the repository paths, the TINY overrides and
  :func:`compose_config`, a real composition of conf/ whose outputs go under a test folder.
- :mod:`tests.helpers.cli`: :func:`run_cli` and :func:`start_cli`, the repository's scripts
  run as a user runs them.
- :mod:`tests.helpers.apt`: :func:`apt_install` of the Debian packages a test needs, one
  installer at a time.

tests/conftest.py holds only fixtures and the environment; test modules import from here.
"""

from tests.helpers.cli import run_cli, start_cli
from tests.helpers.configs import CONF, ROOT, SHARED_DATA, TINY, compose_config, train_run

__all__ = [
    "CONF",
    "ROOT",
    "SHARED_DATA",
    "TINY",
    "compose_config",
    "run_cli",
    "start_cli",
    "train_run",
]
