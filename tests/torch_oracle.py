"""The PyTorch oracle shared by the tests: a torch copy of a fastmlp model."""

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}


def torch_net(model):
    """nn.Sequential with the model's layers, hidden activations, dtype and current weights.
    Returns (net, its Linear layers). Our W is (fan_in, fan_out): torch's weight transposed."""
    mods = []
    for l, (i, o) in enumerate(zip(model.layers[:-1], model.layers[1:])):
        mods.append(nn.Linear(i, o))
        if l < len(model.layers) - 2:
            mods.append(ACTIVATIONS[model.activations[l]]())
    net = nn.Sequential(*mods).to(torch.float64 if model.dtype == np.float64 else torch.float32)
    lins = [m for m in net if isinstance(m, nn.Linear)]
    copy_weights(model, lins)
    return net, lins


def copy_weights(model, linears):
    """Give torch Linear layers the model's weights (torch stores W as (out, in) = our W.T)."""
    with torch.no_grad():
        for lin, W, b in zip(linears, model.weights, model.biases, strict=True):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b.copy()))


def torch_batch_losses(net, opt, X, y, batch):
    """One epoch of torch training, cross-entropy on the batches X[lo:lo + batch] in order; the loss
    of every batch before its step. X, y: tensors."""
    losses = []
    for lo in range(0, len(X), batch):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(X[lo:lo + batch]), y[lo:lo + batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
