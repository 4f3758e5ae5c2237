"""Shared pieces of the pytest-benchmark suite. Run with ``pytest bench/ --benchmark-only``;
``FASTMLP_BENCH_QUICK=1`` shrinks every workload for a smoke run (see README.md).

The workloads themselves (data, initial weights, each engine's training loop) come from
``fastmlp.benchmarks``, the same code that ``fastmlp bench`` runs; the test modules only pick
which cases to time. (They import nothing from here: a parameter named ``engine`` equal to "torch"
is skipped here when torch is not installed.)
"""

import time

import pytest

from fastmlp import benchmarks as B

ROUNDS = 3


def pytest_collection_modifyitems(config, items):
    if B.torch_available():
        return
    skip = pytest.mark.skip(reason="torch is not installed")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("engine") == "torch":
            item.add_marker(skip)


@pytest.fixture
def run_case(benchmark):
    """``run_case(case)``: warm up outside the timed region (Numba compiles or loads its cache
    here), then time ``case.run`` ROUNDS times, each after ``case.setup`` restores the initial
    weights. What was timed goes into the benchmark's ``extra_info`` (see ``--benchmark-json``)."""

    def go(case, rounds=ROUNDS):
        case.setup()
        t0 = time.perf_counter()
        case.warmup()
        first_call_s = time.perf_counter() - t0
        benchmark.extra_info.update(
            engine=case.engine, workload=case.workload, samples=case.samples, dtype=case.dtype,
            flops=case.flops, scale_to_unit=case.scale, first_call_s=first_call_s,
            quick=B.quick_from_env(), **case.info)
        result = benchmark.pedantic(case.run, setup=case.setup, rounds=rounds, iterations=1)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:  # None under --benchmark-disable
            best = stats.stats.min
            benchmark.extra_info.update(gflops=case.flops / best / 1e9,
                                        samples_per_s=case.samples / best)
        return result

    return go
