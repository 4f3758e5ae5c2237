"""Inference: ``predict_proba`` of the seed network on 10,000 x 784 test images (PyTorch: forward
and softmax under ``no_grad``). Also the machine's float32 matmul peak, the yardstick for GFLOP/s."""

import numpy as np
import pytest

from fastmlp import benchmarks as B

CONFIG = B.config(B.quick_from_env())


@pytest.mark.benchmark(group="inference")
@pytest.mark.parametrize("engine", B.ENGINES)
def test_inference(run_case, engine):
    run_case(B.inference_case(engine, rows=CONFIG["inference_rows"]))


@pytest.mark.benchmark(group="matmul-peak")
def test_matmul_peak_float32(benchmark):
    """np.matmul of two n x n float32 matrices (n = 2048; 512 in quick mode): GFLOP/s = 2 n^3 / t."""
    n = CONFIG["peak_n"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm-up
    benchmark.extra_info.update(n=n, flops=2.0 * n ** 3)
    benchmark.pedantic(np.matmul, args=(a, b), kwargs=dict(out=out), rounds=CONFIG["peak_repeat"],
                       iterations=1)
    if getattr(benchmark, "stats", None) is not None:
        benchmark.extra_info["gflops"] = 2.0 * n ** 3 / benchmark.stats.stats.min / 1e9
