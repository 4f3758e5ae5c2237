"""The optimizers (SGD with momentum / Nesterov / weight decay, Adam, Adam + L2, AdamW) against
independent oracles:

* torch.optim.SGD / Adam / AdamW, stepping a torch network that starts from the same weights and
  sees the same batches in the same order: every batch's loss and the final weights agree;
* the NumPy reference engine (which shares no arithmetic with the Numba kernels), on both of the
  kernels' code paths (batches below and above 8 rows) and above 128 rows;
* plain arithmetic for the article's plain SGD rule p <- p - lr g.

Bad option values must be rejected with a ValueError naming the problem, before any weight moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fastmlp import Model
from fastmlp.datasets import load_idx_pair
from conftest import fit_batch_losses
from torch_oracle import torch_batch_losses, torch_net

torch.set_num_threads(1)

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-12)}
LOSS_RTOL = {np.float32: 1e-4, np.float64: 1e-10}
STEPS = 20

# (id, optimizer, fit options, learning rate, the options with the tested feature taken away:
#  training with those must land measurably elsewhere, so each comparison can fail)
CASES = [
    # (lr 0.02 with momentum 0.9: at 0.05, a float32 ReLU pre-activation of the article network
    # lands within rounding of 0 at step 9, so its sign, and everything after, depends on the order
    # of a sum: two correct float32 programs then part ways. Measured: 0.02 keeps every step clear.)
    ("sgd-momentum", "sgd", dict(momentum=0.9), 0.02, dict()),
    ("sgd-nesterov", "sgd", dict(momentum=0.9, nesterov=True), 0.02, dict(momentum=0.9)),
    ("sgd-weight-decay", "sgd", dict(weight_decay=0.05), 0.1, dict()),
    ("sgd-momentum-weight-decay", "sgd", dict(momentum=0.8, weight_decay=0.02), 0.05,
     dict(momentum=0.8)),
    ("adam", "adam", dict(), 5e-3, None),
    ("adam-custom-betas-eps", "adam", dict(beta1=0.8, beta2=0.99, eps=1e-4), 5e-3, dict()),
    ("adam-l2", "adam", dict(weight_decay=0.01), 5e-3, dict()),
    ("adamw", "adamw", dict(weight_decay=0.01), 5e-3, dict(weight_decay=0.0)),
]


def _torch_optimizer(name, params, lr, opts):
    kw = dict(lr=lr, weight_decay=opts.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, momentum=opts.get("momentum", 0.0),
                               nesterov=opts.get("nesterov", False), **kw)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, betas=(opts.get("beta1", 0.9), opts.get("beta2", 0.999)),
               eps=opts.get("eps", 1e-8), **kw)


def _torch_run(model, X, y, batch, lr, name, opts):
    """STEPS torch steps on the batches X[t*batch:(t+1)*batch] in order; each batch's loss before
    its update, and the final (W, b) per layer in our orientation."""
    net, lins = torch_net(model)
    opt = _torch_optimizer(name, net.parameters(), lr, opts)
    Xt = torch.from_numpy(np.asarray(X, dtype=model.dtype))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    losses = torch_batch_losses(net, opt, Xt[:STEPS * batch], yt[:STEPS * batch], batch)
    return np.array(losses), [(lin.weight.detach().numpy().T, lin.bias.detach().numpy()) for lin in lins]


def _max_excess(layers_ours, layers_torch, tol):
    """How many tolerances apart two parameter sets are at their farthest element."""
    worst = -np.inf
    for (W, b), (tW, tb) in zip(layers_ours, layers_torch, strict=True):
        for a, e in ((W, tW), (b, tb)):
            a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
            worst = max(worst, float((np.abs(a - e) / (tol["atol"] + tol["rtol"] * np.abs(e))).max()))
    return worst


def _layers_of(model):
    return [(W.copy(), b.copy()) for W, b in zip(model.weights, model.biases)]


def _check_against_torch(make_model, X, y, batch, name, opts, lr, without, dtype):
    tol = TOL[dtype]
    model = make_model()
    start = model._params.copy()
    torch_losses, torch_layers = _torch_run(model, X, y, batch, lr, name, opts)
    losses, _ = fit_batch_losses(model, X, y, batch, lr=lr, optimizer=name, **opts)

    np.testing.assert_allclose(losses, torch_losses, rtol=LOSS_RTOL[dtype])
    assert np.abs(model._params - start).max() > 100 * tol["atol"]  # it really trained
    for l, ((W, b), (tW, tb)) in enumerate(zip(_layers_of(model), torch_layers)):
        np.testing.assert_allclose(W, tW, **tol, err_msg=f"{name} {opts}: W{l}")
        np.testing.assert_allclose(b, tb, **tol, err_msg=f"{name} {opts}: b{l}")

    if without is not None:  # the tested feature matters by far more than the tolerance
        other = make_model()
        fit_batch_losses(other, X, y, batch, lr=lr, optimizer=name, **without)
        assert _max_excess(_layers_of(other), torch_layers, tol) > 10, \
            f"{name} {opts} is indistinguishable from {without} at this tolerance"
    return model


def _small_model(dtype=np.float64, seed=3):
    model = Model([12, 16, 10, 4], activation=["relu", "tanh"], init="xavier", dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for i, b in enumerate(model.biases):  # non-zero starting biases
        model.biases[i] = rng.normal(0, 0.3, b.shape)
    return model


def _small_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12))
    y = (X[:, :4].argmax(axis=1) + (rng.random(n) < 0.2)) % 4  # learnable, with some label noise
    return X, y


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_small_network_float64_matches_torch_optim(case):
    _, name, opts, lr, without = case
    batch = 16
    X, y = _small_data(STEPS * batch)
    lr = lr * 4 if name != "sgd" else lr  # Adam: larger steps on the small net
    _check_against_torch(_small_model, X, y, batch, name, opts, lr,
                         dict(without) if without is not None else None, np.float64)


_MNIST = {}


def _mnist(n):
    if "X" not in _MNIST:
        _MNIST["X"], _MNIST["y"] = load_idx_pair(SHARED_MNIST / "t10k-images-idx3-ubyte.gz",
                                                 SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    return _MNIST["X"][:n], _MNIST["y"][:n]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_article_network_float32_mnist_matches_torch_optim(case):
    """The article's [784, 128, 64, 10] in float32 on the first 640 real MNIST test digits."""
    _, name, opts, lr, without = case
    batch = 32
    X, y = _mnist(STEPS * batch)
    assert X.dtype == np.float32 and X.shape == (640, 784)
    _check_against_torch(lambda: Model([784, 128, 64, 10], dtype=np.float32, seed=1), X, y, batch,
                         name, opts, lr, dict(without) if without is not None else None, np.float32)


def test_adam_first_step_moves_every_weight_with_a_gradient_by_lr():
    """Adam's first step is lr * g / (|g| + eps) elementwise (m / sqrt(s) = sign(g) after bias
    correction): math, independent of any implementation."""
    X, y = _small_data(32, seed=5)
    model = _small_model()
    before = model._params.copy()
    model.fit(X, y, epochs=1, batch_size=32, lr=0.01, shuffle=False, optimizer="adam", eps=1e-8)
    g = model._grads
    expected = before - 0.01 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(model._params, expected, rtol=1e-12, atol=1e-15)
    assert (np.abs(g) > 1e-6).mean() > 0.9


# ---- the Numba kernels against the NumPy engine ------------------------------------------------

ENGINE_CASES = [
    ("sgd", dict()),
    ("sgd", dict(momentum=0.9)),
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("sgd", dict(weight_decay=0.01)),
    ("sgd", dict(momentum=0.5, weight_decay=0.01, nesterov=True)),
    ("adam", dict()),
    ("adam", dict(beta1=0.7, beta2=0.95, eps=1e-6)),
    ("adam", dict(weight_decay=0.05)),
    ("adamw", dict(weight_decay=0.05)),
]


@pytest.mark.parametrize("batch", [5, 16, 150], ids=["rows-below-8", "blocked", "above-128"])
@pytest.mark.parametrize("name,opts", ENGINE_CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'plain'}"
                              for n, o in ENGINE_CASES])
def test_numba_matches_numpy_engine(name, opts, batch):
    X, y = _small_data(333, seed=2)  # the last batch of every epoch is smaller
    lr = 0.05 if name == "sgd" else 0.01
    fast = _small_model()
    ref = _small_model()
    ref.engine = "numpy"
    start = fast._params.copy()
    h_fast = fast.fit(X, y, epochs=3, batch_size=batch, lr=lr, seed=4, optimizer=name, **opts)
    h_ref = ref.fit(X, y, epochs=3, batch_size=batch, lr=lr, seed=4, optimizer=name, **opts)
    assert np.abs(fast._params - start).max() > 1e-2
    np.testing.assert_allclose(fast._params, ref._params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=1e-10)


def test_bias_free_model_adamw_leaves_the_zero_biases_alone():
    X, y = _small_data(100, seed=3)
    fast = Model([12, 9, 4], bias=False, dtype=np.float64, seed=2)
    ref = Model([12, 9, 4], bias=False, dtype=np.float64, seed=2, engine="numpy")
    for m in (fast, ref):
        m.fit(X, y, epochs=2, batch_size=10, lr=0.01, seed=1, optimizer="adamw", weight_decay=0.1)
    assert not any(b.any() for b in fast.biases)
    np.testing.assert_allclose(fast._params, ref._params, rtol=1e-10, atol=1e-12)


def test_plain_sgd_is_the_article_rule():
    """optimizer='sgd', momentum=0 is p <- p - lr g, exactly as before the optimizers existed."""
    X, y = _small_data(40, seed=7)
    explicit, default, ref = _small_model(), _small_model(), _small_model()
    ref.engine = "numpy"
    before = explicit._params.copy()
    explicit.fit(X, y, epochs=1, batch_size=40, lr=0.3, shuffle=False, optimizer="sgd", momentum=0.0,
                 nesterov=False, weight_decay=0.0)
    g = explicit._grads.copy()
    np.testing.assert_allclose(explicit._params, before - 0.3 * g, rtol=0, atol=1e-15)
    assert np.abs(g).max() > 1e-2

    # Many steps: bit-identical to the defaults, and equal to the NumPy engine.
    opts = dict(epochs=3, batch_size=7, lr=0.1, seed=5)
    for m in (explicit, default, ref):
        m._params[...] = before
    explicit.fit(X, y, optimizer="sgd", momentum=0.0, **opts)
    default.fit(X, y, **opts)
    ref.fit(X, y, **opts)
    assert explicit._params.tobytes() == default._params.tobytes()
    np.testing.assert_allclose(explicit._params, ref._params, rtol=1e-12, atol=1e-14)


def test_each_fit_call_starts_with_fresh_optimizer_state():
    """Documented: every fit call starts with fresh buffers, so two one-epoch Adam calls are two
    torch runs with a new torch.optim.Adam each."""
    batch = 10
    X, y = _small_data(STEPS * batch, seed=9)
    model = _small_model()
    net, lins = torch_net(model)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(2):
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for t in range(STEPS):
            opt.zero_grad()
            nn.functional.cross_entropy(net(Xt[t * batch:(t + 1) * batch]),
                                        yt[t * batch:(t + 1) * batch]).backward()
            opt.step()
        model.fit(X, y, epochs=1, batch_size=batch, lr=0.01, shuffle=False, optimizer="adam")
    for (W, b), lin in zip(_layers_of(model), lins):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, **TOL[np.float64])
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), **TOL[np.float64])


# ---- bad options -------------------------------------------------------------------------------

BAD_OPTIONS = [
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(optimizer="Adam"), "unknown optimizer"),
    (dict(momentum=-0.1), r"momentum must be >= 0"),
    (dict(momentum=1.0), r"momentum must be < 1"),
    (dict(momentum=float("nan")), r"momentum must be a finite number"),
    (dict(momentum="0.9"), r"momentum must be a finite number"),
    (dict(nesterov=True), r"nesterov.*momentum"),
    (dict(nesterov=True, momentum=0.9, optimizer="adam"), r"nesterov.*sgd"),
    (dict(weight_decay=-1e-4), r"weight_decay must be >= 0"),
    (dict(beta1=1.0, optimizer="adam"), r"beta1 must be < 1"),
    (dict(beta1=-0.1, optimizer="adam"), r"beta1 must be >= 0"),
    (dict(beta2=1.0, optimizer="adam"), r"beta2 must be < 1"),
    (dict(eps=0.0, optimizer="adam"), r"eps must be > 0"),
    (dict(eps=-1e-8, optimizer="adamw"), r"eps must be > 0"),
    (dict(schedule="exponential"), r"unknown schedule 'exponential'"),
    (dict(schedule="step", gamma=0.0), r"gamma must be > 0"),
    (dict(schedule="step", gamma=1.5), r"gamma must be <= 1"),
    (dict(schedule="step", step_size=0), r"step_size must be >= 1"),
    (dict(schedule="plateau", plateau_patience=-1), r"plateau_patience must be >= 0"),
    (dict(schedule="cosine", min_lr=-0.1), r"min_lr must be >= 0"),
    (dict(validation_split=1.0), r"validation_split must be < 1"),
    (dict(validation_split=-0.1), r"validation_split must be >= 0"),
    (dict(validation_split=0.01), r"validation_split=0.01 of 40 samples"),  # 0 rows held out
    (dict(validation_split=0.99), r"validation_split=0.99 of 40 samples"),  # 0 rows to train on
    (dict(patience=3), r"patience.*needs a validation_split"),
    (dict(patience=0, validation_split=0.25), r"patience must be >= 1"),
    (dict(sample_weight=np.r_[np.ones(39), -1.0]), r"sample_weight must be non-negative"),
    (dict(sample_weight=np.ones(39)), r"sample_weight"),
    (dict(sample_weight=np.r_[np.ones(39), np.nan]), r"sample_weight contains NaN"),
    (dict(sample_weight=np.zeros(40)), r"all zero"),
    (dict(class_weight=np.ones(3)), r"class_weight"),
    (dict(class_weight=np.ones(5)), r"class_weight"),
    (dict(class_weight=np.array([1.0, -1.0, 1.0, 1.0])), r"class_weight must be non-negative"),
    (dict(class_weight=np.zeros(4)), r"all zero"),
    (dict(sample_weight=np.r_[np.zeros(20), np.ones(20)], class_weight=np.r_[0.0, 0.0, 0.0, 0.0]),
     r"all zero"),
]


@pytest.mark.parametrize("bad,match", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_bad_options_are_rejected_before_any_change(bad, match):
    X, y = _small_data(40, seed=1)
    model = _small_model()
    before = model._params.copy()
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, epochs=2, batch_size=8, lr=0.1, **bad)
    assert model._params.tobytes() == before.tobytes()
    model.fit(X, y, epochs=1, batch_size=8, lr=0.1)  # and the model still trains
    assert not np.array_equal(model._params, before)


@pytest.mark.parametrize("bad,match", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_a_rejected_fit_leaves_the_shuffling_alone(bad, match):
    """A rejected call has no effect at all: the model's own random generator (which shuffles
    and splits when fit gets no seed) has not moved on, so the next fit is the one it would have
    been without the mistake."""
    X, y = _small_data(40, seed=1)
    model, twin = _small_model(), _small_model()
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, epochs=2, batch_size=8, lr=0.1, **bad)
    assert model._rng.bit_generator.state == twin._rng.bit_generator.state


def test_class_weight_is_rejected_for_a_sigmoid_model():
    X = np.random.default_rng(0).standard_normal((20, 12))
    y = (X[:, :3] > 0).astype(np.float64)
    model = Model([12, 5, 3], output="sigmoid", dtype=np.float64, seed=0)
    before = model._params.copy()
    with pytest.raises(ValueError, match="class_weight needs a softmax"):
        model.fit(X, y, class_weight=np.ones(3))
    assert model._params.tobytes() == before.tobytes()


def test_wrong_length_class_weight_message_names_the_classes():
    """The message for a class_weight of the wrong length must speak of classes (the output layer),
    not of samples in X."""
    X, y = _small_data(40, seed=1)
    model = _small_model()
    with pytest.raises(ValueError) as info:
        model.fit(X, y, class_weight=np.ones(3))
    message = str(info.value)
    assert "class_weight" in message
    assert "X has" not in message, message  # X has 40 samples; the 4 here are the classes
