"""The base install (no extras) runs what the README shows; a feature whose extra is missing
says in one line which extra to install.

The commands run as real subprocesses with a Python that cannot import the extras' modules:
a ``sitecustomize`` on PYTHONPATH hides them from every import finder, so ``import monai``
fails and ``importlib.util.find_spec("monai")`` is None, as when they are not installed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from test_predict import train_checkpoint

from litseg.errors import ConfigError
from litseg.extras import EXTRAS, require_extra
from tests.helpers import ROOT, TINY

EXTRA_MODULES = "monai,onnx,onnxruntime,onnxscript"
HIDE_MODULES = '''
import os
import sys

HIDDEN = set(os.environ["LITSEG_TEST_HIDE"].split(","))


class _Without:
    """An import finder that finds nothing of the hidden top-level modules."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Without(f) for f in sys.meta_path]
'''


def run_without(
    tmp: Path, hidden: str, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``python <script> args...`` from the repository root with ``hidden`` not importable."""
    site = tmp / "hide_modules"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE_MODULES)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "LITSEG_TEST_HIDE": hidden,
        "HYDRA_FULL_ERROR": "0",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_hiding_python_cannot_import_the_extras(tmp_path: Path) -> None:
    code = "import importlib.util as u; print([u.find_spec(m) for m in ('monai', 'onnx')])"
    site = tmp_path / "hide_modules"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_MODULES)
    env = {**os.environ, "PYTHONPATH": str(site), "LITSEG_TEST_HIDE": EXTRA_MODULES}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[None, None]", out.stderr


def test_pyproject_extras_hold_what_litseg_imports_for_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    base = " ".join(project["dependencies"])

    def names(requirements: list[str]) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements}

    for extra, modules in EXTRAS.items():
        assert set(modules) <= names(extras[extra]), extra
        assert set(modules) <= names(extras["dev"]), f"dev lacks the {extra} extra"
        assert not any(m in base for m in modules), f"{extra} belongs in an extra"


def test_require_extra_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, *args):
        if name == "onnxscript":
            raise ModuleNotFoundError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigError) as err:
        require_extra("export", "format=onnx", "format=torchscript")
    assert str(err.value) == (
        "format=onnx needs onnxscript, which is not installed: "
        "pip install 'litseg[export]' (or format=torchscript)"
    )


@pytest.mark.slow
def test_default_training_runs_without_any_extra(tmp_path: Path) -> None:
    run = run_without(
        tmp_path,
        EXTRA_MODULES,
        "train.py",
        *TINY,
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]
    assert "test/mIoU" in metrics
    assert not any("HD95" in k for k in metrics)  # off by default


@pytest.mark.slow
def test_boundary_metric_without_monai_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    run = run_without(
        tmp_path,
        "monai",
        "train.py",
        *TINY,
        "module.boundary_metric=true",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [
        "litseg: error: module.boundary_metric=true needs monai, which is not installed: "
        "pip install 'litseg[metrics]' (or module.boundary_metric=false)"
    ]
    assert "error" not in run.stdout.lower()
    assert not (tmp_path / "logs" / "train").exists()  # a failed command leaves no run folder


@pytest.mark.slow
def test_onnx_export_without_onnx_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    ckpt = train_checkpoint(tmp_path / "train", "loss=ce")
    run = run_without(
        tmp_path,
        EXTRA_MODULES,
        "scripts/export.py",
        f"ckpt_path={ckpt}",
        "format=onnx",
        f"output={tmp_path / 'model.onnx'}",
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [
        "litseg: error: format=onnx needs onnx, onnxscript, onnxruntime, which are not "
        "installed: pip install 'litseg[export]' (or format=torchscript)"
    ]
    assert not (tmp_path / "model.onnx").exists()
