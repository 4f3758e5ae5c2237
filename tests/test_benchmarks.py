"""The benchmark harness (fastmlp.benchmarks) measures what it says: every engine starts from the same
weights, sees the same data in the same order and ends with the same weights; the FLOP counts are
right; the report is complete. No timing is asserted."""

import json
import sys

import numpy as np
import pytest

from fastmlp import benchmarks as B
from fastmlp.errors import FastMLPError

HAS_TORCH = B.torch_available()
TRAIN_ENGINES = ["numba", "numpy"] + (["torch"] if HAS_TORCH else [])
XOR_ENGINES = ["numba", "numpy", "article"] + (["torch"] if HAS_TORCH else [])


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_flop_formula_matches_the_published_epoch_cost():
    per_sample = B.train_flops_per_sample(B.SEED_LAYERS)
    # forward 2*109,184 + weight gradients 2*109,184 + input gradients of layers 1, 2: 2*(8,192 + 640)
    assert per_sample == 454_400
    assert per_sample * 60_000 == pytest.approx(27.3e9, rel=0.01)
    assert B.predict_flops_per_sample(B.SEED_LAYERS) == 2 * (784 * 128 + 128 * 64 + 64 * 10)
    assert B.train_flops_per_sample((2, 4, 1)) == 2 * 12 + 2 * 12 + 2 * 4


@pytest.mark.parametrize("batch_size, samples, optimizer", [(1, 48, "sgd"), (16, 320, "sgd"), (16, 320, "adam")])
def test_train_engines_start_equal_and_end_equal(batch_size, samples, optimizer):
    init = B.seed_params()
    cases = {e: B.train_case(e, batch_size, samples, optimizer=optimizer) for e in TRAIN_ENGINES}
    for e, case in cases.items():
        case.setup()
        got = case.params()
        assert [a.shape for a in got] == [a.shape for a in init], e
        assert _max_diff(got, init) == 0.0, e
        assert all(a.dtype == np.float32 for a in got), e
        assert case.samples == samples and case.workload == B.train_name(batch_size, samples, optimizer=optimizer)
    after = {}
    for e, case in cases.items():
        case.warmup()
        case.setup()  # the warm-up trained: setup must undo it
        assert _max_diff(case.params(), init) == 0.0, e
        case.run()
        after[e] = case.params()
    moved = _max_diff(after["numpy"], init)
    assert moved > 1e-3  # training changed the weights, far more than the tolerance below
    for e in TRAIN_ENGINES:
        assert _max_diff(after[e], after["numpy"]) < 1e-4, e


def test_train_data_is_one_fixed_permutation():
    X_all, y_all, _, _ = B.load_data()
    X, y = B.train_data(100)
    order = np.random.default_rng(B.DATA_SEED).permutation(len(X_all))[:100]
    np.testing.assert_array_equal(X, X_all[order])
    np.testing.assert_array_equal(y, y_all[order])
    assert X.flags.c_contiguous and X.dtype == np.float32 and y.dtype == np.int64


def test_xor_engines_agree_with_the_articles_loop():
    init = B.xor_params()
    rs = np.random.RandomState(42)
    assert _max_diff(init, [rs.randn(2, 4), rs.randn(4, 1)]) == 0.0
    after = {}
    for e in XOR_ENGINES:
        case = B.xor_case(e, epochs=2_000)
        case.setup()
        assert _max_diff(case.params(), init) == 0.0, e
        case.warmup()
        case.setup()
        case.run()
        after[e] = case.params()
    assert _max_diff(after["article"], init) > 0.1
    for e in XOR_ENGINES:
        assert _max_diff(after[e], after["article"]) < 1e-4, e


def test_inference_engines_agree():
    outs = {}
    for e in TRAIN_ENGINES:
        case = B.inference_case(e, rows=300)
        case.warmup()
        outs[e] = case.run()
        assert outs[e].shape == (300, 10)
    np.testing.assert_allclose(outs["numpy"].sum(axis=1), 1.0, rtol=1e-5)
    for e in TRAIN_ENGINES:
        np.testing.assert_allclose(outs[e], outs["numpy"], atol=1e-5)


def test_run_all_quick_is_complete_json_and_tabulated():
    results = B.run_all(quick=True, batch_sizes=(1, 16), repeat=1)
    text = json.dumps(results)
    assert json.loads(text)["config"]["quick"] is True
    names = [w["name"] for w in results["workloads"]]
    assert names == ["train-b1-256samples", "train-b16", "xor", "inference"]
    env = results["environment"]
    for key in ("numpy", "numba", "torch", "cpu", "numba_threads", "torch_threads"):
        assert key in env
    assert results["peak"]["float32"]["gflops"] > 0
    for w in results["workloads"]:
        expected = XOR_ENGINES if w["kind"] == "xor" else TRAIN_ENGINES
        assert [e for e, r in w["engines"].items() if r["available"]] == expected
        for e, r in w["engines"].items():
            if r["available"]:
                assert r["seconds"] > 0 and r["gflops"] > 0 and r["first_call_s"] > 0
                assert set(r["ratio"]) == set(w["engines"]) - {e}
    b1 = results["workloads"][0]
    assert b1["samples_timed"] == 256 and "timed on 256 samples" in b1["note"]
    table = B.format_table(results)
    for word in ["numba", "numpy", "torch", "article", "train-b16", "xor", "inference", "GFLOP/s",
                 "timed on 256 samples"]:
        assert word in table


def test_torch_missing_gives_na(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    assert not B.torch_available()
    with pytest.raises(B.EngineUnavailable):
        B.xor_case("torch", epochs=1)
    results = B.run_all(quick=True, workloads=("xor",), repeat=1)
    torch_result = results["workloads"][0]["engines"]["torch"]
    assert torch_result["available"] is False
    assert results["workloads"][0]["engines"]["numba"]["ratio"]["torch"] is None
    json.dumps(results)
    table = B.format_table(results)
    assert "n/a" in table and "torch" in table


def test_random_data_when_fashion_mnist_cannot_load(monkeypatch):
    import fastmlp.datasets

    def broken(*args, **kwargs):
        raise OSError("no such file")

    monkeypatch.setattr(fastmlp.datasets, "load_fashion_mnist", broken)
    B.load_data.cache_clear()
    B.train_data.cache_clear()
    try:
        X, y, X_test, source = B.load_data()
        assert source.startswith("random") and "no such file" in source
        assert X.shape == (60_000, 784) and X.dtype == np.float32
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
        assert X_test.shape == (10_000, 784)
    finally:
        B.load_data.cache_clear()
        B.train_data.cache_clear()


def test_bad_arguments_are_rejected():
    with pytest.raises(FastMLPError, match="unknown engine"):
        B.run_all(quick=True, engines=("numba", "jax"))
    with pytest.raises(FastMLPError, match="unknown workload"):
        B.run_all(quick=True, workloads=("train", "gpt"))
    with pytest.raises(FastMLPError, match="unknown engine"):
        B.train_case("article", 16, 64)


def test_quick_env(monkeypatch):
    for value, expected in [("1", True), ("yes", True), ("0", False), ("", False), ("false", False)]:
        monkeypatch.setenv(B.QUICK_ENV, value)
        assert B.quick_from_env() is expected
    assert B.default_samples(1) == 6_000 and B.default_samples(64) == 60_000
    assert B.train_name(1, 6_000) == "train-b1-6000samples" and B.train_name(64, 60_000) == "train-b64"
