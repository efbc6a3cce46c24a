"""Plan a training recipe from the data: fingerprint the train split, write an experiment.

    python scripts/plan.py data=membrane
    python scripts/plan.py data=folder data.root=/path/to/data data.num_classes=3 model=smp
    python scripts/plan.py data=camvid out=/tmp/experiment/my_camvid.yaml steps=2000

Takes the overrides of ``python train.py`` (conf/train.yaml is composed with them), plus
``out=PATH`` (default conf/experiment/plan_<dataset>.yaml, with _2, _3... when taken; an
existing out= file is refused, never overwritten) and ``steps=N`` (the run's optimizer-step
budget, default 1000 on a CPU, 10000 on a GPU). Reads the train split once, prints its
fingerprint and one line of reasoning per choice (normalisation, loss and class weights, crop,
batch size from real trial steps on this machine's training device, learning rate and
schedule, epochs, augmentation), writes the experiment and prints the command that trains it.
Exits 2 on a config error, 1 on data that cannot be trained as configured.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

from hydra.errors import HydraException  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from litseg import planning  # noqa: E402
from litseg.builders import build_datamodule  # noqa: E402
from litseg.config import compose  # noqa: E402
from litseg.errors import ConfigError, DataError  # noqa: E402
from litseg.runtime.entry import user_error  # noqa: E402

CONF = ROOT / "conf"


def _own_args(argv: list[str]) -> tuple[Path | None, int | None, list[str]]:
    """out=PATH and steps=N taken out of the Hydra overrides."""
    out = steps = None
    rest = []
    for arg in argv:
        if arg.startswith("out="):
            out = Path(arg[4:]).expanduser()
        elif arg.startswith("steps="):
            try:
                steps = int(arg[6:])
            except ValueError:
                steps = -1
            if steps < 1:
                raise ConfigError(f"{arg}: expected an integer >= 1 (optimizer steps of the run)")
        else:
            rest.append(arg)
    return out, steps, rest


def _train_command(path: Path) -> str:
    """How train.py finds the written experiment."""
    path = path.resolve()
    if path.parent == (CONF / "experiment").resolve():
        return f"python train.py experiment={path.stem}"
    if path.parent.name == "experiment":
        return f"python train.py --config-dir {path.parent.parent} experiment={path.stem}"
    return (
        f"python train.py experiment=<name> after moving {path} into conf/experiment/ "
        "(or into <dir>/experiment/ with --config-dir <dir>)"
    )


def plan(argv: list[str]) -> int:
    """Compose, fingerprint, plan, write; returns the exit status."""
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    out, steps, overrides = _own_args(argv)
    if out is not None:
        planning.check_new(out)  # before the data is read; write_new checks again
    planning.single_values(overrides)
    cfg = compose(overrides, return_hydra_config=True, conf_dir=CONF)
    choices = dict(cfg.hydra.runtime.choices)
    task_overrides = list(cfg.hydra.overrides.task)
    with open_dict(cfg):
        del cfg.hydra
        cfg.data.check = "none"  # the fingerprint's scan collects the problems instead
    given, values = planning.given_overrides(task_overrides, choices)
    name = f"plan_{planning.dataset_name(cfg, choices['data'])}"
    datamodule = build_datamodule(cfg)
    fp = planning.fingerprint(datamodule, choices["data"])
    print("Fingerprint (train split):")
    print("\n".join(f"  {line}" for line in fp.lines()))
    recipe, _ = planning.plan_recipe(cfg, fp, choices, given, values, steps)
    print("Choices:")
    for choice in recipe:
        shown = ", ".join(
            f"{k[1:]}={v}" if k.startswith("$") else f"{k}={v}" for k, v in choice.values.items()
        )
        reason = f"{shown}  <- {choice.reason}" if shown else choice.reason
        reason += f" [{choice.detail}]" if choice.detail else ""
        print(f"  {choice.what}: {reason}")
    path = out if out is not None else planning.default_path(CONF, name)
    text = planning.render(fp, recipe, choices, given, values, path.stem)
    planning.write_new(path, text)
    print(f"Wrote {path}")
    print(f"Train: {_train_command(path)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return plan(sys.argv[1:] if argv is None else argv)
    except Exception as exc:
        err = user_error(exc)  # a LitsegError, also when Hydra's instantiate wrapped it
        if err is None and not isinstance(exc, HydraException | OmegaConfBaseException):
            raise
        if isinstance(err, DataError):
            print(f"plan: refused: {err}", file=sys.stderr)
            return 1
        message = "; ".join(line.strip() for line in str(err or exc).splitlines() if line)
        print(f"plan: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
