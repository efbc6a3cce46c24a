"""scripts/benchmark.py and litseg.bench: every subcommand run for real on the CPU with tiny
sizes, every key written from real measurements, the GEMM ceiling a real ceiling, and the
GPU precision ladder run through the real Trainer on the CPU (bf16 on a tiny model only).

These tests check that the benchmark measures what it says, not how fast anything is: the
figures themselves live in docs/benchmarks.md.
"""

import json
import math
import re
import sys
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from litseg.bench import ceiling as ceilings
from litseg.bench import compare, measure
from litseg.models.unet import UNet
from tests.helpers import TINY, run_cli

KEYS = {
    "lightning_overhead_ratio",
    "compute_efficiency",
    "loader_headroom",
    "slide_vs_monai",
    "onnx_vs_eager",
    "unet_vs_smp",
    "peak_rss_gb",
    "ceiling_gflops_fp32",
}


@pytest.mark.slow
def test_compare_writes_every_key_and_states_its_ceiling(tmp_path) -> None:
    out = tmp_path / "b.json"
    args = ["compare", "--quick", "--json", str(out), *TINY]
    proc = run_cli("scripts/benchmark.py", *args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results) == KEYS
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in results.values())
    # the speed ratios compare implementations that compute the same numbers
    slide_diff, onnx_diff = re.search(
        r"max \|litseg slide - MONAI\| = (\S+), max \|onnxruntime - PyTorch\| = (\S+)",
        proc.stdout,
    ).groups()
    assert float(slide_diff) <= 1e-5 and float(onnx_diff) <= 1e-4
    assert f"| peak_rss_gb | {results['peak_rss_gb']:.3f} |" in proc.stdout
    # the ceiling is stated for the device, and is the best of every GEMM probe printed
    from litseg.hardware import cpu_label

    line = re.search(r"ceiling on (.+), float32: (\S+) GFLOP/s \((.+); best of (\d+)", proc.stdout)
    assert line is not None, proc.stdout
    assert line[1].startswith(cpu_label())
    assert float(line[2]) == pytest.approx(results["ceiling_gflops_fp32"], abs=0.06)
    gemms = [float(v) for v in re.findall(r"^\| .+ \| (\S+) \| yes \|$", proc.stdout, re.M)]
    assert len(gemms) == int(line[4]) >= 3 + 2 * 3  # 3 squares, 3 convs via BLAS and 1x1
    assert max(gemms) == pytest.approx(float(line[2]), abs=0.06)
    # a ratio to the ceiling above 1 never stands unexplained
    note = "note: compute_efficiency = " in proc.stdout
    assert note == (results["compute_efficiency"] > 1)


def test_cuda_asked_without_a_gpu_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    for args in (["compare", "--device", "cuda"], ["--device", "cuda"]):  # the old form too
        proc = run_cli("scripts/benchmark.py", *args)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            "benchmark compare: error: --device cuda asked for, but torch sees no CUDA device"
        )


def test_a_config_mistake_is_one_line_naming_it() -> None:
    proc = run_cli("scripts/benchmark.py", "loader", "data=nosuchdata")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "benchmark loader: error: In 'train': Could not find 'data/nosuchdata'"
    ]


def test_peak_rss_is_the_runs_own_not_this_process(tmp_path) -> None:
    """The child of a big process starts with the parent's peak RSS; the launcher avoids it."""
    import resource

    own_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    assert own_gb > 0.5  # torch, lightning and the benchmark are loaded here
    allocate = "import sys; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    run = measure.launch_measuring_rss([sys.executable, "-c", allocate], tmp_path)
    assert 0.29 < measure.peak_rss_gb(run, tmp_path) < 0.4


def test_a_failed_run_is_reported_with_its_log(tmp_path) -> None:
    run = measure.launch_measuring_rss([sys.executable, "-c", "print('boom'); exit(3)"], tmp_path)
    with pytest.raises(RuntimeError, match=r"exited 3[\s\S]*boom"):
        measure.peak_rss_gb(run, tmp_path)


def test_conv_shapes_count_the_flops_flop_counter_counts() -> None:
    """The ceiling's conv-like GEMMs are the model's own convolutions, FLOPs as counted."""
    net = UNet(3, 4, depth=2, base_width=8)
    images = torch.randn(2, 3, 32, 32)
    net.train()
    shapes = ceilings.heaviest_convs(net, images, top=3)
    assert net.training  # batch norm left as it was
    assert len(shapes) == 3
    assert [s.flops for s in shapes] == sorted((s.flops for s in shapes), reverse=True)
    for s in shapes:
        x = torch.randn(s.batch, s.in_ch, s.height, s.width)
        w = torch.randn(s.out_ch, s.in_ch, *s.kernel)
        m, k, n = s.gemm
        a, b = torch.randn(m, k), torch.randn(k, n)
        counted = measure.count_flops(
            partial(F.conv2d, x, w, None, s.stride, s.padding, s.dilation)
        )
        assert s.flops == counted == measure.count_flops(partial(torch.mm, a, b))


def test_the_ceiling_is_the_best_of_every_gemm() -> None:
    net = UNet(3, 4, depth=2, base_width=8)
    images = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    c = ceilings.measure_ceiling(
        "cpu", torch.float32, 0.01, "this CPU", net, images, channels_last=True, sizes=(64, 128)
    )
    assert len(c.rates) == 2 + 2 * 3 and len(c.conv_rates) == 3
    assert all(r > 0 for r in [*c.rates.values(), *c.conv_rates.values()])
    assert c.flops == max(c.rates.values())
    assert sum("1x1 conv NHWC" in name for name in c.rates) == 3
    before = c.flops
    assert c.retime(0.01, "cpu") >= before
    assert c.describe().startswith(f"ceiling on this CPU, float32: {c.flops / 1e9:.1f} GFLOP/s")


def test_a_ratio_above_the_ceiling_says_why() -> None:
    c = ceilings.Ceiling("this CPU", torch.float32, rates={"mm 64x64x64": 100e9})
    assert ceilings.explain_ratio("compute_efficiency", 0.9, c) is None
    c.conv_rates["16->16 3x3 conv"] = 80e9
    load = ceilings.explain_ratio("compute_efficiency", 1.2, c)
    assert load.startswith("compute_efficiency = 1.200 > 1 on this CPU: ") and "load" in load
    c.conv_rates["16->16 3x3 conv"] = 130e9
    faster = ceilings.explain_ratio("compute_efficiency", 1.2, c)
    assert "16->16 3x3 conv ran at 130.0 GFLOP/s" in faster and "Winograd" in faster


@pytest.mark.slow
def test_precision_ladder_trains_every_variant(make_cfg) -> None:
    cfg = make_cfg("logger=csv")
    batches = compare.real_batches(cfg, n_batches=2, batch_size=4)
    ceiling = {
        dtype: ceilings.measure_ceiling("cpu", dtype, 0.01, "this CPU", sizes=(128,))
        for dtype in (torch.float32, torch.bfloat16)
    }
    conv_outputs = set()

    def record(module, args, output) -> None:
        if isinstance(module, torch.nn.Conv2d):
            nhwc = output.is_contiguous(memory_format=torch.channels_last)
            conv_outputs.add((output.dtype, nhwc and not output.is_contiguous()))

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        results = compare.precision_ladder(
            cfg,
            batches,
            steps=2,
            pairs=2,
            device="cpu",
            flops_per_image=1e8,
            ceilings=ceiling,
            compile_kwargs={"backend": "eager"},  # no C++ toolchain needed
        )
    finally:
        hook.remove()
    names = [name for name, *_ in compare.LADDER]
    assert set(results) == {
        f"{name}_{what}" for name in names for what in ("images_per_s", "speedup", "mfu")
    }
    assert results["fp32_speedup"] == 1.0
    assert all(math.isfinite(v) and v > 0 for v in results.values())
    assert results["fp32_mfu"] == pytest.approx(
        results["fp32_images_per_s"] * 1e8 / ceiling[torch.float32].flops
    )
    # the variants really differ: fp32 NCHW, bf16 NCHW and bf16 NHWC convolutions all ran
    assert conv_outputs == {
        (torch.float32, False),
        (torch.bfloat16, False),
        (torch.bfloat16, True),
    }


def test_models_table_gives_both_layouts(tmp_path) -> None:
    out = tmp_path / "models.md"
    args = ["--only", "unet", "--size", "32", "--batch", "2", "--iters", "1"]
    proc = run_cli("scripts/benchmark.py", "models", *args, "--markdown", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert (
        "forward img/s NCHW | forward img/s NHWC | train img/s NCHW | train img/s NHWC" in lines[0]
    )
    rows = [line for line in lines if line.startswith("| unet")]
    assert len(rows) == 2  # unet and unet (base_width=32)
    assert rows == [line for line in proc.stdout.splitlines() if line.startswith("| unet")]
    for row in rows:
        cells = row.strip("|").split("|")
        assert float(cells[2]) > 0 and float(cells[3]) > 0  # params (M), GFLOPs @256
        assert all(float(v) > 0 for v in cells[-4:])
    assert lines[-1].startswith("CPU: ") and "input 2x3x32x32, 1 timed iterations" in lines[-1]


def test_loader_compares_the_loader_with_training() -> None:
    proc = run_cli("scripts/benchmark.py", "loader", "--batches", "2", "--steps", "1", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert f"config: {' '.join(TINY)}" in out
    assert "batch: (8, 3, 64, 64), workers: 0, threads: " in out
    loader = float(re.search(r"loader: (\S+) images/s over 16 images", out)[1])
    train = float(re.search(r"model training: (\S+) images/s over 1 steps", out)[1])
    verdict = "keeps up with" if loader >= train else "is slower than (starves)"
    ratio = float(re.search(rf"the loader {re.escape(verdict)} training \((\S+)x\)", out)[1])
    assert ratio == pytest.approx(loader / train, rel=0.05, abs=0.1)  # of the rounded figures


def test_inference_tables_compare_equal_outputs() -> None:
    args = ["--size", "48", "80", "--window", "32", "--sw-batch", "4"]
    args += ["--batch", "1", "--onnx-size", "32", "32", "--repeats", "1", "--threads", "1"]
    proc = run_cli("scripts/benchmark.py", "inference", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "## Sliding window: one 48x80 image, window 32, overlap 0.25" in out
    assert "## Whole image: batches of 1 images 32x32" in out
    assert float(re.search(r"max \|litseg - MONAI\| = (\S+)", out)[1]) <= 1e-5
    assert float(re.search(r"max \|onnxruntime - PyTorch\| = (\S+)", out)[1]) <= 1e-4
    for name in ("litseg slide", "MONAI sliding_window_inference"):
        assert float(re.search(rf"\| {name} \| .* \| (\S+) \|$", out, re.M)[1]) > 0
    for name in (r"PyTorch eager \(litseg whole\)", "onnxruntime CPU"):
        assert float(re.search(rf"\| {name} \| .* \| (\S+) \|$", out, re.M)[1]) > 0
