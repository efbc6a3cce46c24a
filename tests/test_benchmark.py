"""scripts/benchmark.py: every key written from real measurements, and the GPU precision ladder
run through the real Trainer on the CPU (bf16 on a tiny model only: bf16 is slow on this CPU).

These tests check that the benchmark measures what it says, not how fast anything is: the
figures themselves live in docs/benchmarks.md.
"""

import json
import math
import re
import sys

import pytest
import torch

from tests.conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "scripts"))
import benchmark  # noqa: E402

KEYS = {
    "lightning_overhead_ratio",
    "compute_efficiency",
    "loader_headroom",
    "slide_vs_monai",
    "onnx_vs_eager",
    "unet_vs_smp",
    "peak_rss_gb",
}


@pytest.mark.slow
def test_quick_benchmark_writes_every_key_from_equal_outputs(tmp_path) -> None:
    out = tmp_path / "b.json"
    proc = run_cli("scripts/benchmark.py", "--quick", "--json", str(out))
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


def test_cuda_asked_without_a_gpu_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_cli("scripts/benchmark.py", "--device", "cuda")
    assert proc.returncode != 0
    assert "--device cuda" in proc.stderr and "no CUDA device" in proc.stderr


def test_peak_rss_is_the_runs_own_not_this_process(tmp_path) -> None:
    """The child of a big process starts with the parent's peak RSS; the launcher avoids it."""
    import resource

    own_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    assert own_gb > 0.5  # torch, lightning and the benchmark are loaded here
    allocate = "import sys; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    run = benchmark.launch_measuring_rss([sys.executable, "-c", allocate], tmp_path)
    assert 0.29 < benchmark.peak_rss_gb(run, tmp_path) < 0.4


def test_a_failed_run_is_reported_with_its_log(tmp_path) -> None:
    run = benchmark.launch_measuring_rss([sys.executable, "-c", "print('boom'); exit(3)"], tmp_path)
    with pytest.raises(RuntimeError, match=r"exited 3[\s\S]*boom"):
        benchmark.peak_rss_gb(run, tmp_path)


@pytest.mark.slow
def test_precision_ladder_trains_every_variant(make_cfg) -> None:
    cfg = make_cfg("logger=csv")
    batches = benchmark.real_batches(cfg, n_batches=2, batch_size=4)
    conv_outputs = set()

    def record(module, args, output) -> None:
        if isinstance(module, torch.nn.Conv2d):
            nhwc = output.is_contiguous(memory_format=torch.channels_last)
            conv_outputs.add((output.dtype, nhwc and not output.is_contiguous()))

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        results = benchmark.precision_ladder(
            cfg,
            batches,
            steps=2,
            pairs=2,
            device="cpu",
            flops_per_image=1e8,
            matmul_seconds=0.05,
            compile_kwargs={"backend": "eager"},  # no C++ toolchain needed
        )
    finally:
        hook.remove()
    names = [name for name, *_ in benchmark.LADDER]
    assert set(results) == {
        f"{name}_{what}" for name in names for what in ("images_per_s", "speedup", "mfu")
    }
    assert results["fp32_speedup"] == 1.0
    assert all(math.isfinite(v) and v > 0 for v in results.values())
    # the variants really differ: fp32 NCHW, bf16 NCHW and bf16 NHWC convolutions all ran
    assert conv_outputs == {
        (torch.float32, False),
        (torch.bfloat16, False),
        (torch.bfloat16, True),
    }


def test_model_table_gives_both_layouts(tmp_path) -> None:
    out = tmp_path / "models.md"
    args = ["--only", "unet", "--size", "64", "--iters", "1", "--markdown", str(out)]
    proc = run_cli("scripts/benchmark_models.py", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert (
        "forward img/s NCHW | forward img/s NHWC | train img/s NCHW | train img/s NHWC" in lines[0]
    )
    rows = [line for line in lines if line.startswith("| unet")]
    assert len(rows) == 2  # unet and unet (base_width=32)
    for row in rows:
        speeds = [float(cell) for cell in row.strip("|").split("|")[-4:]]
        assert all(v > 0 for v in speeds)
