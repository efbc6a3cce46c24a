"""Timing, images/s, FLOP counts and peak memory shared by every benchmark.

One training-step loop (:func:`train_rate`), one forward loop (:func:`forward_rate`), one
loader timer (:func:`loader_rate`) and one FLOP counter (:func:`count_flops`) serve the
``compare``, ``models`` and ``loader`` subcommands alike.
"""

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from litseg.bench import ROOT
from litseg.inference import logits_of

Batch = dict[str, torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so wall-clock times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def paired_median(a: Callable[[], float], b: Callable[[], float], pairs: int) -> float:
    """Median over ``pairs`` of a()/b(), run alternately so drifts hit both alike."""
    return statistics.median(a() / b() for _ in range(pairs))


def alternate(
    fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each function, run in turns after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def pairwise_speedup(ours: list[float], theirs: list[float]) -> float:
    """Median of theirs/ours over paired timings: how many times faster ours ran."""
    return statistics.median(t / o for o, t in zip(ours, theirs, strict=True))


def rate(
    fn: Callable[[], object], work: float, seconds: float, device: str = "cpu", least: int = 1
) -> float:
    """``work`` per call over seconds per call: ``fn`` warmed up once, then called until
    ``seconds`` have passed (at least ``least`` times)."""
    fn()
    synchronize(device)
    count, start = 0, time.perf_counter()
    while count < least or time.perf_counter() - start < seconds:
        fn()
        synchronize(device)
        count += 1
    return work * count / (time.perf_counter() - start)


def train_rate(
    net: nn.Module,
    loss_fn: Loss,
    batches: list[Batch],
    steps: int,
    device: str = "cpu",
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """Training images/s of a plain PyTorch loop: forward, loss on the main logits,
    backward and an optimizer step (AdamW unless one is given), cycling ``batches``;
    one warm-up step is left out. The reference that Lightning's overhead is measured
    against, and the train column of the model table."""
    opt = optimizer or torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()

    def step(batch: Batch) -> None:
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(logits_of(net, image), mask).backward()
        opt.step()

    step(batches[0])
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize(device)
    return steps * batches[0]["image"].shape[0] / (time.perf_counter() - start)


def forward_rate(net: nn.Module, images: torch.Tensor, steps: int, device: str = "cpu") -> float:
    """Eval-mode forward images/s without gradients, after one warm-up pass."""
    net.eval()
    images = images.to(device)
    with torch.no_grad():
        return rate(lambda: net(images), images.shape[0], 0.0, device, least=steps)


def loader_rate(loader: Iterable[Batch], batches: int) -> tuple[float, int]:
    """Images/s a data loader delivers over ``batches`` batches after the first (which pays
    for starting the workers), restarting the loader if it runs out; and the image count."""
    iterator = iter(loader)
    next(iterator)
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        images += batch["image"].shape[0]
    return images / (time.perf_counter() - start), images


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs ``fn`` runs, counted by torch.utils.flop_counter (a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def train_step_flops(net: nn.Module, loss_fn: Loss, batch: Batch) -> float:
    """FLOPs of one forward + backward pass over ``batch``."""
    device = next(net.parameters()).device
    image, mask = batch["image"].to(device), batch["mask"].to(device)
    flops = count_flops(lambda: loss_fn(logits_of(net, image), mask).backward())
    net.zero_grad(set_to_none=True)
    return flops


def forward_flops(net: nn.Module, size: int, channels: int = 3) -> float:
    """Eval-mode forward FLOPs of one ``channels`` x size x size image."""
    net.eval()
    image = torch.randn(1, channels, size, size, device=next(net.parameters()).device)
    with torch.no_grad():
        return count_flops(lambda: net(image))


def params_of(net: nn.Module) -> int:
    """Parameters of a network, trainable and frozen."""
    return sum(p.numel() for p in net.parameters())


# Runs a command and writes its peak RSS (KiB) to argv[1]. A process's peak RSS includes the
# memory of whatever it was forked from, so the training run must not be a child of this big
# benchmark process itself: this small launcher forks it instead.
RSS_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def launch_measuring_rss(command: list[str], folder: Path) -> subprocess.Popen:
    """Start ``command`` under the RSS launcher, output into ``folder``/run.log."""
    with (folder / "run.log").open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", RSS_LAUNCHER, str(folder / "maxrss"), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def peak_rss_gb(run: subprocess.Popen, folder: Path) -> float:
    """Peak resident memory (GB) of a launched run, once it has finished."""
    if run.wait() != 0:
        log = folder / "run.log"
        raise RuntimeError(
            f"{run.args[4:]} exited {run.returncode} ({log}):\n{log.read_text()[-2000:]}"
        )
    return int((folder / "maxrss").read_text()) / 1024**2  # KiB on Linux
