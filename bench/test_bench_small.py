"""The small-network path against the layer kernels on the same tiny networks: the measurements
behind ``kernels.small.SMALL_MAX_WORK``. One group per network and batch size, two paths in each:
``small`` (``train_small``) and ``blocked`` (``network.train_blocked``), timing the same 2,000
steps (float64, ReLU, sigmoid + binary cross-entropy, plain SGD) from the same weights."""

import numpy as np
import pytest

from fastmlp import Model
from fastmlp.kernels import network, small
from fastmlp.kernels.optim import SGD
from fastmlp.kernels.output import BINARY_CROSS_ENTROPY, SIGMOID

STEPS = 2_000
# (layers, batch): work per step = batch x weights, around the threshold (SMALL_MAX_WORK)
NETWORKS = [((2, 4, 1), 4), ((2, 4, 1), 16), ((2, 16, 1), 4), ((4, 16, 3), 4), ((2, 64, 1), 4),
            ((2, 16, 1), 16), ((2, 128, 1), 4), ((2, 64, 1), 16), ((4, 32, 2), 16), ((8, 32, 4), 16),
            ((4, 32, 4), 16), ((2, 64, 1), 32), ((8, 32, 4), 8), ((16, 32, 8), 16), ((8, 32, 4), 64)]


def _args(layers, batch):
    model = Model(list(layers), activation="relu", output="sigmoid", loss="binary_cross_entropy",
                  dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, layers[0]))
    y = (rng.random((256, layers[-1])) > 0.5).astype(np.float64)
    order = rng.integers(0, 256, STEPS * batch).astype(np.int64)
    bounds = np.arange(0, STEPS * batch + 1, batch, dtype=np.int64)
    state = np.zeros((0, model._n_trainable))
    common = [np.zeros(STEPS), model._params.copy(), np.zeros_like(model._params),
              np.zeros(network.workspace_size(model._layout, batch)), X, np.zeros(0, np.int64), y,
              np.zeros(0), order, bounds, np.full(STEPS, 0.01), model._layout, SIGMOID,
              BINARY_CROSS_ENTROPY, model._n_trainable, batch, SGD, state]
    return model, common, state


@pytest.mark.parametrize("path", ["small", "blocked"])
@pytest.mark.parametrize("layers,batch", [
    pytest.param(layers, batch, id=f"{'-'.join(map(str, layers))}-b{batch}",
                 marks=pytest.mark.benchmark(group=f"small-path-{'-'.join(map(str, layers))}-b{batch}"))
    for layers, batch in NETWORKS])
def test_small_path(benchmark, path, layers, batch):
    model, common, state = _args(layers, batch)
    hyper = np.zeros(6)
    initial = model._params.copy()

    def reset():
        common[1][...] = initial
        return (), {}

    if path == "small":
        def run():
            small.train_small(*common, hyper, 0)
    else:
        def run():
            network.train_blocked(*common, np.empty_like(state), hyper, 0, model._rates, model._running, 0)
    reset()
    run()  # compile or load the cache outside the timed rounds
    benchmark.extra_info.update(path=path, work_per_step=batch * sum(a * b for a, b in zip(layers, layers[1:])),
                                takes_small_path=small.use_small(model._layout, batch), steps=STEPS)
    benchmark.pedantic(run, setup=reset, rounds=5, iterations=1)
