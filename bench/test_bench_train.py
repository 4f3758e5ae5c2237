"""Training the seed network 784-128-64-10 (ReLU, softmax + cross-entropy, SGD lr=0.01, float32):
one epoch of pre-shuffled samples per round, one group per batch size. Small batches are timed on
fewer samples; the group name then says how many (``train-b1-6000samples``). ``train-b16-adam``
and ``train-b64-adam``: the same with Adam (lr 0.001, PyTorch's other defaults)."""

import pytest

from fastmlp import benchmarks as B

QUICK = B.quick_from_env()


def _batch_param(b):
    group = B.train_name(b, B.default_samples(b, QUICK), B.config(QUICK)["epoch_samples"])
    return pytest.param(b, id=f"b{b}", marks=pytest.mark.benchmark(group=group))


@pytest.mark.parametrize("engine", B.ENGINES)
@pytest.mark.parametrize("batch_size", [_batch_param(b) for b in B.BATCH_SIZES])
def test_train(run_case, engine, batch_size):
    run_case(B.train_case(engine, batch_size, quick=QUICK))


def _adam_param(b):
    group = B.train_name(b, B.default_samples(b, QUICK), B.config(QUICK)["epoch_samples"], "adam")
    return pytest.param(b, id=f"b{b}-adam", marks=pytest.mark.benchmark(group=group))


@pytest.mark.parametrize("engine", B.ENGINES)
@pytest.mark.parametrize("batch_size", [_adam_param(b) for b in (16, 64)])
def test_train_adam(run_case, engine, batch_size):
    run_case(B.train_case(engine, batch_size, quick=QUICK, optimizer="adam"))
