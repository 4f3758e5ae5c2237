"""Benchmark workloads: fastmlp's Numba engine against its NumPy engine, PyTorch, and the seed
article's own NumPy loop, on identical data and identical initial weights.

Shared by the pytest-benchmark suite in ``bench/`` and by ``fastmlp bench``. Three workloads, plus
the machine's matrix-multiply peak as a yardstick:

``train-b{B}``
    The seed network 784-128-64-10 (ReLU, softmax + cross-entropy, plain SGD lr=0.01, float32):
    one epoch of 60,000 samples in mini-batches of B. The samples are shuffled once with a fixed
    seed and every engine is given the same pre-permuted arrays (fastmlp with ``shuffle=False``),
    so every engine visits the same batches in the same order. Small batches take a long time in
    NumPy and PyTorch, so they are timed on fewer samples (6,000 steps by default) and the time is
    scaled to the epoch; the workload is then named ``train-b1-6000samples``.
``xor``
    The seed article's XOR run: 2-4-1, sigmoid everywhere, no biases, float64, weights from
    ``np.random.seed(42); randn(2, 4); randn(4, 1)``, full batch of 4, 10,000 epochs, learning rate
    0.5 in the article's rule (gradient descent on the *sum* of 0.5 * error^2), which is fastmlp's
    ``lr=1.0`` with ``loss="mse"`` (the *mean* of error^2, gradient 2 (p - y) / (B K)). Engines:
    fastmlp numba, fastmlp numpy, the article's loop written out inline ("article"), and PyTorch.
``inference``
    ``predict_proba`` of the seed network on 10,000 x 784 (PyTorch: forward + softmax under
    ``no_grad``).

Every engine of a workload is a :class:`Case`: ``setup()`` restores the initial weights,
``warmup()`` makes one short call (this is when Numba compiles, or loads its on-disk cache),
``run()`` is the timed work, ``params()`` returns the current weights as NumPy arrays (for checking
that the engines did the same work).

FLOP counts are those of the matrix products only (biases, activations, the softmax and the SGD
update are left out). For a network with layer sizes n_0, ..., n_L and I_l x O_l = n_l x n_{l+1}:

    forward          2 * sum_l I_l O_l                 per sample
    weight gradients 2 * sum_l I_l O_l                 per sample
    input gradients  2 * sum_{l >= 1} I_l O_l          per sample (nobody computes dL/dX)

so training costs 4 * sum I O + 2 * sum_{l>=1} I O per sample: 454,400 for 784-128-64-10, i.e.
27.26 GFLOP per epoch of 60,000 samples; inference costs 2 * sum I O = 218,368 per sample. The SGD
update (2 FLOP per parameter per step) is not counted; it matters only at tiny batch sizes (at batch
1 it would add 218,772 FLOP per sample). "% of peak" divides the achieved rate by the best
``np.matmul`` rate of two 2048 x 2048 matrices of the workload's dtype, measured in the same run
(float32 for training and inference, float64 for XOR, whose tiny matrices reach a negligible share).

Timing: each case gets one warm-up call, then ``repeat`` timed runs, each after ``setup()``, with
the engines of a workload taking turns (``time_cases``); the reported time is the best. PyTorch
runs on as many threads as Numba (``torch.set_num_threads``).
"""

from __future__ import annotations

import functools
import gc
import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import FastMLPError

SEED_LAYERS = (784, 128, 64, 10)
EPOCH_SAMPLES = 60_000
INFERENCE_ROWS = 10_000
TRAIN_LR = 0.01
TRAIN_LRS = {"sgd": TRAIN_LR, "adam": 0.001}  # learning rate per optimizer of the train workloads
DATA_SEED = 0  # the shuffle of the training samples, and the random stand-in data
WEIGHT_SEED = 0  # the seed network's initial (He) weights

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)
XOR_LAYERS = (2, 4, 1)
XOR_EPOCHS = 10_000
XOR_ARTICLE_LR = 0.5
XOR_LR = XOR_ARTICLE_LR * XOR_X.shape[0] * XOR_Y.shape[1] / 2  # = 1.0, see the module docstring

ENGINES = ("numba", "numpy", "torch")
XOR_ENGINES = ("numba", "numpy", "article", "torch")
WORKLOADS = ("train", "xor", "inference")
BATCH_SIZES = (1, 16, 64, 256)

# Sizes of a full run and of a quick (smoke-test) run.
FULL = dict(min_steps=6_000, epoch_samples=EPOCH_SAMPLES, xor_epochs=XOR_EPOCHS,
            inference_rows=INFERENCE_ROWS, peak_n=2048, peak_repeat=5)
QUICK = dict(min_steps=256, epoch_samples=2_048, xor_epochs=500, inference_rows=1_000,
             peak_n=512, peak_repeat=3)

QUICK_ENV = "FASTMLP_BENCH_QUICK"


class EngineUnavailable(FastMLPError):
    """An optional engine (PyTorch) is not installed."""


def config(quick: bool = False) -> dict:
    """The sizes of a full run, or of a quick smoke-test run."""
    return dict(QUICK if quick else FULL)


def quick_from_env() -> bool:
    """True when ``$FASTMLP_BENCH_QUICK`` is set to anything but "", "0", "false", "no"."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def default_samples(batch_size: int, quick: bool = False) -> int:
    """Samples timed for training at ``batch_size``: the whole epoch, or, for small batches, enough
    for ``min_steps`` steps (6,000 at batch 1 in a full run)."""
    cfg = config(quick)
    return int(min(cfg["epoch_samples"], cfg["min_steps"] * batch_size))


def train_name(batch_size: int, samples: int, epoch_samples: int = EPOCH_SAMPLES,
               optimizer: str = "sgd") -> str:
    """``train-b64``, or ``train-b1-6000samples`` when fewer samples than an epoch are timed;
    ``train-b64-adam`` with Adam."""
    name = f"train-b{batch_size}" + ("" if optimizer == "sgd" else f"-{optimizer}")
    return name if samples >= epoch_samples else f"{name}-{samples}samples"


# ---- FLOP counts ------------------------------------------------------------------------------

def _products(layers):
    return [int(a) * int(b) for a, b in zip(layers[:-1], layers[1:])]


def predict_flops_per_sample(layers=SEED_LAYERS) -> int:
    """Matrix-product FLOPs of one sample's forward pass: 2 * sum(I * O)."""
    return 2 * sum(_products(layers))


def train_flops_per_sample(layers=SEED_LAYERS) -> int:
    """Matrix-product FLOPs of one sample's training step (see the module docstring):
    forward 2 * sum(I O) + weight gradients 2 * sum(I O) + input gradients 2 * sum_{l>=1}(I O)."""
    io = _products(layers)
    return 2 * sum(io) + 2 * sum(io) + 2 * sum(io[1:])


# ---- data and initial weights -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def load_data():
    """(X_train, y_train, X_test, source): Fashion-MNIST if it can be loaded without downloading,
    else uniform random data of the same shapes and dtypes (speed does not depend on the values)."""
    try:
        from .datasets import load_fashion_mnist
        X_train, y_train, X_test, _ = load_fashion_mnist(download=False)
        X_train = np.ascontiguousarray(X_train, dtype=np.float32)
        X_test = np.ascontiguousarray(X_test, dtype=np.float32)
        y_train = np.ascontiguousarray(y_train, dtype=np.int64)
        if X_train.shape != (EPOCH_SAMPLES, 784) or X_test.shape[0] < INFERENCE_ROWS:
            raise ValueError(f"unexpected shapes {X_train.shape}, {X_test.shape}")
        return X_train, y_train, X_test, "Fashion-MNIST"
    except Exception as exc:  # noqa: BLE001 - any failure means "use random data"
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    rng = np.random.default_rng(DATA_SEED)
    X_train = rng.random((EPOCH_SAMPLES, 784), dtype=np.float32)
    y_train = rng.integers(0, 10, EPOCH_SAMPLES).astype(np.int64)
    X_test = rng.random((INFERENCE_ROWS, 784), dtype=np.float32)
    return X_train, y_train, X_test, f"random (Fashion-MNIST not loaded: {reason})"


@functools.lru_cache(maxsize=2)
def train_data(samples: int):
    """(X, y): the first ``samples`` of a fixed permutation of the training set, as contiguous
    arrays. Every engine trains on these in order, so all see the same batches."""
    X, y, _, _ = load_data()
    if not 1 <= samples <= X.shape[0]:
        raise FastMLPError(f"samples must be between 1 and {X.shape[0]}, got {samples}")
    order = np.random.default_rng(DATA_SEED).permutation(X.shape[0])[:samples]
    return np.ascontiguousarray(X[order]), np.ascontiguousarray(y[order])


@functools.lru_cache(maxsize=1)
def _seed_params():
    from .model import Model
    model = Model(SEED_LAYERS, activation="relu", output="softmax", dtype=np.float32, seed=WEIGHT_SEED)
    arrays = [W.copy() for W in model.weights] + [b.copy() for b in model.biases]
    for a in arrays:
        a.flags.writeable = False
    return tuple(arrays)


def seed_params() -> list:
    """The seed network's initial parameters, [W_0, W_1, W_2, b_0, b_1, b_2], W as (fan_in,
    fan_out), float32: He-initialised weights from ``Model(..., seed=WEIGHT_SEED)``, zero biases."""
    return [a.copy() for a in _seed_params()]


def xor_params() -> list:
    """The article's initial weights [W_1 (2, 4), W_2 (4, 1)]: ``np.random.seed(42)`` then two
    ``randn`` calls (drawn from a private RandomState, which gives the same numbers)."""
    rs = np.random.RandomState(42)
    return [rs.randn(2, 4), rs.randn(4, 1)]


# ---- cases ------------------------------------------------------------------------------------

@dataclass
class Case:
    """One engine on one workload. ``run()`` is the timed work; ``setup()`` restores the initial
    weights; ``warmup()`` is a short first call; ``params()`` returns the current parameters
    (weights then biases, W as (fan_in, fan_out), as NumPy arrays)."""
    workload: str
    engine: str
    setup: Callable[[], Any]
    run: Callable[[], Any]
    warmup: Callable[[], Any]
    params: Callable[[], list]
    samples: int  # samples (or sample-steps) processed by one run()
    flops: float  # FLOPs of one run()
    dtype: str
    scale: float = 1.0  # run() time x scale = the time of the workload's unit (e.g. one epoch)
    info: dict = field(default_factory=dict)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch():
    """The torch module, running on as many threads as Numba; EngineUnavailable if missing."""
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"torch is not installed ({exc})") from None
    import numba
    torch.set_num_threads(numba.get_num_threads())
    return torch


def _check_engine(engine, allowed):
    if engine not in allowed:
        raise FastMLPError(f"unknown engine {engine!r}: use one of {', '.join(allowed)}")


def _fastmlp_model(layers, engine, **kwargs):
    from .model import Model
    return Model(list(layers), engine=engine, **kwargs)


def _load_fastmlp(model, arrays):
    L = len(model.weights)
    for i in range(L):
        model.weights[i] = arrays[i]
    if model.bias:
        for i in range(L):
            model.biases[i] = arrays[L + i]


def _fastmlp_params(model):
    arrays = [W.copy() for W in model.weights]
    if model.bias:
        arrays += [b.copy() for b in model.biases]
    return arrays


def _torch_net(torch, layers, activation, bias, dtype, arrays):
    """nn.Sequential of Linear + activation (none after the last layer), and a function that
    copies ``arrays`` (fastmlp layout: W (in, out) ..., then b ...) into it."""
    nn = torch.nn
    mods = []
    L = len(layers) - 1
    for l in range(L):
        mods.append(nn.Linear(layers[l], layers[l + 1], bias=bias, dtype=dtype))
        if l < L - 1:
            mods.append(activation())
    net = nn.Sequential(*mods)
    linears = [m for m in net if isinstance(m, nn.Linear)]

    def load(arrays):
        with torch.no_grad():
            for l, lin in enumerate(linears):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(arrays[l].T)))
                if bias:
                    lin.bias.copy_(torch.from_numpy(arrays[L + l]))

    def params():
        out = [lin.weight.detach().numpy().T.copy() for lin in linears]
        if bias:
            out += [lin.bias.detach().numpy().copy() for lin in linears]
        return out

    load(arrays)
    return net, load, params


def train_case(engine: str, batch_size: int, samples: int | None = None, *, quick: bool = False,
               lr: float | None = None, optimizer: str = "sgd") -> Case:
    """The seed network trained at ``batch_size`` on ``samples`` pre-shuffled samples (default:
    :func:`default_samples`); timings scale to an epoch of 60,000 samples (2,048 in quick mode).
    ``optimizer``: "sgd" (plain, lr 0.01 by default) or "adam" (PyTorch's defaults: lr 0.001,
    betas (0.9, 0.999), eps 1e-8)."""
    _check_engine(engine, ENGINES)
    if optimizer not in TRAIN_LRS:
        raise FastMLPError(f"optimizer must be one of {sorted(TRAIN_LRS)}, got {optimizer!r}")
    lr = TRAIN_LRS[optimizer] if lr is None else lr
    cfg = config(quick)
    samples = default_samples(batch_size, quick) if samples is None else int(samples)
    epoch = cfg["epoch_samples"]
    X, y = train_data(samples)
    init = seed_params()
    n_warm = min(samples, 4 * batch_size)
    common = dict(workload=train_name(batch_size, samples, epoch, optimizer), engine=engine,
                  samples=samples, flops=float(train_flops_per_sample() * samples), dtype="float32",
                  scale=epoch / samples,
                  info=dict(batch_size=batch_size, epoch_samples=epoch, lr=lr, optimizer=optimizer))

    if engine in ("numba", "numpy"):
        model = _fastmlp_model(SEED_LAYERS, engine, activation="relu", output="softmax",
                               dtype=np.float32, seed=WEIGHT_SEED)

        def run():
            return model.fit(X, y, epochs=1, batch_size=batch_size, lr=lr, shuffle=False,
                             optimizer=optimizer)

        def warmup():
            model._check_X(X)  # the run's input check: numba's engine compiles it for large inputs
            return model.fit(X[:n_warm], y[:n_warm], epochs=1, batch_size=batch_size, lr=lr,
                             shuffle=False, optimizer=optimizer)

        return Case(setup=lambda: _load_fastmlp(model, init), run=run, warmup=warmup,
                    params=lambda: _fastmlp_params(model), **common)

    torch = _torch()
    net, load, params = _torch_net(torch, SEED_LAYERS, torch.nn.ReLU, True, torch.float32, init)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss_fn = torch.nn.functional.cross_entropy
    state = {}

    def setup():
        load(init)
        make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        state["opt"] = make(net.parameters(), lr=lr)

    def train(n):
        opt = state["opt"]
        for lo in range(0, n, batch_size):
            opt.zero_grad()
            loss = loss_fn(net(Xt[lo:lo + batch_size]), yt[lo:lo + batch_size])
            loss.backward()
            opt.step()

    setup()
    return Case(setup=setup, run=lambda: train(samples), warmup=lambda: train(n_warm),
                params=params, **common)


def _article_xor(W1, W2, X, y, lr, epochs):
    """The seed article's training loop (without its progress prints), updating W1, W2 in place."""
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def sigmoid_derivative(s):
        return s * (1 - s)

    for _ in range(epochs):
        hidden = sigmoid(np.dot(X, W1))
        output = sigmoid(np.dot(hidden, W2))
        error = y - output
        d_output = error * sigmoid_derivative(output)
        d_hidden = np.dot(d_output, W2.T) * sigmoid_derivative(hidden)
        W2 += lr * np.dot(hidden.T, d_output)
        W1 += lr * np.dot(X.T, d_hidden)


def xor_case(engine: str, epochs: int = XOR_EPOCHS) -> Case:
    """The seed article's XOR run (see the module docstring) on ``engine``: "numba", "numpy"
    (fastmlp's engines), "article" (the article's own NumPy loop) or "torch"."""
    _check_engine(engine, XOR_ENGINES)
    init = xor_params()
    n = XOR_X.shape[0]
    common = dict(workload="xor", engine=engine, samples=n * epochs,
                  flops=float(train_flops_per_sample(XOR_LAYERS) * n * epochs), dtype="float64",
                  info=dict(epochs=epochs, article_lr=XOR_ARTICLE_LR, lr=XOR_LR))

    if engine in ("numba", "numpy"):
        model = _fastmlp_model(XOR_LAYERS, engine, activation="sigmoid", output="sigmoid",
                               loss="mse", init="normal", bias=False, dtype=np.float64)

        def fit(k):
            return model.fit(XOR_X, XOR_Y, epochs=k, batch_size=n, lr=XOR_LR, shuffle=False)

        return Case(setup=lambda: _load_fastmlp(model, init), run=lambda: fit(epochs),
                    warmup=lambda: fit(1), params=lambda: _fastmlp_params(model), **common)

    if engine == "article":
        W = [a.copy() for a in init]

        def setup():
            for w, a in zip(W, init):
                w[...] = a

        return Case(setup=setup,
                    run=lambda: _article_xor(W[0], W[1], XOR_X, XOR_Y, XOR_ARTICLE_LR, epochs),
                    warmup=lambda: _article_xor(W[0], W[1], XOR_X, XOR_Y, XOR_ARTICLE_LR, 1),
                    params=lambda: [w.copy() for w in W], **common)

    torch = _torch()
    net, load, params = _torch_net(torch, XOR_LAYERS, torch.nn.Sigmoid, False, torch.float64, init)
    Xt, yt = torch.from_numpy(XOR_X), torch.from_numpy(XOR_Y)
    state = {}

    def setup():
        load(init)
        state["opt"] = torch.optim.SGD(net.parameters(), lr=XOR_LR)

    def train(k):
        opt = state["opt"]
        for _ in range(k):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(torch.sigmoid(net(Xt)), yt)
            loss.backward()
            opt.step()

    setup()
    return Case(setup=setup, run=lambda: train(epochs), warmup=lambda: train(1), params=params,
                **common)


def inference_case(engine: str, rows: int = INFERENCE_ROWS) -> Case:
    """``predict_proba`` of the seed network (initial weights) on the first ``rows`` test images;
    ``run()`` returns the (rows, 10) probabilities."""
    _check_engine(engine, ENGINES)
    _, _, X_test, _ = load_data()
    if not 1 <= rows <= X_test.shape[0]:
        raise FastMLPError(f"rows must be between 1 and {X_test.shape[0]}, got {rows}")
    X = np.ascontiguousarray(X_test[:rows])
    init = seed_params()
    common = dict(workload="inference", engine=engine, samples=rows,
                  flops=float(predict_flops_per_sample() * rows), dtype="float32",
                  info=dict(rows=rows))

    if engine in ("numba", "numpy"):
        model = _fastmlp_model(SEED_LAYERS, engine, activation="relu", output="softmax",
                               dtype=np.float32, seed=WEIGHT_SEED)
        _load_fastmlp(model, init)
        return Case(setup=lambda: None, run=lambda: model.predict_proba(X),
                    warmup=lambda: model.predict_proba(X), params=lambda: _fastmlp_params(model),
                    **common)

    torch = _torch()
    net, load, params = _torch_net(torch, SEED_LAYERS, torch.nn.ReLU, True, torch.float32, init)
    Xt = torch.from_numpy(X)

    def run():
        with torch.no_grad():
            return torch.softmax(net(Xt), dim=1).numpy()

    return Case(setup=lambda: None, run=run, warmup=run, params=params, **common)


# ---- timing -----------------------------------------------------------------------------------

# Pause before each timed run. After a call, OpenBLAS's and OpenMP's worker threads keep spinning for
# a while (up to ~0.1 s) before they sleep; on a 2-core machine they would take a core from whichever
# engine runs next. (Measured: fastmlp's inference right after a torch run took 16-36 ms, 22 ms for
# NumPy's throughout.)
SETTLE_S = 0.25


def time_cases(cases: dict, repeat: int = 3, settle_s: float = SETTLE_S) -> dict:
    """Time several engines' cases of one workload: {engine: case} -> {engine: dict(first_call_s,
    times, best_s)}.

    Each case is warmed up once (timed separately: compilation or cache loading for Numba); then
    ``repeat`` rounds run every case once each, after its ``setup()``, in turn. Interleaving the
    engines means that a slow spell of the machine (another tenant, a frequency change) falls on
    all of them rather than on whichever engine happened to run then, so the ratios hold better
    than their absolute times. Each timed run starts ``settle_s`` after the previous one ended.
    The garbage collector runs once before the warm-ups (a collection costs ~0.1 s once torch is
    loaded), and stays enabled, as in ordinary use.
    """
    if repeat < 1:
        raise FastMLPError(f"repeat must be at least 1, got {repeat}")
    gc.collect()
    out = {}
    for name, case in cases.items():
        case.setup()
        t0 = time.perf_counter()
        case.warmup()
        out[name] = dict(first_call_s=time.perf_counter() - t0, times=[])
    for _ in range(repeat):
        for name, case in cases.items():
            case.setup()
            time.sleep(settle_s)
            t0 = time.perf_counter()
            case.run()
            out[name]["times"].append(time.perf_counter() - t0)
    for timing in out.values():
        timing["best_s"] = min(timing["times"])
    return out


def measure_peak(n: int = 2048, repeat: int = 5, dtype=np.float32) -> dict:
    """Best-of-``repeat`` ``np.matmul`` of two n x n matrices: GFLOP/s = 2 n^3 / t / 1e9."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)  # warm-up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return dict(n=n, repeat=repeat, seconds=best, gflops=2.0 * n ** 3 / best / 1e9)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """Versions, thread counts and the CPU model."""
    import numba
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    env = dict(
        python=platform.python_version(),
        numpy=np.__version__,
        numba=numba.__version__,
        torch=None,
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        usable_cores=cores,
        numba_threads=numba.get_num_threads(),
        torch_threads=None,
        blas=None,
        thread_env={k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                    if k in os.environ},
    )
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        env["blas"] = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    try:
        torch = _torch()
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except EngineUnavailable:
        pass
    return env


# ---- whole runs -------------------------------------------------------------------------------

def _workload_cases(kind, engines, batch_sizes, cfg, quick, train_samples):
    """[(workload description, {engine: Case or EngineUnavailable})] for one kind of workload."""
    out = []
    if kind == "train":
        for b in batch_sizes:
            samples = (train_samples or {}).get(b) or default_samples(b, quick)
            name = train_name(b, samples, cfg["epoch_samples"])
            unit = f"one epoch of {cfg['epoch_samples']:,} samples"
            desc = dict(name=name, kind="train", batch_size=b, unit=unit, samples_timed=samples,
                        samples_per_unit=cfg["epoch_samples"], dtype="float32",
                        flops_per_unit=float(train_flops_per_sample() * cfg["epoch_samples"]),
                        description=f"784-128-64-10 ReLU/softmax, SGD lr={TRAIN_LR}, batch {b}, float32",
                        note="" if samples >= cfg["epoch_samples"] else
                        f"timed on {samples:,} samples, scaled to the epoch")
            out.append((desc, lambda e, b=b, s=samples: train_case(e, b, s, quick=quick)))
    elif kind == "xor":
        epochs = cfg["xor_epochs"]
        desc = dict(name="xor", kind="xor", batch_size=4, unit=f"{epochs:,} epochs",
                    samples_timed=4 * epochs, samples_per_unit=4 * epochs, dtype="float64",
                    flops_per_unit=float(train_flops_per_sample(XOR_LAYERS) * 4 * epochs),
                    description="the article's XOR: 2-4-1 sigmoid, no biases, full batch, float64",
                    note="")
        out.append((desc, lambda e: xor_case(e, epochs)))
    elif kind == "inference":
        rows = cfg["inference_rows"]
        desc = dict(name="inference", kind="inference", batch_size=None, unit=f"{rows:,} rows",
                    samples_timed=rows, samples_per_unit=rows, dtype="float32",
                    flops_per_unit=float(predict_flops_per_sample() * rows),
                    description="predict_proba of 784-128-64-10, float32", note="")
        out.append((desc, lambda e: inference_case(e, rows)))
    return out


def run_all(quick: bool = False, engines=ENGINES, batch_sizes=BATCH_SIZES, repeat: int = 3,
            workloads=WORKLOADS, train_samples: dict | None = None,
            progress: Callable[[str], Any] | None = None) -> dict:
    """Run the workloads on the engines; return JSON-serialisable results (see ``format_table``).

    quick          tiny sizes, for smoke tests (seconds, not minutes)
    engines        any of "numba", "numpy", "torch"; the xor workload always adds "article"
    batch_sizes    training batch sizes
    repeat         timed runs per case (the best is reported), after one warm-up call
    workloads      any of "train", "xor", "inference"
    train_samples  {batch_size: samples to time} overriding :func:`default_samples`
    progress       called with a short line before each case (e.g. ``click.echo``)

    Result: ``{"environment": {...}, "config": {...}, "peak": {"float32": {...}, "float64": {...}},
    "workloads": [{"name", "kind", "unit", "samples_timed", "note", ..., "engines": {engine:
    {"available", "seconds" (per unit), "seconds_timed", "times", "first_call_s", "samples_per_s",
    "gflops", "pct_peak", "ratio": {other engine: seconds / seconds_other}}}}]}``.
    An engine that is not installed has ``{"available": False, "reason": ...}``.
    """
    engines = tuple(engines)
    for e in engines:
        _check_engine(e, ENGINES)
    for w in workloads:
        if w not in WORKLOADS:
            raise FastMLPError(f"unknown workload {w!r}: use one of {', '.join(WORKLOADS)}")
    batch_sizes = tuple(int(b) for b in batch_sizes)
    if any(b < 1 for b in batch_sizes):
        raise FastMLPError(f"batch sizes must be at least 1, got {batch_sizes}")
    say = progress or (lambda line: None)
    cfg = config(quick)

    say("measuring the matrix-multiply peak")
    peak = {name: measure_peak(cfg["peak_n"], cfg["peak_repeat"], dt)
            for name, dt in (("float32", np.float32), ("float64", np.float64))}
    results = dict(environment=environment(),
                   config=dict(quick=quick, repeat=repeat, engines=list(engines),
                               batch_sizes=list(batch_sizes), workloads=list(workloads),
                               data=load_data()[3], **cfg),
                   peak=peak, workloads=[])

    for kind in WORKLOADS:
        if kind not in workloads:
            continue
        kind_engines = [e for e in XOR_ENGINES if e in engines or e == "article"] \
            if kind == "xor" else list(engines)
        for desc, build in _workload_cases(kind, engines, batch_sizes, cfg, quick, train_samples):
            entry = dict(desc, engines={})
            cases = {}
            for e in kind_engines:
                try:
                    cases[e] = build(e)
                except EngineUnavailable as exc:
                    entry["engines"][e] = dict(available=False, reason=str(exc))
            say(f"{desc['name']}: {', '.join(cases)}")
            for e, t in time_cases(cases, repeat, 0.0 if quick else SETTLE_S).items():
                case, best = cases[e], t["best_s"]
                entry["engines"][e] = dict(
                    available=True,
                    seconds=best * case.scale,
                    seconds_timed=best,
                    times=t["times"],
                    first_call_s=t["first_call_s"],
                    samples_per_s=case.samples / best,
                    gflops=case.flops / best / 1e9,
                    pct_peak=100.0 * case.flops / best / 1e9 / peak[case.dtype]["gflops"],
                )
            entry["engines"] = {e: entry["engines"][e] for e in kind_engines if e in entry["engines"]}
            del cases
            for e, r in entry["engines"].items():
                if r["available"]:
                    r["ratio"] = {o: (r["seconds"] / ro["seconds"] if ro["available"] else None)
                                  for o, ro in entry["engines"].items() if o != e}
            results["workloads"].append(entry)
    return results


# ---- report -----------------------------------------------------------------------------------

def _fmt_seconds(s):
    if s is None:
        return "n/a"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _fmt_ratio(r):
    return "n/a" if r is None else f"{r:.3f}"


def format_table(results: dict) -> str:
    """A fixed-width text report of ``run_all``'s results."""
    env, peak, cfg = results["environment"], results["peak"], results["config"]
    lines = [
        f"CPU: {env['cpu']} ({env['usable_cores']} usable cores); threads: numba {env['numba_threads']}, "
        f"torch {env['torch_threads'] if env['torch_threads'] is not None else 'n/a'}",
        f"numpy {env['numpy']} ({env['blas'] or 'unknown BLAS'}), numba {env['numba']}, "
        f"torch {env['torch'] or 'n/a (not installed)'}, python {env['python']}",
        "matmul peak: " + ", ".join(
            f"{name} {p['gflops']:.1f} GFLOP/s ({p['n']}x{p['n']}, best of {p['repeat']})"
            for name, p in peak.items()),
        f"data: {cfg['data']}" + ("   [QUICK run: tiny sizes, not representative]" if cfg["quick"] else ""),
        f"best of {cfg['repeat']} runs (engines taking turns) after one warm-up call; "
        "'first call' = that warm-up (for numba: JIT compilation or loading its cache); "
        "t/X = seconds / seconds of engine X "
        "(< 1: faster than X)",
        "",
    ]
    header = ("engine", "seconds", "samples/s", "GFLOP/s", "% peak", "first call",
              "t/numpy", "t/torch", "t/article")
    widths = (8, 10, 12, 9, 7, 11, 8, 8, 9)

    def row(cells):
        return "  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))

    speedups = []
    for w in results["workloads"]:
        title = f"{w['name']}: {w['description']}; time per {w['unit']}"
        if w["note"]:
            title += f" ({w['note']})"
        lines.append(title)
        lines.append(row(header))
        for e, r in w["engines"].items():
            if not r["available"]:
                lines.append(row((e, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"))
                            + f"   ({r['reason']})")
                continue
            ratio = r["ratio"]
            lines.append(row((
                e, _fmt_seconds(r["seconds"]), f"{r['samples_per_s']:,.0f}", f"{r['gflops']:.2f}",
                f"{r['pct_peak']:.1f}%", _fmt_seconds(r["first_call_s"]),
                *(("-" if o == e else _fmt_ratio(ratio.get(o)) if o in w["engines"] else "")
                  for o in ("numpy", "torch", "article")))))
        numba = w["engines"].get("numba")
        if numba and numba["available"]:
            parts = [f"{1 / x:.1f}x vs {o}" for o, x in numba["ratio"].items() if x]
            if parts:
                speedups.append(f"  {w['name']:<24} " + ", ".join(parts))
        lines.append("")
    if speedups:
        lines.append("numba speed-up (other engine's time / numba's time):")
        lines.extend(speedups)
    return "\n".join(lines).rstrip() + "\n"
