"""What the CPU can do: decides run-time levers (bf16) and names the machine beside figures."""

import functools
import platform
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


@functools.cache
def cpu_model() -> str:
    """The CPU's model name with its family/model numbers, e.g. ``AMD EPYC (family 25,
    model 17)`` (a virtual machine's name alone may not say which generation it is)."""
    name = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX).

    Without it bf16 autocast is emulated and was measured ~45x slower than fp32, so it is a
    lever only where this is true.
    """
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def cpu_precision() -> str:
    """Lightning precision for a CPU run: ``bf16-mixed`` where bf16 is native, else ``32-true``."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def cpu_label() -> str:
    """One line for a results table: cores, model, AVX-512 and native bf16."""
    facts = cpu_summary()
    extras = [f for f, on in (("AVX-512", facts["avx512"]), ("bf16", facts["native_bf16"])) if on]
    return f"{facts['cores']}-core {facts['cpu']}" + (f", {' + '.join(extras)}" if extras else "")


def cpu_summary() -> dict[str, object]:
    """The CPU facts a recorded figure carries: model, cores, AVX-512 and native bf16."""
    import os

    flags = cpu_flags()
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu": cpu_model(),
        "cores": len(affinity(0)) if affinity else os.cpu_count(),
        "avx512": "avx512f" in flags,
        "native_bf16": cpu_has_native_bf16(),
    }
