"""Pretrained weights: from a local file (``model.weights_path``) or a download when reachable.

No download happens unless ``model.pretrained`` asks for one. When the source cannot be reached,
the error says which URL was tried and how to supply the file instead, so an offline machine
fails with one clear line rather than a network traceback.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from litseg.errors import ConfigError

__all__ = ["StateDict", "download_or_explain", "load_into", "read_state_dict"]

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | Path, key: str = "model.weights_path") -> StateDict:
    """A state dict from a ``.safetensors`` or ``torch.save`` file (loaded weights_only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file; expected a .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file: name it
        raise ConfigError(f"{key}={path}: cannot read weights ({err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ConfigError(f"{key}={path}: expected a state dict, got {type(state).__name__}")
    return state


def download_or_explain(fetch: Callable[[], object], source: str, what: str) -> object:
    """Run ``fetch`` (a download); on a network failure raise a ConfigError saying what to do."""
    try:
        return fetch()
    except (OSError, RuntimeError, ValueError, ConnectionError) as err:
        raise ConfigError(
            f"model.pretrained: could not fetch {what} from {source} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Download that file on a machine "
            f"with network access and pass model.weights_path=/path/to/file, or set "
            f"model.pretrained=false."
        ) from err


def load_into(module: torch.nn.Module, state: StateDict, what: str) -> None:
    """Load ``state`` into ``module``; every parameter of ``module`` must be covered."""
    missing = sorted(set(module.state_dict()) - set(state))
    if missing:
        raise ConfigError(
            f"model.weights_path does not fit the {what}: {len(missing)} missing keys "
            f"(e.g. {', '.join(missing[:5])})"
        )
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ConfigError(f"model.weights_path does not fit the {what}: {err}") from err
