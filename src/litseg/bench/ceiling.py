"""The FLOP/s ceiling a model's efficiency is measured against, per device and dtype.

One matmul shape is not a ceiling: on a 2-core Zen CPU a 2048^2 fp32 matmul (MKL) reached
less than the default U-Net's oneDNN convolutions did, so "efficiency" read 1.26. The ceiling
here is the best FLOP/s over several GEMMs, each run where the model's work runs:

- square matmuls (1024..4096 on a CPU, 4096..16384 on a GPU) through ``torch.mm`` (BLAS);
- the im2col GEMMs of the model's own heaviest convolutions, through ``torch.mm``;
- the same GEMMs as 1x1 convolutions in the run's memory layout, through the convolution
  library (oneDNN, cuDNN), where no algorithm can skip FLOPs.

The model's heaviest convolutions are also timed as the model runs them (their FLOPs counted
as flop_counter counts them); they are not part of the ceiling, but when a ratio still exceeds
1 they show why: a convolution that beats every GEMM does fewer FLOPs than counted (Winograd,
FFT) or reuses its input across kernel taps better than a GEMM can.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from litseg.bench.measure import rate


@dataclass(frozen=True)
class Probe:
    """One timed kernel: its name, its FLOPs per call, and a maker that allocates its
    tensors and returns the call (tensors live only while the probe is timed)."""

    name: str
    flops: float
    make: Callable[[], Callable[[], object]]


@dataclass(frozen=True)
class ConvShape:
    """A convolution as the model ran it: input (N, C, H, W), weight (K, C, kh, kw), stride,
    padding, dilation, and its output size."""

    batch: int
    in_ch: int
    height: int
    width: int
    out_ch: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N) of the convolution as one im2col GEMM."""
        kh, kw = self.kernel
        return self.batch * self.out_hw[0] * self.out_hw[1], self.in_ch * kh * kw, self.out_ch

    @property
    def flops(self) -> float:
        m, k, n = self.gemm
        return 2.0 * m * k * n


def square_sizes(device: str) -> tuple[int, ...]:
    """Square matmul sizes worth trying: small ones cannot fill a data-centre GPU."""
    return (4096, 8192, 16384) if torch.device(device).type == "cuda" else (1024, 2048, 4096)


def heaviest_convs(net: nn.Module, images: torch.Tensor, top: int = 3) -> list[ConvShape]:
    """The ``top`` distinct ungrouped Conv2d shapes with the most FLOPs in one forward pass."""
    seen: dict[ConvShape, None] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
            n, c, h, w = args[0].shape
            pad = module.padding if isinstance(module.padding, tuple) else (0, 0)
            if module.padding == "same":  # the output keeps the input size
                dk = zip(module.dilation, module.kernel_size, strict=True)
                pad = tuple(d * (k - 1) // 2 for d, k in dk)
            shape = ConvShape(
                n, c, h, w, module.out_channels, tuple(module.kernel_size), tuple(module.stride),
                tuple(pad), tuple(module.dilation), tuple(output.shape[-2:]),
            )  # fmt: skip
            seen[shape] = None

    training = net.training
    hook = nn.modules.module.register_module_forward_hook(record)
    try:
        with torch.no_grad():
            net.eval()(images)  # eval: batch norm's running statistics stay as they were
    finally:
        hook.remove()
        net.train(training)
    return sorted(seen, key=lambda s: s.flops, reverse=True)[:top]


def gemm_probes(
    device: str,
    dtype: torch.dtype,
    convs: list[ConvShape],
    channels_last: bool,
    sizes: tuple[int, ...] | None = None,
) -> list[Probe]:
    """Square matmuls, and each convolution's GEMM through BLAS and as a 1x1 convolution."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def mm(m: int, k: int, n: int) -> Callable[[], object]:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        return lambda: torch.mm(a, b)

    def conv1x1(s: ConvShape) -> Callable[[], object]:
        m, k, n = s.gemm
        x = torch.randn(s.batch, k, *s.out_hw, device=device, dtype=dtype)
        w = torch.randn(n, k, 1, 1, device=device, dtype=dtype)
        x, w = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
        return lambda: F.conv2d(x, w)

    probes = [
        Probe(f"mm {n}x{n}x{n}", 2.0 * n**3, lambda n=n: mm(n, n, n))
        for n in sizes or square_sizes(device)
    ]
    for s in convs:
        m, k, n = s.gemm
        what = (
            f"{s.in_ch}->{s.out_ch} {s.kernel[0]}x{s.kernel[1]} conv at {s.out_hw[0]}x{s.out_hw[1]}"
        )
        probes.append(Probe(f"mm {m}x{k}x{n} (im2col of {what})", s.flops, lambda s=s: mm(*s.gemm)))
        layout = "NHWC" if channels_last else "NCHW"
        probes.append(
            Probe(
                f"1x1 conv {layout} {m}x{k}x{n} (GEMM of {what})", s.flops, lambda s=s: conv1x1(s)
            )
        )
    return probes


def conv_probes(
    device: str, dtype: torch.dtype, convs: list[ConvShape], channels_last: bool
) -> list[Probe]:
    """The model's heaviest convolutions as it runs them, FLOPs counted as flop_counter does."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def conv(s: ConvShape) -> Callable[[], object]:
        x = torch.randn(s.batch, s.in_ch, s.height, s.width, device=device, dtype=dtype)
        w = torch.randn(s.out_ch, s.in_ch, *s.kernel, device=device, dtype=dtype)
        x, w = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
        return lambda: F.conv2d(x, w, None, s.stride, s.padding, s.dilation)

    layout = "NHWC" if channels_last else "NCHW"
    return [
        Probe(
            f"{s.in_ch}->{s.out_ch} {s.kernel[0]}x{s.kernel[1]} conv {layout} at "
            f"{s.height}x{s.width}, batch {s.batch}",
            s.flops,
            lambda s=s: conv(s),
        )
        for s in convs
    ]


@dataclass
class Ceiling:
    """Best GEMM FLOP/s on one device and dtype, with every probe's rate behind it."""

    device: str
    dtype: torch.dtype
    rates: dict[str, float] = field(default_factory=dict)
    conv_rates: dict[str, float] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict, repr=False)

    @property
    def best(self) -> str:
        """The probe that set the ceiling."""
        return max(self.rates, key=self.rates.__getitem__)

    @property
    def flops(self) -> float:
        """The ceiling, FLOP/s."""
        return self.rates[self.best]

    def retime(self, seconds: float, where: str) -> float:
        """Time the best probe again (once per measurement round, beside the model), keep
        the higher rate, and return the ceiling."""
        probe = self.probes[self.best]
        self.rates[probe.name] = max(
            self.rates[probe.name], rate(probe.make(), probe.flops, seconds, where)
        )
        return self.flops

    def describe(self) -> str:
        """One line: the ceiling, where, and the probe that set it."""
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"ceiling on {self.device}, {dtype}: {self.flops / 1e9:.1f} GFLOP/s "
            f"({self.best}; best of {len(self.rates)} GEMMs)"
        )

    def table(self) -> list[str]:
        """Markdown rows of every probe's GFLOP/s (GEMMs, then the model's own convs)."""
        rows = ["| probe | GFLOP/s | in the ceiling |", "| --- | --- | --- |"]
        rows += [f"| {name} | {r / 1e9:.1f} | yes |" for name, r in self.rates.items()]
        rows += [
            f"| {name} | {r / 1e9:.1f} | no (as the model runs it) |"
            for name, r in self.conv_rates.items()
        ]
        return rows


def measure_ceiling(
    device: str,
    dtype: torch.dtype,
    seconds: float,
    label: str,
    net: nn.Module | None = None,
    images: torch.Tensor | None = None,
    channels_last: bool = False,
    sizes: tuple[int, ...] | None = None,
) -> Ceiling:
    """The GEMM ceiling of ``device`` in ``dtype``, named ``label`` in reports: every probe
    timed for ``seconds`` (at least one call after a warm-up). With ``net`` and ``images`` the
    model's heaviest convolutions add their GEMM shapes and are timed as run. ``sizes``
    replaces the square matmul sizes (tests keep them small)."""
    convs = heaviest_convs(net, images) if net is not None and images is not None else []
    ceiling = Ceiling(label, dtype)
    for probe in gemm_probes(device, dtype, convs, channels_last, sizes):
        ceiling.probes[probe.name] = probe
        ceiling.rates[probe.name] = rate(probe.make(), probe.flops, seconds, device)
    for probe in conv_probes(device, dtype, convs, channels_last):
        ceiling.conv_rates[probe.name] = rate(probe.make(), probe.flops, seconds, device)
    return ceiling


def explain_ratio(key: str, ratio: float, ceiling: Ceiling) -> str | None:
    """Why ``ratio`` (a model's FLOP/s over ``ceiling``) reads above 1; None when it does not.

    A ratio to a ceiling above 1 is a statement about the ceiling or the FLOP count, never an
    efficiency, so the report prints this line beside it.
    """
    if ratio <= 1:
        return None
    head = f"{key} = {ratio:.3f} > 1 on {ceiling.device}: "
    fastest = max(ceiling.conv_rates, key=ceiling.conv_rates.__getitem__, default=None)
    if fastest is not None and ceiling.conv_rates[fastest] > ceiling.flops:
        return head + (
            f"the model's own {fastest} ran at {ceiling.conv_rates[fastest] / 1e9:.1f} GFLOP/s "
            f"of counted FLOPs, above every GEMM ({ceiling.flops / 1e9:.1f}): the convolution "
            "library does fewer FLOPs than torch.utils.flop_counter counts (Winograd or FFT "
            "algorithms) or reuses each input across the kernel taps better than a GEMM can, "
            "so the ratio compares speed with the GEMM ceiling and is not a fraction of a peak"
        )
    return head + (
        "no probed kernel (GEMMs, the model's heaviest forward convolutions) beat the GEMM "
        "ceiling, so the excess comes from kernels not probed (the backward pass) or from the "
        "load changing between the timings on a shared machine: rerun on an idle one"
    )
