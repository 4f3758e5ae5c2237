"""The seed article's XOR run (2-4-1 sigmoid, no biases, float64, full batch of 4, 10,000 epochs):
fastmlp's two engines, the article's own NumPy loop ("article") and PyTorch, in one group."""

import pytest

from fastmlp import benchmarks as B

EPOCHS = B.config(B.quick_from_env())["xor_epochs"]


@pytest.mark.benchmark(group="xor")
@pytest.mark.parametrize("engine", B.XOR_ENGINES)
def test_xor(run_case, engine):
    run_case(B.xor_case(engine, epochs=EPOCHS))
