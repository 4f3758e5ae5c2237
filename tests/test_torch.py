"""fastmlp against PyTorch: the same initial weights, the same batches, plain SGD on both sides.

PyTorch is the independent oracle for the forward pass, the losses (CrossEntropyLoss,
BCEWithLogitsLoss, MSELoss, all with their default mean reduction) and autograd's gradients.
The first test is the seed article's SimpleNeuralNetwork, written as the article writes it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fastmlp import Model
from torch_oracle import copy_weights, torch_net

torch.set_num_threads(1)

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-12)}


class SimpleNeuralNetwork(nn.Module):
    """The seed article's PyTorch model: 784 -> 128 -> 64 -> 10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.view(-1, 784)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def _linears(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _torch_loss(model):
    if model.loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    if model.loss == "binary_cross_entropy":
        return nn.BCEWithLogitsLoss()
    if model.output == "sigmoid":
        return lambda z, y: nn.functional.mse_loss(torch.sigmoid(z), y)
    return nn.MSELoss()


def _torch_train(net, loss_fn, X, y, batch, lr, epochs):
    """Plain SGD in order (no shuffling); each batch's loss before its update."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for lo in range(0, len(X), batch):
            opt.zero_grad()
            loss = loss_fn(net(X[lo:lo + batch]), y[lo:lo + batch])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return np.array(losses)


def _fit_with_batch_losses(model, X, y, batch, lr, epochs):
    """fit(shuffle=False); also the mean loss of each stretch of batches between progress reports,
    recovered from the running loss: [(first batch, last batch + 1, mean loss), ...] per epoch."""
    reports = []
    history = model.fit(X, y, epochs=epochs, batch_size=batch, lr=lr, shuffle=False,
                        progress=lambda e, done, total, loss: reports.append((e, done, total, loss)))
    stretches = []
    prev = {}
    for e, done, total, loss in reports:
        t0, r0 = prev.get(e, (0, 0.0))
        stretches.append((e * total + t0, e * total + done, (loss * done - r0 * t0) / (done - t0)))
        prev[e] = (done, loss)
    return history, stretches


def _compare(model, net, X, y, batch, lr, epochs, dtype):
    tol = TOL[dtype]
    tdt = TORCH_DTYPE[dtype]
    Xt = torch.from_numpy(X.astype(dtype))
    yt = torch.from_numpy(y) if model.loss == "cross_entropy" else torch.from_numpy(y.astype(dtype))
    net = net.to(tdt)
    copy_weights(model, _linears(net))
    start = model._params.copy()
    torch_losses = _torch_train(net, _torch_loss(model), Xt, yt, batch, lr, epochs)
    history, stretches = _fit_with_batch_losses(model, X, y, batch, lr, epochs)
    assert np.abs(model._params - start).max() > 1e-3  # moved far beyond the tolerances

    n_batches = len(X) // batch
    assert len(torch_losses) == epochs * n_batches
    assert stretches[-1][1] == epochs * n_batches
    for t0, t1, loss in stretches:
        assert loss == pytest.approx(torch_losses[t0:t1].mean(), rel=max(tol["rtol"], 1e-12)), (t0, t1)
    np.testing.assert_allclose(history.loss, torch_losses.reshape(epochs, n_batches).mean(axis=1),
                               rtol=max(tol["rtol"], 1e-12))
    for l, (lin, W, b) in enumerate(zip(_linears(net), model.weights, model.biases)):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, **tol, err_msg=f"W{l}")
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), **tol, err_msg=f"b{l}")

    X_new = np.random.default_rng(99).random((50, X.shape[1])).astype(dtype)
    with torch.no_grad():
        z = net(torch.from_numpy(X_new))
        p = {"softmax": lambda z: torch.softmax(z, 1), "sigmoid": torch.sigmoid,
             "identity": lambda z: z}[model.output](z).numpy()
    np.testing.assert_allclose(model.predict_proba(X_new), p, **tol)


def _image_like(n, seed):
    """Random 784-pixel 'images' in [0, 1] with many exact zeros (like MNIST), and digit labels."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784))
    X[X < 0.55] = 0.0
    return X, rng.integers(0, 10, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_article_network_matches_pytorch(dtype):
    """The article's network, SGD lr 0.1, 20 batches of 32 in order: same losses, same weights."""
    X, y = _image_like(640, seed=1)
    model = Model([784, 128, 64, 10], dtype=dtype, seed=3)
    net = SimpleNeuralNetwork()
    assert sum(p.numel() for p in net.parameters()) == model.n_params
    _compare(model, net, X, y, batch=32, lr=0.1, epochs=1, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers,activation,output,loss", [
    ([20, 16, 8, 3], "tanh", "sigmoid", "binary_cross_entropy"),
    ([20, 12, 1], "sigmoid", "sigmoid", "mse"),
    ([20, 16, 2], "relu", "identity", "mse"),
    ([20, 10, 8, 5], ["sigmoid", "relu"], "softmax", "cross_entropy"),
], ids=["tanh-bce", "sigmoid-sigmoid-mse", "relu-identity-mse", "mixed-softmax-ce"])
def test_small_networks_match_pytorch(layers, activation, output, loss, dtype):
    rng = np.random.default_rng(5)
    model = Model(layers, activation=activation, output=output, loss=loss, dtype=dtype, seed=6,
                  init="xavier")
    for i, b in enumerate(model.biases):  # non-zero starting biases
        model.biases[i] = rng.normal(0, 0.3, b.shape)
    X = rng.standard_normal((160, layers[0]))
    k = layers[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, k, 160)
    elif output == "sigmoid":
        y = (rng.random((160, k)) < 0.5).astype(np.float64)
        if loss == "binary_cross_entropy":
            y[::3] = rng.random((len(y[::3]), k))  # soft targets too
    else:
        y = rng.standard_normal((160, k)) * 2
    _compare(model, torch_net(model)[0], X, y, batch=16, lr=0.2, epochs=2, dtype=dtype)


def test_pytorch_gradient_of_first_batch_float64():
    """The gradient itself, not only its effect: fastmlp's first SGD step recovers autograd's."""
    X, y = _image_like(32, seed=2)
    model = Model([784, 128, 64, 10], dtype=np.float64, seed=4)
    net = SimpleNeuralNetwork().double()
    copy_weights(model, _linears(net))
    nn.CrossEntropyLoss()(net(torch.from_numpy(X)), torch.from_numpy(y)).backward()
    before = [W.copy() for W in model.weights] + [b.copy() for b in model.biases]
    model.fit(X, y, epochs=1, batch_size=32, lr=1.0, shuffle=False)
    after = list(model.weights) + list(model.biases)
    lins = _linears(net)
    expected = [lin.weight.grad.numpy().T for lin in lins] + [lin.bias.grad.numpy() for lin in lins]
    for b, a, g in zip(before, after, expected):
        np.testing.assert_allclose(b - a, g, rtol=1e-9, atol=1e-13)
