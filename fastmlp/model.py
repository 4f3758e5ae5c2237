"""The ``Model``: owns the parameters, validates every input, and drives the compiled kernels.

All weights and biases live in one flat buffer, ``_params``, laid out as
    W_0, W_1, ..., W_{L-1}, b_0, b_1, ..., b_{L-1}
so an optimizer step is a single loop over ``_params[:n_trainable]`` (a model without biases
simply stops before them). ``model.weights[i]`` and ``model.biases[i]`` are views into it.

The epoch loop's bookkeeping (shuffling, learning rates per step, progress, divergence checks)
stays here in Python; each call into an engine runs many mini-batches with no allocation.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import reference
from .errors import FastMLPError
from .kernels import network
from .kernels.activations import ACTIVATIONS, IDENTITY
from .kernels.optim import OPTIMIZERS, state_rows
from .kernels.output import LOSSES, OUTPUTS
from .validation import (Integer, OneOf, Optional, Real, all_finite, check_labels, check_targets, check_X,
                         validate_params)

ENGINES = {"numba": network, "numpy": reference}

# Which losses each output transform supports; the first is the default.
OUTPUT_LOSSES = {
    "softmax": ("cross_entropy",),
    "sigmoid": ("binary_cross_entropy", "mse"),
    "identity": ("mse",),
}


def _init_normal(rng, fan_in, fan_out):
    return rng.standard_normal((fan_in, fan_out))


def _init_he(rng, fan_in, fan_out):
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def _init_he_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def _init_xavier(rng, fan_in, fan_out):
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))


def _init_xavier_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


# Weight initialisations, by name: He (Kaiming) for ReLU, Xavier/Glorot for sigmoid and tanh, and
# the seed article's plain standard normal. Biases start at zero.
INITS = {
    "he": _init_he,
    "he_uniform": _init_he_uniform,
    "xavier": _init_xavier,
    "xavier_uniform": _init_xavier_uniform,
    "normal": _init_normal,
}

DTYPES = {"float32": np.float32, "float64": np.float64}

# Learning-rate schedules, per epoch e of E (torch's StepLR, CosineAnnealingLR, ReduceLROnPlateau):
#   constant  lr
#   step      lr * gamma ** (e // step_size)
#   cosine    min_lr + (lr - min_lr) * (1 + cos(pi * e / E)) / 2
#   plateau   multiply by gamma when the monitored loss (validation if any, else training) has not
#             improved for plateau_patience epochs; never below min_lr
SCHEDULES = ("constant", "step", "cosine", "plateau")

MODEL_PARAMS = {
    "output": OneOf(tuple(OUTPUTS)),
    "init": OneOf(tuple(INITS)),
    "bias": OneOf((True, False)),
    "seed": Optional(Integer(low=0)),
    "engine": OneOf(tuple(ENGINES)),
    "batchnorm": OneOf((True, False)),
    "residual": OneOf((True, False)),
}

FIT_DEFAULTS = dict(epochs=1, batch_size=32, lr=0.01, shuffle=True, seed=None, optimizer="sgd",
                    momentum=0.0, nesterov=False, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
                    schedule="constant", step_size=10, gamma=0.1, min_lr=0.0, plateau_patience=2,
                    validation_split=0.0, patience=None, track_grad_norms=False)

FIT_PARAMS = {
    "epochs": Integer(low=1),
    "batch_size": Integer(low=1),
    "lr": Real(low=0.0, low_open=True),
    "shuffle": OneOf((True, False)),
    "seed": Optional(Integer(low=0)),
    "optimizer": OneOf(tuple(OPTIMIZERS)),
    "momentum": Real(low=0.0, high=1.0, high_open=True),
    "nesterov": OneOf((True, False)),
    "weight_decay": Real(low=0.0),
    "beta1": Real(low=0.0, high=1.0, high_open=True),
    "beta2": Real(low=0.0, high=1.0, high_open=True),
    "eps": Real(low=0.0, low_open=True),
    "schedule": OneOf(tuple(SCHEDULES)),
    "step_size": Integer(low=1),
    "gamma": Real(low=0.0, high=1.0, low_open=True),
    "min_lr": Real(low=0.0),
    "plateau_patience": Integer(low=0),
    "validation_split": Real(low=0.0, high=1.0, high_open=True),
    "patience": Optional(Integer(low=1)),
    "track_grad_norms": OneOf((True, False)),
}

# Largest batch of rows pushed through the network at once by predict_proba (measured on the seed
# network, 10,000 rows: 15.7 ms in chunks of 256, 14.9 in chunks of 512, no better beyond).
PREDICT_ROWS = 512
# When fit has no per-epoch callback, whole epochs are grouped into one compiled call of at most
# this many sample indices (the seed XOR run's 10,000 epochs become a single call).
GROUP_INDICES = 1 << 20


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch.

    loss        mean training loss (each batch's loss is taken before its update)
    val_loss    loss on the validation split, after the epoch (when validation_split > 0)
    lr          the learning rate the epoch used
    grad_norms  the L2 norm of each layer's weight gradient on the epoch's last batch
                (when track_grad_norms is on): vanishing gradients show up as tiny early layers
    best_epoch  with early stopping: the epoch whose weights the model kept
    """
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0

    def __getitem__(self, key):
        return getattr(self, key)


class _Run:
    """The state of one ``fit`` call: its data, schedule, optimizer buffers and workspace."""

    # What a checkpoint adds to the fit arguments so that a resumed run continues exactly.
    RESUME_KEYS = ("step", "dropout_seed", "split_seed", "n_samples", "plateau_best", "plateau_waited",
                   "plateau_lr", "best_val", "best_epoch", "checkpoint_every", "batches_done",
                   "partial_loss", "epoch_lr")

    def __init__(self, model, X, y_int, y_float, weights, rows, settings, rng, resuming=False):
        self.model, self.X, self.y_int, self.y_float, self.rows = model, X, y_int, y_float, rows
        self.weights = weights
        self.s, self.rng = settings, rng
        n = len(rows)
        self.bmax = min(settings["batch_size"], n)
        self.epoch_bounds = np.append(np.arange(0, n, self.bmax), n).astype(np.int64)
        self.ws = model._workspace(self.bmax)
        name = settings["optimizer"]
        self.opt = OPTIMIZERS[name]
        self.opt_state = np.zeros((state_rows(name, settings["momentum"]), model._n_trainable), model.dtype)
        self.opt_work = np.empty_like(self.opt_state)  # the kernels' copy, in their layout
        self.hyper = np.array([settings["momentum"], settings["nesterov"], settings["weight_decay"],
                               settings["beta1"], settings["beta2"], settings["eps"]], np.float64)
        self.step = 0
        # (a resumed run takes its dropout seed from the checkpoint instead of drawing a new one)
        self.dropout_seed = int(rng.integers(2**62)) if any(model.dropout) and not resuming else 0
        self.plateau = (np.inf, 0, settings["lr"])  # (best loss, epochs without improvement, lr)

    def save(self, path, epoch, history, best, split_seed, n_samples, mid_epoch=None):
        """Write a checkpoint of the run after ``epoch`` whole epochs (and, mid_epoch = (batches
        done, their summed loss x size, the epoch's lr), part of the next)."""
        from .checkpoint import save_checkpoint
        finite = lambda v: None if v is None or not np.isfinite(v) else float(v)  # noqa: E731
        batches_done, partial, epoch_lr = mid_epoch or (0, 0.0, 0.0)
        fit = dict(self.s, step=self.step, dropout_seed=self.dropout_seed, split_seed=split_seed,
                   n_samples=n_samples, plateau_best=finite(self.plateau[0]), plateau_waited=self.plateau[1],
                   plateau_lr=float(self.plateau[2]), best_val=finite(best[0]), best_epoch=best[1],
                   checkpoint_every=self.checkpoint_every, batches_done=batches_done,
                   partial_loss=float(partial), epoch_lr=float(epoch_lr))
        rng = self.epoch_rng_state if mid_epoch else self.rng
        arrays = {f"optimizer{i}": row for i, row in enumerate(self.opt_state)}
        if best[2] is not None:
            arrays["best_params"] = best[2]
        history_lists = {k: v for k, v in dataclasses.asdict(history).items() if isinstance(v, list)}
        save_checkpoint(path, self.model, dict(epoch=epoch, rng=rng, history=history_lists,
                                               fit=fit, arrays=arrays))

    def restore(self, state, history, n_samples):
        """Take up a checkpointed run: returns (epochs done, early-stopping best)."""
        if state["n_samples"] != n_samples:
            raise FastMLPError(f"the checkpoint was written for {state['n_samples']} samples; "
                               f"these data have {n_samples}: resume needs the same X and y")
        self.step, self.dropout_seed = state["step"], state["dropout_seed"]
        inf = lambda v: np.inf if v is None else v  # noqa: E731
        self.plateau = (inf(state["plateau_best"]), state["plateau_waited"], state["plateau_lr"])
        for i in range(len(self.opt_state)):
            self.opt_state[i] = state["arrays"][f"optimizer{i}"]
        for key, values in state["history"].items():
            getattr(history, key).extend(values)
        best = (inf(state["best_val"]), state["best_epoch"], state["arrays"].get("best_params"))
        self.resumed_lr = state["epoch_lr"]
        return state["epoch"], best, state["batches_done"], state["partial_loss"]

    def lrs_for(self, first, count, history):
        """The learning rates of epochs first, ..., first + count - 1 (an array)."""
        s = self.s
        if s["schedule"] == "plateau":  # depends on each epoch's loss: epochs come one at a time
            return np.array([self.lr_for(first + g, history) for g in range(count)])
        epoch = np.arange(first, first + count)
        if s["schedule"] == "step":
            return s["lr"] * s["gamma"] ** (epoch // s["step_size"])
        if s["schedule"] == "cosine":
            return s["min_lr"] + (s["lr"] - s["min_lr"]) * (1 + np.cos(np.pi * epoch / s["epochs"])) / 2
        return np.full(count, s["lr"], np.float64)

    def lr_for(self, epoch, history):
        """The learning rate of ``epoch`` under the schedule."""
        s = self.s
        if s["schedule"] == "step":
            return s["lr"] * s["gamma"] ** (epoch // s["step_size"])
        if s["schedule"] == "cosine":
            return s["min_lr"] + (s["lr"] - s["min_lr"]) * (1 + np.cos(np.pi * epoch / s["epochs"])) / 2
        if s["schedule"] == "plateau" and history.loss:
            monitored = (history.val_loss or history.loss)[-1]
            best, waited, lr = self.plateau
            if monitored < best:
                best, waited = monitored, 0
            else:
                waited += 1
                if waited > s["plateau_patience"]:
                    lr, waited = max(lr * s["gamma"], s["min_lr"]), 0
            self.plateau = (best, waited, lr)
            return lr
        return s["lr"] if s["schedule"] != "plateau" else self.plateau[2]

    def epochs(self, lrs, progress, first_epoch, history, interrupt=None, skip=0, partial=0.0):
        """Train len(lrs) epochs (epoch e at lrs[e]); return their mean losses.

        ``interrupt()`` is asked between calls (a few dozen per epoch); when it answers True the
        epoch stops there and ``Interrupted`` carries where. ``skip`` batches of the (single) epoch
        were done before, with ``partial`` their summed loss x batch size: a resumed epoch.
        """
        n, group = len(self.rows), len(lrs)
        n_batches = len(self.epoch_bounds) - 1
        self.epoch_rng_state = self.rng.bit_generator.state  # a mid-epoch checkpoint redraws from here
        if self.s["shuffle"]:
            order = np.concatenate([self.rows[self.rng.permutation(n)] for _ in range(group)])
        else:
            order = np.tile(self.rows, group)
        bounds = np.empty(group * n_batches + 1, np.int64)  # batch t of epoch e: e n + epoch_bounds[t]
        np.add(self.epoch_bounds[:-1], n * np.arange(group, dtype=np.int64)[:, None],
               out=bounds[:-1].reshape(group, n_batches))
        bounds[-1] = group * n
        step_lrs = np.asarray(lrs, dtype=self.model.dtype)
        if n_batches > 1:
            step_lrs = np.repeat(step_lrs, n_batches)
        losses = np.zeros(group * n_batches, np.float64)
        sizes = np.diff(self.epoch_bounds)  # of an epoch's batches
        chunk = max(1, n_batches // 50) if (progress or interrupt) else group * n_batches
        for t0 in range(skip, group * n_batches, chunk):
            t1 = min(t0 + chunk, group * n_batches)
            self._call(losses[t0:t1], order, bounds[t0:t1 + 1], step_lrs[t0:t1], history)
            if progress or interrupt is not None:  # (then each call holds part of one epoch)
                done = self._summed(np.append(partial, losses[skip:t1] * sizes[skip:t1]))
                if progress:
                    progress(first_epoch, t1, n_batches, done / float(sizes[:t1].sum()))
                if interrupt is not None and t1 < n_batches and interrupt():
                    raise Interrupted(t1, done)
        if n_batches == 1:  # full-batch epochs (the XOR run: 10,000 of them in one call): each
            return losses  # batch's loss is its epoch's, and no such epoch is resumed part-way
        # Each epoch's loss x size, summed in batch order (after a resumed epoch's partial sum), so
        # that a resumed epoch reports exactly the loss of the uninterrupted one.
        weighted = losses.reshape(group, n_batches) * sizes
        weighted[0, :skip] = 0.0
        weighted[0, 0] += partial
        return np.cumsum(weighted, axis=1)[:, -1] / n

    @staticmethod
    def _summed(values):
        """Sum in order (np.cumsum adds one term at a time; np.sum pairs them)."""
        return float(np.cumsum(values)[-1])

    def _call(self, losses, order, bounds, lrs, history):
        """One engine call; on divergence, restore the weights from before it and raise."""
        m = self.model
        saved = (m._params.copy(), self.opt_state.copy(), m._running.copy())
        ENGINES[m.engine].train_batches(
            losses, m._params, m._grads, self.ws, self.X, self.y_int, self.y_float, self.weights,
            order, bounds,
            lrs, m._layout, OUTPUTS[m.output], LOSSES[m.loss], m._n_trainable, self.bmax,
            self.opt, self.opt_state, self.opt_work, self.hyper, self.step, m._rates, m._running, self.dropout_seed)
        self.step += len(lrs)
        if not (all_finite(losses) and all_finite(m._params)):
            m._params[...], self.opt_state[...], m._running[...] = saved
            lr = float(lrs.max())
            raise TrainingDiverged(
                f"training diverged: the loss or the weights became NaN or inf at learning rate "
                f"lr={lr:g}. The learning rate is probably too large: try a smaller one (for example "
                f"lr={lr / 10:g}). The model keeps its last finite weights.", history)


class Interrupted(Exception):
    """Raised inside ``_Run.epochs`` when ``interrupt()`` asked to stop mid-epoch."""

    def __init__(self, batches_done, partial):
        super().__init__(f"interrupted after {batches_done} batches")
        self.batches_done, self.partial = batches_done, partial


class TrainingInterrupted(Exception):
    """``fit`` stopped because ``interrupt()`` asked it to; the run is saved in ``checkpoint``."""

    def __init__(self, checkpoint, history):
        super().__init__(f"training interrupted; the run is saved in {checkpoint}")
        self.checkpoint, self.history = checkpoint, history


class TrainingDiverged(FastMLPError):
    """The loss or the weights became NaN or inf; the model keeps its last finite weights."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class _ParamList:
    """``model.weights`` / ``model.biases``: views into the flat buffer.

    ``model.weights[i]`` is the live array (writes to it change the model);
    ``model.weights[i] = array`` copies ``array`` in after checking its shape and values.
    """

    def __init__(self, model, kind):
        self._model, self._kind = model, kind

    def _views(self):
        return self._model._views(self._kind)

    def __len__(self):
        return len(self._model.layers) - 1

    def __getitem__(self, i):
        return self._views()[i]

    def __iter__(self):
        return iter(self._views())

    def __setitem__(self, i, value):
        target = self._views()[i]
        target[...] = self._checked(i, target, value)

    def _checked(self, i, target, value):
        if not target.flags.writeable:
            raise FastMLPError(f"{self._kind}[{i}] is read-only: this model was created with bias=False")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise FastMLPError(f"{self._kind}[{i}] must be an array of numbers, got {value!r}") from None
        if arr.shape != target.shape:
            raise FastMLPError(f"{self._kind}[{i}] has shape {target.shape}, got an array of shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise FastMLPError(f"{self._kind}[{i}] must be finite; the new values contain NaN or inf")
        return arr

    def assign(self, values):
        """``model.weights = [W_0, W_1, ...]``: every array is checked before any is copied in, so a
        bad one leaves the model as it was."""
        targets = self._views()
        if isinstance(values, np.ndarray) or not hasattr(values, "__len__") or len(values) != len(targets):
            raise FastMLPError(f"{self._kind} takes a list of {len(targets)} arrays, one per layer "
                               f"({', '.join(str(t.shape) for t in targets)})")
        checked = [self._checked(i, t, v) for i, (t, v) in enumerate(zip(targets, values))]
        for target, arr in zip(targets, checked):
            target[...] = arr

    def __repr__(self):
        return f"<{len(self)} {self._kind}: {', '.join(str(v.shape) for v in self._views())}>"


class Model:
    """A multilayer perceptron.

    >>> model = Model([784, 128, 64, 10])          # the seed article's SimpleNeuralNetwork
    >>> model.n_params
    109386

    layers      sizes of every layer, input first: [n_inputs, hidden..., n_outputs]
    activation  hidden-layer activation: a name, or one name per hidden layer
                ("relu", "sigmoid", "tanh", "identity")
    output      "softmax" (class labels), "sigmoid" (independent 0/1 targets), "identity" (regression)
    loss        None for the output's natural loss, or "cross_entropy", "binary_cross_entropy", "mse"
    init        "he", "he_uniform", "xavier", "xavier_uniform", "normal" (standard normal)
    bias        whether layers have biases
    dtype       np.float32 or np.float64: every array the model owns, and every computation
    seed        fixes the initial weights and, unless fit gets its own, the shuffling
    engine      "numba" (the compiled kernels) or "numpy" (the reference engine)
    """

    # Set once, by __init__: the parameter buffer, its layout and the workspaces are built from
    # them, so changing one afterwards would leave the model describing another network.
    _FIXED = frozenset({"layers", "activations", "dropout", "batchnorm", "residual", "output", "loss",
                        "init", "bias", "dtype", "seed"})

    def __setattr__(self, name, value):
        if name in self.__dict__:
            if name in Model._FIXED:
                raise FastMLPError(f"{name} is fixed when a Model is built: make a new Model with the "
                                   f"{name} you want")
            if name in ("weights", "biases"):
                self.__dict__[name].assign(value)  # copy into the parameter buffer, after checking
                return
        object.__setattr__(self, name, value)

    def __init__(self, layers, activation="relu", output="softmax", loss=None, init="he",
                 bias=True, dtype=np.float32, seed=None, engine="numba", dropout=0.0,
                 batchnorm=False, residual=False):
        validate_params(MODEL_PARAMS, dict(output=output, init=init, bias=bias, seed=seed, engine=engine,
                                           batchnorm=batchnorm, residual=residual))
        self.layers = self._check_layers(layers)
        self.activations = self._check_activations(activation, len(self.layers) - 2)
        self.dropout = self._check_dropout(dropout, len(self.layers) - 2)
        self.batchnorm = batchnorm
        self.residual = self._check_residual(residual, self.layers)
        self.output = output
        self.loss = self._check_loss(output, loss)
        self.init = init
        self.bias = bias
        self.dtype = self._check_dtype(dtype)
        self.seed = seed
        self.engine = engine
        self._rng = np.random.default_rng(seed)
        self._layout = self._make_layout()
        n_weights = sum(a * b for a, b in zip(self.layers[:-1], self.layers[1:]))
        n_bn = 2 * sum(self.layers[1:-1]) if batchnorm else 0
        self._n_trainable = n_weights + n_bn + (sum(self.layers[1:]) if bias else 0)
        self._params = np.zeros(n_weights + n_bn + sum(self.layers[1:]), dtype=self.dtype)
        self._grads = np.zeros_like(self._params)
        self._rates = np.array(list(self.dropout) + [0.0], np.float64)
        # batch normalization's running mean (row 0, starts at 0) and variance (row 1, starts at 1)
        self._running = np.zeros((2, sum(self.layers[1:-1]) if batchnorm else 0), self.dtype)
        self._running[1] = 1
        self._workspaces = {}
        for W in self._views("weights"):
            W[...] = INITS[init](self._rng, *W.shape)
        for gamma, _ in self._batchnorm_views():
            gamma[...] = 1
        self.weights = _ParamList(self, "weights")
        self.biases = _ParamList(self, "biases")

    # ---- construction helpers -------------------------------------------------------------

    @staticmethod
    def _check_layers(layers):
        try:
            sizes = tuple(layers)
        except TypeError:
            raise FastMLPError(f"layers must be a list of layer sizes, got {layers!r}") from None
        if len(sizes) < 2:
            raise FastMLPError(f"layers needs at least an input and an output size, got {list(sizes)}")
        for s in sizes:
            Integer(low=1).check("every layer size", s)
        return tuple(int(s) for s in sizes)

    @staticmethod
    def _check_activations(activation, n_hidden):
        names = [activation] * n_hidden if isinstance(activation, str) else list(activation)
        if len(names) != n_hidden:
            raise FastMLPError(f"activation lists {len(names)} names for {n_hidden} hidden layers")
        for name in names:
            OneOf(tuple(ACTIVATIONS)).check("activation", name)
        if isinstance(activation, str):  # check the name even when there are no hidden layers
            OneOf(tuple(ACTIVATIONS)).check("activation", activation)
        return tuple(names)

    @staticmethod
    def _check_dropout(dropout, n_hidden):
        rates = [dropout] * n_hidden if not hasattr(dropout, "__len__") else list(dropout)
        if len(rates) != n_hidden:
            raise FastMLPError(f"dropout lists {len(rates)} rates for {n_hidden} hidden layers")
        for rate in rates + ([dropout] if not hasattr(dropout, "__len__") else []):
            Real(low=0.0, high=1.0, high_open=True).check("dropout rate", rate)
        return tuple(float(r) for r in rates)

    @staticmethod
    def _check_residual(residual, layers):
        hidden = layers[1:-1]
        if residual and (len(hidden) < 2 or len(set(hidden)) != 1):
            raise FastMLPError(f"residual connections join hidden layers of equal width: they need at "
                               f"least two hidden layers, all the same size; got {list(hidden)}")
        return residual

    @staticmethod
    def _check_loss(output, loss):
        allowed = OUTPUT_LOSSES[output]
        if loss is None:
            return allowed[0]
        OneOf(tuple(LOSSES)).check("loss", loss)
        if loss not in allowed:
            raise FastMLPError(f"loss {loss!r} does not go with output {output!r}: use one of {allowed}")
        return loss

    @staticmethod
    def _check_dtype(dtype):
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt.name not in DTYPES:
            raise FastMLPError(f"dtype must be float32 or float64, got {dtype!r}")
        return dt

    def _make_layout(self):
        """(L, 8) int64 per layer: fan_in, fan_out, weight offset, bias offset, activation code,
        batch-norm gamma offset, running-statistics offset, flags (see kernels/network.py).
        The flat buffer holds all weights, then batch normalization's gamma and beta, then biases."""
        pairs = list(zip(self.layers[:-1], self.layers[1:]))
        layout = np.zeros((len(pairs), 8), dtype=np.int64)
        extras = self.batchnorm or self.residual or any(self.dropout)
        w_off = 0
        bn_off = sum(a * b for a, b in pairs)
        b_off = bn_off + (2 * sum(self.layers[1:-1]) if self.batchnorm else 0)
        run_off = 0
        for l, (fan_in, fan_out) in enumerate(pairs):
            hidden = l < len(pairs) - 1
            act = ACTIVATIONS[self.activations[l]] if hidden else IDENTITY
            flags = 0
            if hidden and extras:
                flags |= network.EXTRAS
                if self.batchnorm:
                    flags |= network.BATCHNORM
                if self.residual and l > 0:
                    flags |= network.RESIDUAL
            layout[l] = (fan_in, fan_out, w_off, b_off, act, bn_off if flags & network.BATCHNORM else -1,
                         run_off if flags & network.BATCHNORM else -1, flags)
            w_off += fan_in * fan_out
            b_off += fan_out
            if flags & network.BATCHNORM:
                bn_off += 2 * fan_out
                run_off += fan_out
        return layout

    def _batchnorm_views(self, buffer=None):
        """[(gamma, beta), ...] per batch-normalised layer, views into params (or ``buffer``)."""
        buffer = self._params if buffer is None else buffer
        return [(buffer[r[network.BN_OFF]:r[network.BN_OFF] + r[1]],
                 buffer[r[network.BN_OFF] + r[1]:r[network.BN_OFF] + 2 * r[1]])
                for r in self._layout if r[network.FLAGS] & network.BATCHNORM]

    def _running_views(self):
        """[(running_mean, running_var), ...] per batch-normalised layer, views into _running."""
        return [(self._running[0, r[network.RUN_OFF]:r[network.RUN_OFF] + r[1]],
                 self._running[1, r[network.RUN_OFF]:r[network.RUN_OFF] + r[1]])
                for r in self._layout if r[network.FLAGS] & network.BATCHNORM]

    def _views(self, kind, buffer=None):
        """Per-layer views of ``kind`` ("weights" or "biases") into the flat buffer (params by
        default, or one with the same layout such as the gradients)."""
        buffer = self._params if buffer is None else buffer
        out = []
        for fan_in, fan_out, w_off, b_off in self._layout[:, :4]:
            if kind == "weights":
                out.append(buffer[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out))
            else:
                b = buffer[b_off:b_off + fan_out]
                if not self.bias:
                    b.flags.writeable = False
                out.append(b)
        return out

    def _compiled_on_disk(self, bmax) -> bool:
        """Whether numba's cache already holds the training kernel that batches of bmax rows through
        this network use (the numba engine; see ``kernels.on_disk``)."""
        from .kernels import network, on_disk, small
        return on_disk(small.train_small if small.use_small(self._layout, bmax) else network.train_blocked)

    def _workspace(self, bmax):
        """The kernels' scratch buffer for batches of at most bmax rows, allocated once per size."""
        if bmax not in self._workspaces:
            self._workspaces[bmax] = np.zeros(network.workspace_size(self._layout, bmax), self.dtype)
        return self._workspaces[bmax]

    # ---- description ------------------------------------------------------------------------

    @property
    def engine(self):
        return self._engine_name

    @engine.setter
    def engine(self, name):
        OneOf(tuple(ENGINES)).check("engine", name)
        self._engine_name = name

    @property
    def n_params(self) -> int:
        """Number of trainable parameters (weights, plus biases if the model has them)."""
        return self._n_trainable

    @property
    def n_outputs(self) -> int:
        return self.layers[-1]

    def summary(self) -> str:
        """A table of the layers and their parameter counts."""
        rows = [("layer", "shape", "activation", "params")]
        for l, (fan_in, fan_out) in enumerate(zip(self.layers[:-1], self.layers[1:])):
            hidden = l < len(self.layers) - 2
            act = self.activations[l] if hidden else f"{self.output} ({self.loss})"
            count = fan_in * fan_out + (fan_out if self.bias else 0)
            if hidden:
                extras = (["batchnorm"] if self.batchnorm else []) + \
                    (["residual"] if self._layout[l, 7] & network.RESIDUAL else []) + \
                    ([f"dropout {self.dropout[l]:g}"] if self.dropout[l] else [])
                act = " + ".join([act] + extras)
                count += 2 * fan_out if self.batchnorm else 0
            rows.append((f"dense_{l}", f"{fan_in} -> {fan_out}", act, f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c]) for c in range(4))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total trainable parameters: {self.n_params:,} ({self.dtype.name}, "
                     f"{'with' if self.bias else 'no'} biases)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"Model({list(self.layers)}, activation={self.activations!r}, output={self.output!r}, "
                f"loss={self.loss!r}, dtype={self.dtype.name}, engine={self.engine!r})")

    # ---- data ---------------------------------------------------------------------------------

    def _check_X(self, X, finite=True):
        return check_X(X, self.layers[0], self.dtype, compiled=self.engine == "numba", finite=finite)

    def _check_y(self, y, n):
        """(y_int, y_float): the targets the loss uses, and an empty stand-in for the other."""
        K = self.n_outputs
        if self.loss == "cross_entropy":
            return check_labels(y, n, K), np.zeros((0, K), self.dtype)
        bounds = (0.0, 1.0) if self.loss == "binary_cross_entropy" else (None, None)
        y_float = check_targets(y, n, K, self.dtype, *bounds, compiled=self.engine == "numba")
        return np.zeros(0, np.int64), y_float

    # ---- training -------------------------------------------------------------------------

    def fit(self, X, y, epochs=1, batch_size=32, lr=0.01, shuffle=True, seed=None, *,
            optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0, beta1=0.9,
            beta2=0.999, eps=1e-8, schedule="constant", step_size=10, gamma=0.1, min_lr=0.0,
            plateau_patience=2, validation_split=0.0, patience=None, track_grad_norms=False,
            sample_weight=None, class_weight=None, callback=None, progress=None,
            history=None, checkpoint=None, checkpoint_every=1, interrupt=None,
            _resume=None) -> History:
        """Train on X (n, n_inputs) and y; return the History.

        Each epoch visits every training sample once, in a fresh random order when ``shuffle`` is
        on (drawn from ``seed`` if given, else from the model's own generator); the last batch of
        an epoch may be smaller. Every argument is checked before any weight changes.

        optimizer       "sgd" (with optional momentum / nesterov), "adam" or "adamw"; each fit
                        call starts with fresh optimizer buffers. weight_decay is L2 for sgd and
                        adam, decoupled for adamw. beta1, beta2, eps: Adam's constants.
        schedule        "constant", "step" (step_size, gamma), "cosine" (min_lr) or "plateau"
                        (plateau_patience, gamma, min_lr); see SCHEDULES.
        validation_split  hold out this fraction of the samples (chosen at random) and report
                        their loss after every epoch; with ``patience``, stop when it has not
                        improved for that many epochs and restore the best epoch's weights.
        track_grad_norms  record each layer's weight-gradient norm every epoch.
        sample_weight   (n,) non-negative weights: each batch's loss is sum(w l) / sum(w).
        class_weight    (n_classes,) weights by label (softmax), multiplied into sample_weight; or a
                        dict {label: weight}, where labels left out weigh 1.
        callback(epoch, loss) runs after each epoch and may return True to stop.
        progress(epoch, batches_done, n_batches, running_loss) runs several times per epoch.
        history         an empty History to fill as training goes (a callback can read it).
        checkpoint      a path: every ``checkpoint_every`` epochs (and after the last) save the model,
                        optimizer state, epoch, random generator and history there, atomically
                        (checkpoint_every=None: only when ``interrupt`` stops the run);
                        ``Model.resume(path, X, y)`` then finishes the run exactly as if it had never
                        stopped.
        interrupt       a function asked a few dozen times per epoch (with ``checkpoint``): when it
                        returns True, fit saves the run mid-epoch and raises TrainingInterrupted;
                        ``Model.resume`` continues it exactly (the CLI ties it to Ctrl-C).
        """
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=seed,
                        optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps,
                        schedule=schedule, step_size=step_size, gamma=gamma, min_lr=min_lr,
                        plateau_patience=plateau_patience, validation_split=validation_split,
                        patience=patience, track_grad_norms=track_grad_norms)
        validate_params(FIT_PARAMS, settings)
        if nesterov and (optimizer != "sgd" or momentum == 0):
            raise FastMLPError("nesterov=True needs optimizer='sgd' with momentum > 0")
        if patience is not None and validation_split == 0:
            raise FastMLPError("early stopping (patience) needs a validation_split > 0")
        Optional(Integer(low=1)).check("checkpoint_every", checkpoint_every)
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise FastMLPError(f"checkpoint must be a file path, got {checkpoint!r}")
        if interrupt is not None and checkpoint is None:
            raise FastMLPError("interrupt needs a checkpoint path to save the run to")
        X = self._check_X(X)
        y_int, y_float = self._check_y(y, X.shape[0])
        weights = self._check_weights(sample_weight, class_weight, y_int, X.shape[0])
        self._check_batchnorm_batches(X.shape[0], validation_split, batch_size)
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        if _resume is not None:
            rng = _resume["rng"]
        self._split(X.shape[0], validation_split, 0)  # check the split before drawing its seed
        split_seed = _resume["split_seed"] if _resume else int(rng.integers(2**62)) if validation_split else 0
        train_rows, val_rows = self._split(X.shape[0], validation_split, split_seed)
        run = _Run(self, X, y_int, y_float, weights, train_rows, settings, rng, resuming=_resume is not None)
        run.checkpoint_every = checkpoint_every
        history = History() if history is None else history
        start = time.perf_counter()
        best = (np.inf, None, None)  # (validation loss, epoch, weights)
        per_epoch_work = callback or progress or val_rows is not None or track_grad_norms \
            or schedule == "plateau" or checkpoint is not None
        epoch, skip, partial = 0, 0, 0.0
        if _resume is not None:
            epoch, best, skip, partial = run.restore(_resume, history, X.shape[0])
        while epoch < epochs:
            group = 1 if per_epoch_work else min(max(1, GROUP_INDICES // len(train_rows)), epochs - epoch)
            lrs = run.lrs_for(epoch, group, history) if not skip else np.array([run.resumed_lr])
            try:
                losses = run.epochs(lrs, progress, epoch, history, interrupt, skip, partial)
            except Interrupted as stop:
                run.save(checkpoint, epoch, history, best, split_seed, X.shape[0],
                         mid_epoch=(stop.batches_done, stop.partial, lrs[0]))
                raise TrainingInterrupted(checkpoint, history) from None
            skip, partial = 0, 0.0
            history.loss.extend(losses.tolist())
            lrs = np.asarray(lrs, np.float64)
            if schedule == "constant" or (lrs[0] == lrs[-1] and (lrs == lrs[0]).all()):
                # a constant rate: one float, repeated
                history.lr.extend([float(lrs[0])] * len(lrs))  # (10x faster than tolist)
            else:
                history.lr.extend(lrs.tolist())
            epoch += len(losses)
            if track_grad_norms:
                history.grad_norms.append([float(np.linalg.norm(W)) for W in self._views("weights", self._grads)])
            stop = False
            if val_rows is not None:
                val_loss = self._mean_loss(X[val_rows], y_int[val_rows] if len(y_int) else y_int,
                                           y_float[val_rows] if len(y_float) else y_float)
                history.val_loss.append(val_loss)
                if val_loss < best[0]:
                    best = (val_loss, epoch - 1, self._state_copy() if patience else None)
                elif patience is not None and epoch - 1 - best[1] >= patience:
                    stop = True
            if callback and callback(epoch - 1, history.loss[-1]):
                stop = True
            if checkpoint is not None and checkpoint_every is not None and (
                    stop or epoch % checkpoint_every == 0 or epoch == epochs):
                run.save(checkpoint, epoch, history, best, split_seed, X.shape[0])
            if stop:
                break
        if patience is not None and best[2] is not None:
            self._restore_state(best[2])
            history.best_epoch = best[1]
        history.seconds = time.perf_counter() - start
        return history

    def lr_find(self, X, y, lr_min=1e-6, lr_max=10.0, steps=100, batch_size=32, seed=None):
        """Learning-rate range test: one SGD step per batch with the learning rate growing
        geometrically from lr_min to lr_max; stops once the loss diverges (NaN/inf or above four
        times its best). Returns (lrs, losses), each batch's loss before its step. The model's
        weights are restored afterwards: nothing is learned.

        Too small a rate barely moves the loss; too large a one overshoots and the loss explodes.
        A good rate for ``fit`` lies a little below where the loss falls fastest.
        """
        validate_params({"lr_min": Real(low=0.0, low_open=True), "lr_max": Real(low=0.0, low_open=True),
                         "steps": Integer(low=2), "batch_size": Integer(low=1), "seed": Optional(Integer(low=0))},
                        dict(lr_min=lr_min, lr_max=lr_max, steps=steps, batch_size=batch_size, seed=seed))
        if lr_max <= lr_min:
            raise FastMLPError(f"lr_max ({lr_max}) must be larger than lr_min ({lr_min})")
        X = self._check_X(X)
        y_int, y_float = self._check_y(y, X.shape[0])
        self._check_batchnorm_batches(min(X.shape[0], batch_size * 2), 0.0, batch_size)
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        settings = dict(FIT_DEFAULTS, batch_size=batch_size, lr=lr_min)
        run = _Run(self, X, y_int, y_float, np.zeros(0, self.dtype), np.arange(X.shape[0]), settings, rng)
        saved = self._state_copy()
        lrs = np.geomspace(lr_min, lr_max, steps)
        order = np.concatenate([rng.permutation(X.shape[0]) for _ in range(-(-steps * run.bmax // X.shape[0]))])
        losses = []
        try:
            for t, lr in enumerate(lrs):
                loss = np.zeros(1)
                bounds = np.array([t * run.bmax, (t + 1) * run.bmax], np.int64)
                run._call(loss, order, bounds, np.array([lr], self.dtype), History())
                losses.append(float(loss[0]))
                if losses[-1] > 4 * min(losses):
                    break
        except TrainingDiverged:
            pass
        finally:
            self._restore_state(saved)
        return lrs[:len(losses)], np.array(losses)

    def _state_copy(self):
        """A copy of everything training changes: the parameters, as one flat buffer, then the
        batch-normalization running statistics."""
        return np.concatenate([self._params, self._running.ravel()])

    def _restore_state(self, state):
        self._params[...] = state[:self._params.size]
        self._running[...] = state[self._params.size:].reshape(self._running.shape)

    def _check_batchnorm_batches(self, n, validation_split, batch_size):
        """Batch statistics need at least two samples in every batch."""
        if not self.batchnorm:
            return
        n_train = n - (int(round(n * validation_split)) if validation_split else 0)
        if min(batch_size, n_train) < 2 or n_train % batch_size == 1:
            raise FastMLPError(
                f"batch normalization needs at least 2 samples in every batch; batch_size={batch_size} "
                f"with {n_train} training samples leaves a batch of 1. Choose another batch size.")

    def _check_weights(self, sample_weight, class_weight, y_int, n):
        """Per-sample loss weights in the model's dtype, or an empty array for none."""
        if sample_weight is None and class_weight is None:
            return np.zeros(0, self.dtype)
        w = np.ones(n, np.float64)
        if sample_weight is not None:
            sw = check_targets(sample_weight, n, 1, np.float64, name="sample_weight")[:, 0]
            if (sw < 0).any():
                raise FastMLPError("sample_weight must be non-negative")
            w *= sw
        if class_weight is not None:
            if self.loss != "cross_entropy":
                raise FastMLPError("class_weight needs a softmax output (class labels); use sample_weight")
            if isinstance(class_weight, dict):
                class_weight = self._class_weight_from_dict(class_weight)
            try:
                cw = np.asarray(class_weight, dtype=np.float64) if np.ndim(class_weight) == 1 else None
            except (TypeError, ValueError):
                raise FastMLPError("class_weight must be a list of numbers, one per class") from None
            if cw is None or cw.shape != (self.n_outputs,):
                got = np.shape(class_weight)
                raise FastMLPError(f"class_weight needs one weight per class: the output layer has "
                                   f"{self.n_outputs} classes, class_weight has shape {got}")
            if not np.isfinite(cw).all():
                raise FastMLPError("class_weight must be finite")
            if (cw < 0).any():
                raise FastMLPError("class_weight must be non-negative")
            w *= cw[y_int]
        if not w.sum() > 0:
            raise FastMLPError("the sample/class weights are all zero: nothing to learn from")
        return w.astype(self.dtype)

    def _class_weight_from_dict(self, mapping):
        """{label: weight} as a list of n_classes weights; labels not in the dict weigh 1."""
        weights = [1.0] * self.n_outputs
        for label, weight in mapping.items():
            shown = label.item() if isinstance(label, np.generic) else label  # 3, not np.int64(3)
            if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
                    or not 0 <= label < self.n_outputs:
                raise FastMLPError(f"class_weight's keys must be class labels in [0, {self.n_outputs}), "
                                   f"got {shown!r}")
            if not isinstance(weight, (int, float, np.integer, np.floating)) or isinstance(weight, bool):
                raise FastMLPError(f"class_weight[{shown}] must be a number, got {weight!r}")
            weights[int(label)] = float(weight)
        return weights

    @classmethod
    def resume(cls, path, X, y, engine="numba", **kwargs):
        """Continue the run saved in checkpoint ``path`` on the same X and y: returns
        (model, history), bit-identical to the run never interrupted. Keyword arguments are those
        of ``resume_fit``."""
        from .checkpoint import load_checkpoint
        model, state = load_checkpoint(path, engine=engine)
        return model, model.resume_fit(state, X, y, checkpoint=kwargs.pop("checkpoint", None) or path, **kwargs)

    def resume_fit(self, state, X, y, callback=None, progress=None, history=None, checkpoint=None,
                   checkpoint_every=None, interrupt=None) -> History:
        """Continue training from a checkpoint's ``state`` (``load_checkpoint`` returns this model
        and its state). New checkpoints go to ``checkpoint`` every ``checkpoint_every`` epochs
        (default: as the checkpointed run did)."""
        from .checkpoint import CheckpointError, rng_from_state
        fit, resume = {}, {"rng": rng_from_state(state["rng"]), "arrays": state["arrays"]}
        for key, value in state["fit"].items():
            (resume if key in _Run.RESUME_KEYS else fit)[key] = value
        missing = [k for k in (*FIT_DEFAULTS, *_Run.RESUME_KEYS) if k not in fit and k not in resume]
        if missing:
            raise CheckpointError(f"not a checkpoint written by fit (it lacks {missing})")
        saved_every = resume.pop("checkpoint_every")
        every = checkpoint_every or saved_every
        resume["history"] = state["history"]
        resume["epoch"] = state["epoch"]
        return self.fit(X, y, **fit, callback=callback, progress=progress, history=history,
                        checkpoint=checkpoint, checkpoint_every=every, interrupt=interrupt, _resume=resume)

    @staticmethod
    def _split(n, fraction, split_seed):
        """Rows for training and (if fraction > 0) for validation, chosen at random."""
        if fraction == 0:
            return np.arange(n, dtype=np.int64), None
        n_val = int(round(n * fraction))
        if n_val < 1 or n_val >= n:
            raise FastMLPError(f"validation_split={fraction} of {n} samples leaves "
                               f"{n - n_val} for training and {n_val} for validation: both need at least 1")
        rows = np.random.default_rng(split_seed).permutation(n).astype(np.int64)
        return np.sort(rows[n_val:]), np.sort(rows[:n_val])

    def _mean_loss(self, X, y_int, y_float) -> float:
        """The model's loss on (X, y), from its outputs (no training)."""
        p = self.predict_proba(X).astype(np.float64)
        if self.loss == "cross_entropy":
            return float(-np.mean(np.log(np.maximum(p[np.arange(len(y_int)), y_int], 1e-300))))
        if self.loss == "binary_cross_entropy":
            p = np.clip(p, 1e-300, 1 - 1e-16)
            return float(-np.mean(y_float * np.log(p) + (1 - y_float) * np.log1p(-p)))
        return float(np.mean((p - y_float) ** 2))

    # ---- inference ------------------------------------------------------------------------

    def predict_proba(self, X) -> np.ndarray:
        """The network's outputs for X (n, n_inputs): class probabilities for softmax and sigmoid
        outputs, raw values for identity. Shape (n, n_outputs), the model's dtype."""
        # NaN and inf are looked for by the engine, in the first layer, as it reads the rows: X is
        # read from memory once, not once more for a check of its own (measured on 10,000 images
        # in the benchmark's turns, best of 9-15: 13.1-15.5 ms with a check of each chunk just
        # before the layers, against 15.6-18.4 for a check of all of X first; see dense_infer).
        X = self._check_X(X, finite=False)
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        bmax = min(PREDICT_ROWS, X.shape[0])
        if not ENGINES[self.engine].predict_batches(out, self._params, self._workspace(bmax), X,
                                                    self._layout, OUTPUTS[self.output], bmax,
                                                    self._rates, self._running):
            self._check_X(X)  # raises, naming the first NaN or inf
            raise RuntimeError("the engine stopped at a NaN or inf in X that the input check did not find")
        return out

    def predict(self, X) -> np.ndarray:
        """Class labels (n,) for softmax, 0/1 per output (n, K) for sigmoid, values for identity."""
        p = self.predict_proba(X)
        if self.output == "softmax":
            return p.argmax(axis=1)
        if self.output == "sigmoid":
            return (p > 0.5).astype(np.int64)
        return p

    def score(self, X, y) -> float:
        """Accuracy for classifiers (softmax: of labels; sigmoid: of every 0/1 output), R^2 for
        identity outputs."""
        X = self._check_X(X)
        y_int, y_float = self._check_y(y, X.shape[0])
        if self.output == "softmax":
            return float(np.mean(self.predict(X) == y_int))
        if self.output == "sigmoid":
            return float(np.mean(self.predict(X) == (y_float > 0.5)))
        p = self.predict_proba(X).astype(np.float64)
        residual = ((y_float - p) ** 2).sum()
        total = ((y_float - y_float.mean(axis=0)) ** 2).sum()
        return float(1 - residual / total) if total > 0 else float(residual == 0)

    # ---- files ----------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the model to ``path`` (.npz with a JSON header); atomic: see ``fastmlp.io``."""
        from .io import save_model
        save_model(self, path)

    @classmethod
    def load(cls, path, engine="numba") -> "Model":
        """Read a model written by ``save``; the file is checked before any array is used."""
        from .io import load_model
        return load_model(path, engine=engine)
