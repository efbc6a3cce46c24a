"""The repository's command-line scripts, each run as ``python scripts/<name>.py``.

A package only so that tests can call a script's functions (``from scripts import reproduce``,
with the repository root on the path as pytest's ``pythonpath`` sets it). Scripts never import
each other: what two of them share lives in ``src/litseg``.
"""
