"""The seed article's XOR network, as fastmlp runs it.

The article's NumPy program: a 2-4-1 network, sigmoid everywhere, no biases, float64, weights from
``np.random.seed(42)`` then ``np.random.randn(2, 4)`` and ``np.random.randn(4, 1)``, full batch,
learning rate 0.5, 10,000 epochs, and the update

    error = y - output
    W += lr * input.T @ (error * output * (1 - output))        (and back through the hidden layer)

That rule is gradient descent on the *sum* of 0.5 * error^2. fastmlp's ``mse`` loss is the *mean*
of error^2 (PyTorch's convention), whose gradient is 2 / (samples * outputs) times smaller in
scale, so the same steps take ``lr * samples * outputs / 2``: 0.5 * 4 * 1 / 2 = 1.0. The factor is
a power of two, so the arithmetic is the same to the last bit of scaling.
"""

import numpy as np

from .model import Model

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y = np.array([[0], [1], [1], [0]], dtype=np.float64)

ARTICLE = dict(hidden=4, seed=42, lr=0.5, epochs=10_000)


def article_model(hidden=4, seed=42, engine="numba") -> Model:
    """The article's 2-hidden-1 sigmoid network with its legacy-NumPy initial weights."""
    model = Model([2, hidden, 1], activation="sigmoid", output="sigmoid", loss="mse", init="normal",
                  bias=False, dtype=np.float64, engine=engine)
    np.random.seed(seed)
    model.weights[0] = np.random.randn(2, hidden)
    model.weights[1] = np.random.randn(hidden, 1)
    return model


def model_lr(article_lr: float) -> float:
    """The fastmlp learning rate that takes the article's steps (see the module docstring)."""
    return article_lr * X.shape[0] * Y.shape[1] / 2


def train(model: Model, epochs=10_000, lr=0.5):
    """Full-batch training with the article's learning rate; returns fastmlp's History."""
    return model.fit(X, Y, epochs=epochs, batch_size=X.shape[0], lr=model_lr(lr), shuffle=False)
