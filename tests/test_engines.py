"""The Numba engine against independent oracles: the NumPy reference engine, the seed article's XOR
program, and itself under different thread counts and call chunkings (which must not change a bit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import Model
from fastmlp.kernels.config import PARALLEL_MIN_WORK
from fastmlp.kernels.network import FORWARD_FROM_W_ROWS

from conftest import make_targets

# (layers, hidden activation(s), output, loss, bias)
ARCHITECTURES = [
    ([6, 8, 5, 3], "relu", "softmax", "cross_entropy", True),
    ([6, 8, 4], "tanh", "sigmoid", "binary_cross_entropy", True),
    ([6, 7, 5, 2], "sigmoid", "sigmoid", "mse", True),
    ([6, 8, 2], "identity", "identity", "mse", True),
    ([6, 9, 7, 4], ["tanh", "relu"], "softmax", "cross_entropy", False),
    ([6, 3], "relu", "softmax", "cross_entropy", True),  # no hidden layer
]
N, BATCH, EPOCHS = 95, 10, 5  # 10 batches per epoch, the last one of 5 samples: 50 steps


def _data(loss, k, n=N, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), make_targets(rng, loss, n, k)


def _pair(layers, activation, output, loss, bias, dtype):
    kw = dict(activation=activation, output=output, loss=loss, bias=bias, dtype=dtype, init="xavier")
    fast = Model(layers, seed=11, engine="numba", **kw)
    ref = Model(layers, seed=99, engine="numpy", **kw)
    if bias:  # start from non-zero biases
        for i, b in enumerate(fast.biases):
            fast.biases[i] = np.random.default_rng(i).normal(0, 0.2, b.shape)
    ref._params[...] = fast._params  # identical starting weights
    return fast, ref


def _ids(arch):
    layers, act, out, loss, bias = arch
    return f"{'x'.join(map(str, layers))}-{act}-{out}-{loss}{'' if bias else '-nobias'}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=_ids)
def test_numba_matches_numpy_engine(arch, dtype):
    layers, activation, output, loss, bias = arch
    fast, ref = _pair(layers, activation, output, loss, bias, dtype)
    start = fast._params.copy()
    X, y = _data(loss, layers[-1])
    h_fast = fast.fit(X, y, epochs=EPOCHS, batch_size=BATCH, lr=0.1, seed=5)
    h_ref = ref.fit(X, y, epochs=EPOCHS, batch_size=BATCH, lr=0.1, seed=5)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert not np.array_equal(fast._params, start)  # training moved the weights
    for W_f, W_r in zip(fast.weights, ref.weights):
        np.testing.assert_allclose(W_f, W_r, **tol)
    for b_f, b_r in zip(fast.biases, ref.biases):
        np.testing.assert_allclose(b_f, b_r, **tol)
    if not bias:
        assert not fast._params[fast._n_trainable:].any()
    assert len(h_fast.loss) == len(h_ref.loss) == EPOCHS
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, **tol)
    X_new = np.random.default_rng(3).standard_normal((1500, 6))  # more rows than one predict block
    np.testing.assert_allclose(fast.predict_proba(X_new), ref.predict_proba(X_new), **tol)
    assert fast.predict_proba(X_new).dtype == dtype


@pytest.mark.parametrize("batch", [64, FORWARD_FROM_W_ROWS + 36])
def test_numba_matches_numpy_engine_at_large_batches(batch):
    """Both ways the training forward pass reads the weights: the transposed copy (batch 64), and,
    from FORWARD_FROM_W_ROWS rows on, the Model's layout kept current by a transpose every step.
    Two epochs of three batches each (the last one partial), the first layer 784 wide as an image."""
    fast, ref = _pair([784, 24, 16, 5], ["relu", "tanh"], "softmax", "cross_entropy", True, np.float64)
    rng = np.random.default_rng(6)
    n = 2 * batch + batch // 2
    X, y = rng.random((n, 784)), rng.integers(0, 5, n)
    start = fast._params.copy()
    h_fast = fast.fit(X, y, epochs=2, batch_size=batch, lr=0.2, seed=5)
    h_ref = ref.fit(X, y, epochs=2, batch_size=batch, lr=0.2, seed=5)
    assert not np.allclose(fast._params, start, rtol=1e-3, atol=0)
    np.testing.assert_allclose(fast._params, ref._params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=1e-10)


def test_predict_proba_matches_formula():
    """Softmax outputs of both engines against the forward pass written out in NumPy."""
    fast, ref = _pair([6, 8, 5, 3], "tanh", "softmax", "cross_entropy", True, np.float64)
    X = np.random.default_rng(4).standard_normal((40, 6))
    a = np.tanh(np.tanh(X @ fast.weights[0] + fast.biases[0]) @ fast.weights[1] + fast.biases[1])
    z = a @ fast.weights[2] + fast.biases[2]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fast.predict_proba(X), p, rtol=1e-12)
    np.testing.assert_allclose(ref.predict_proba(X), p, rtol=1e-12)
    np.testing.assert_array_equal(fast.predict(X), p.argmax(axis=1))


# ---- determinism --------------------------------------------------------------------------------

def _train(model_seed, **fit_kw):
    # 101 batches per epoch: 100 of 8 samples (the blocked kernels) and a last one of 5 (row by row)
    X, y = _data("cross_entropy", 3, n=805, seed=8)
    model = Model([6, 8, 5, 3], seed=model_seed)
    history = model.fit(X, y, **{"epochs": 3, "batch_size": 8, "lr": 0.05, **fit_kw})
    return model, history


def test_same_seed_is_bit_identical():
    a, ha = _train(1)
    b, hb = _train(1)
    c, _ = _train(2)
    assert a._params.tobytes() == b._params.tobytes()
    assert ha.loss == hb.loss
    assert a._params.tobytes() != c._params.tobytes()


def test_chunking_does_not_change_a_bit():
    """A progress callback splits each epoch into several kernel calls, a per-epoch callback into
    one call per epoch; without either, all epochs run in one call. The weights must not differ."""
    whole, h_whole = _train(1, seed=7)
    calls = []
    chunked, h_chunked = _train(1, seed=7, progress=lambda *a: calls.append(a))
    epochs_seen = []
    per_epoch, h_per_epoch = _train(1, seed=7, callback=lambda e, l: epochs_seen.append((e, l)))
    n_batches = 101
    assert len(calls) > 3 * 2  # several calls per epoch
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    ends = [c for c in calls if c[1] == n_batches]
    assert [c[0] for c in ends] == [0, 1, 2] and all(c[2] == n_batches for c in calls)
    assert chunked._params.tobytes() == whole._params.tobytes()
    assert per_epoch._params.tobytes() == whole._params.tobytes()
    assert h_chunked.loss == h_whole.loss == h_per_epoch.loss
    assert epochs_seen == list(enumerate(h_whole.loss))
    for c in ends:  # the running loss at the end of an epoch is that epoch's loss
        assert c[3] == pytest.approx(h_whole.loss[c[0]], rel=1e-6)


def test_two_fit_calls_equal_one():
    """fit(epochs=1) twice continues the model's own shuffling stream: same as fit(epochs=2)."""
    X, y = _data("cross_entropy", 3, n=50, seed=8)
    once = Model([6, 8, 5, 3], seed=4)
    h = once.fit(X, y, epochs=2, batch_size=8, lr=0.05)
    twice = Model([6, 8, 5, 3], seed=4)
    h1 = twice.fit(X, y, epochs=1, batch_size=8, lr=0.05)
    h2 = twice.fit(X, y, epochs=1, batch_size=8, lr=0.05)
    assert once._params.tobytes() == twice._params.tobytes()
    assert h.loss == h1.loss + h2.loss


def test_weights_set_between_calls_are_used():
    """Weights written through model.weights / model.biases between calls reach the kernels (no
    stale cached copy of them, e.g. a transposed one, is used by predict or fit)."""
    X, y = _data("cross_entropy", 3, n=64, seed=8)
    model = Model([6, 8, 5, 3], seed=1, dtype=np.float64)
    model.fit(X, y, epochs=1, batch_size=16, lr=0.05)
    model.predict_proba(X)
    rng = np.random.default_rng(12)
    fresh = Model([6, 8, 5, 3], seed=2, dtype=np.float64)
    for i in range(3):
        W, b = rng.standard_normal(model.weights[i].shape), rng.standard_normal(model.biases[i].shape)
        model.weights[i], model.biases[i] = W, b
        fresh.weights[i], fresh.biases[i] = W, b
    ref = Model([6, 8, 5, 3], seed=3, dtype=np.float64, engine="numpy")
    ref._params[...] = fresh._params
    assert model.predict_proba(X).tobytes() == fresh.predict_proba(X).tobytes()
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), rtol=1e-10)
    h_model = model.fit(X, y, epochs=2, batch_size=16, lr=0.05, seed=4)
    h_fresh = fresh.fit(X, y, epochs=2, batch_size=16, lr=0.05, seed=4)
    assert model._params.tobytes() == fresh._params.tobytes()
    assert h_model.loss == h_fresh.loss


def test_callback_can_stop_training():
    stopped, h_stopped = _train(1, seed=7, callback=lambda e, l: e == 1)
    two, h_two = _train(1, seed=7, epochs=2)
    assert len(h_stopped.loss) == 2
    assert stopped._params.tobytes() == two._params.tobytes()


_THREAD_SCRIPT = r"""
import hashlib, json, numba, numpy as np
from fastmlp import Model
rng = np.random.default_rng(0)
X = rng.random((320, 784), dtype=np.float32)
X[X < 0.6] = 0  # image-like: many exact zeros
y = rng.integers(0, 10, 320)
model = Model([784, 128, 64, 10], seed=1)
start = hashlib.sha256(model._params.tobytes()).hexdigest()
history = model.fit(X, y, epochs=2, batch_size=64, lr=0.05, seed=2)
proba = model.predict_proba(X)
print(json.dumps({"threads": numba.get_num_threads(), "start": start,
                  "params": hashlib.sha256(model._params.tobytes()).hexdigest(),
                  "proba": hashlib.sha256(proba.tobytes()).hexdigest(), "loss": history.loss}))
"""


def _run_with_threads(n):
    env = {**os.environ, "NUMBA_NUM_THREADS": str(n)}
    done = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_thread_count_does_not_change_a_bit():
    # The first layer (64 x 784 x 128 multiply-adds per batch) is above the parallel threshold, so
    # its forward and backward loops really run on several threads.
    assert 64 * 784 * 128 >= PARALLEL_MIN_WORK
    one, two, three = (_run_with_threads(n) for n in (1, 2, 3))
    assert (one["threads"], two["threads"], three["threads"]) == (1, 2, 3)
    assert one["params"] != one["start"]
    assert one["params"] == two["params"] == three["params"]
    assert one["proba"] == two["proba"] == three["proba"]
    assert one["loss"] == two["loss"] == three["loss"]


# ---- the seed article's XOR network ---------------------------------------------------------------

def _article_xor():
    """The seed article's NumPy program, verbatim in substance: 2-4-1, sigmoid, no biases."""
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def sigmoid_derivative(x):
        return x * (1 - x)

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    np.random.seed(42)
    W1 = np.random.randn(2, 4)
    W2 = np.random.randn(4, 1)
    init = (W1.copy(), W2.copy())
    lr = 0.5
    losses = {}
    for epoch in range(10000):
        hidden = sigmoid(np.dot(X, W1))
        output = sigmoid(np.dot(hidden, W2))
        error = y - output
        d_output = error * sigmoid_derivative(output)
        d_hidden = d_output.dot(W2.T) * sigmoid_derivative(hidden)
        W2 += lr * hidden.T.dot(d_output)
        W1 += lr * X.T.dot(d_hidden)
        if epoch % 2000 == 0:
            losses[epoch] = np.mean(np.square(error))
    final = sigmoid(np.dot(sigmoid(np.dot(X, W1)), W2))
    return X, y, init, losses, (W1, W2), final


def test_article_xor_program():
    X, y, (W1, W2), losses, (W1_end, W2_end), final = _article_xor()
    model = Model([2, 4, 1], activation="sigmoid", output="sigmoid", loss="mse", bias=False,
                  dtype=np.float64, init="normal")
    model.weights[0] = W1
    model.weights[1] = W2
    # Our mse is mean((p - y)^2), gradient 2 (p - y) / (B K): lr = 0.5 * B K / 2 = 1.0.
    history = model.fit(X, y, epochs=10000, batch_size=4, lr=1.0, shuffle=False)
    assert len(history.loss) == 10000
    for epoch, loss in losses.items():
        assert history.loss[epoch] == pytest.approx(loss, rel=1e-9), epoch
    assert losses[8000] < losses[0] / 10  # the run really learns XOR
    np.testing.assert_allclose(model.weights[0], W1_end, rtol=1e-9)
    np.testing.assert_allclose(model.weights[1], W2_end, rtol=1e-9)
    np.testing.assert_array_equal(np.round(model.weights[0], 2), np.round(W1_end, 2))
    np.testing.assert_array_equal(np.round(model.weights[1], 2), np.round(W2_end, 2))
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, final, rtol=1e-9)
    np.testing.assert_array_equal(np.round(proba, 2), np.round(final, 2))
    np.testing.assert_array_equal(model.predict(X), y)
