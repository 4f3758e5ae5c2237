"""Two models trained at the same time in two threads of one process give bit-identical weights to
the same two models trained one after the other: models share no mutable state (the compiled
kernels, their workspaces, random generators)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fastmlp import Model

LAYERS = [784, 64, 10]
N = 2048


def _data(seed):
    rng = np.random.default_rng(seed)
    X = rng.random((N, LAYERS[0]), dtype=np.float32)
    y = rng.integers(0, LAYERS[-1], N)
    return X, y


def _train(seed, X, y, log=None, with_progress=True):
    model = Model(LAYERS, seed=seed)
    progress = None
    if with_progress:  # progress makes fit return to Python many times per epoch: the threads interleave
        def progress(epoch, done, total, loss):
            if log is not None:
                log.append((seed, time.perf_counter()))
    history = model.fit(X, y, epochs=2, batch_size=32, lr=0.05, progress=progress)
    return model, history


@pytest.mark.parametrize("with_progress", [True, False], ids=["interleaved", "whole-epochs"])
def test_two_threads_train_like_one_after_another(with_progress):
    seeds = (11, 22)
    data = {s: _data(s) for s in seeds}
    # Compile first so that both threads spend their time training, not waiting for numba.
    Model(LAYERS, seed=0).fit(data[11][0][:64], data[11][1][:64], epochs=1, batch_size=32)

    sequential = {s: _train(s, *data[s]) for s in seeds}

    results, errors, log = {}, [], []

    def work(seed):
        try:
            results[seed] = _train(seed, *data[seed], log=log, with_progress=with_progress)
        except BaseException as exc:  # reported below: an exception in a thread would vanish
            errors.append((seed, exc))

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a training thread did not finish"
    assert not errors, errors

    for s in seeds:
        model, history = results[s]
        ref_model, ref_history = sequential[s]
        assert model._params.tobytes() == ref_model._params.tobytes(), f"seed {s}: weights differ"
        assert history.loss == ref_history.loss, f"seed {s}: losses differ"
    assert sequential[11][0]._params.tobytes() != sequential[22][0]._params.tobytes()

    if with_progress:
        # The two trainings really overlapped: each thread reported progress while the other one
        # was still running.
        first_end = min(max(t for s2, t in log if s2 == s) for s in seeds)
        assert {s for s, t in log if t < first_end} == set(seeds), "the threads did not run concurrently"


def test_threads_sharing_nothing_but_the_input_data():
    """Both threads read the same X and y arrays (read-only use); results as if sequential."""
    X, y = _data(5)
    X.flags.writeable = False
    sequential = [_train(s, X, y)[0]._params.tobytes() for s in (1, 2)]
    results = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, _train(s, X, y)[0]._params.tobytes()))
               for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [results.get(1), results.get(2)] == sequential
