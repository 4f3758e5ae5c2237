"""fastmlp: a multilayer-perceptron engine whose forward pass, backpropagation and SGD updates are
explicit-loop Numba kernels.

    from fastmlp import Model
    model = Model([784, 128, 64, 10])        # 784-128-64-10, ReLU, softmax + cross-entropy
    history = model.fit(X, y, epochs=5, batch_size=64, lr=0.1)
    model.score(X_test, y_test)
"""

from .errors import FastMLPError
from .model import History, Model, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["Model", "History", "FastMLPError", "TrainingDiverged", "__version__"]
