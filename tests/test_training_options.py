"""fit's training options against independent oracles.

* learning-rate schedules: torch.optim.lr_scheduler (StepLR, CosineAnnealingLR, ReduceLROnPlateau)
  for the rates, torch training for their effect, and sequences of plain one-epoch fit calls;
* sample and class weights: torch's CrossEntropyLoss(weight=...) and BCEWithLogitsLoss with a
  weighted mean, and duplicated samples;
* validation split and early stopping: the validation loss recomputed here from the weights, and
  retraining for exactly the best epoch's number of epochs;
* gradient norms: torch autograd and the NumPy engine; the article's vanishing-gradient lesson;
* divergence, callbacks and progress reports.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fastmlp import Model
from fastmlp.model import History, TrainingDiverged
from conftest import fit_batch_losses
from torch_oracle import torch_batch_losses, torch_net

torch.set_num_threads(1)

TOL64 = dict(rtol=1e-9, atol=1e-12)


# ---- helpers -----------------------------------------------------------------------------------

def _data(n, seed=0, noise=0.2, k=4):
    """12 features; the label is the argmax of the first k (learnable), with some labels random."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12))
    y = X[:, :k].argmax(axis=1)
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, k, flip.sum())
    return X, y


def _model(layers=(12, 16, 4), seed=1, **kw):
    kw.setdefault("dtype", np.float64)
    model = Model(list(layers), seed=seed, **kw)
    rng = np.random.default_rng(seed + 50)
    for i, b in enumerate(model.biases):  # non-zero starting biases
        model.biases[i] = rng.normal(0, 0.2, b.shape)
    return model


def _assert_same_as_torch(model, lins, **tol):
    tol = tol or TOL64
    for l, (W, b, lin) in enumerate(zip(model.weights, model.biases, lins, strict=True)):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, **tol, err_msg=f"W{l}")
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), **tol, err_msg=f"b{l}")


def _numpy_ce(weights, biases, activations, X, y):
    """Mean cross-entropy of a softmax MLP, computed here from its weights (float64)."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "identity": lambda z: z}
    a = np.asarray(X, np.float64)
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = a @ np.asarray(W, np.float64) + b
        a = f[activations[l]](z) if l < len(weights) - 1 else z
    z = a - a.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def _scheduler_lrs(make, lr, epochs):
    """The learning rate of each epoch under a torch scheduler stepped once per epoch."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# ---- schedules ---------------------------------------------------------------------------------

SCHEDULES = [
    ("step", dict(step_size=3, gamma=0.5), 0.2, 9,
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)),
    ("step", dict(step_size=2, gamma=0.1), 0.3, 7,
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)),
    ("cosine", dict(min_lr=0.0), 0.2, 8,
     lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.0)),
    ("cosine", dict(min_lr=0.01), 0.3, 10,
     lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)),
    ("constant", dict(), 0.1, 6,
     lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)),
]
SCHEDULE_IDS = [f"{s[0]}-{'-'.join(f'{k}={v}' for k, v in s[1].items())}-{s[3]}epochs" for s in SCHEDULES]


@pytest.mark.parametrize("schedule,opts,lr,epochs,make", SCHEDULES, ids=SCHEDULE_IDS)
def test_schedule_rates_equal_torch_schedulers(schedule, opts, lr, epochs, make):
    X, y = _data(60)
    model = _model()
    history = model.fit(X, y, epochs=epochs, batch_size=20, lr=lr, seed=0, schedule=schedule, **opts)
    expected = _scheduler_lrs(make, lr, epochs)
    assert len(history.lr) == epochs
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12, atol=1e-15)
    if schedule != "constant":
        assert len(set(np.round(expected, 12))) >= 3  # the rates really change


@pytest.mark.parametrize("schedule,opts,lr,epochs,make", SCHEDULES[:4], ids=SCHEDULE_IDS[:4])
def test_schedule_equals_a_sequence_of_one_epoch_fits(schedule, opts, lr, epochs, make):
    """Plain SGD has no state: a scheduled run is one fit call per epoch at torch's rates."""
    X, y = _data(60)
    rates = _scheduler_lrs(make, lr, epochs)
    scheduled, manual, ref = _model(), _model(), _model()
    ref.engine = "numpy"
    h = scheduled.fit(X, y, epochs=epochs, batch_size=16, lr=lr, shuffle=False, schedule=schedule, **opts)
    ref.fit(X, y, epochs=epochs, batch_size=16, lr=lr, shuffle=False, schedule=schedule, **opts)
    losses = []
    for rate in rates:
        losses += manual.fit(X, y, epochs=1, batch_size=16, lr=float(rate), shuffle=False).loss
    np.testing.assert_allclose(scheduled._params, manual._params, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h.loss, losses, rtol=1e-13)
    np.testing.assert_allclose(scheduled._params, ref._params, rtol=1e-10, atol=1e-12)
    # Per-epoch work (a callback) changes how epochs are grouped into calls, not a bit of the result.
    again = _model()
    again.fit(X, y, epochs=epochs, batch_size=16, lr=lr, shuffle=False, schedule=schedule,
              callback=lambda e, loss: False, **opts)
    assert again._params.tobytes() == scheduled._params.tobytes()


@pytest.mark.parametrize("schedule,opts,lr,epochs,make", SCHEDULES[:4:3], ids=SCHEDULE_IDS[:4:3])
def test_schedule_with_momentum_trains_like_torch(schedule, opts, lr, epochs, make):
    """SGD with momentum (state carried across epochs) and a schedule, against torch stepping
    SGD(momentum=0.9) and the scheduler once per epoch over the same batches."""
    X, y = _data(80, seed=3)
    batch = 16
    model = _model()
    net, lins = torch_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    sched = make(opt)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    torch_epoch_losses = []
    for _ in range(epochs):
        torch_epoch_losses.append(np.mean(torch_batch_losses(net, opt, Xt, yt, batch)))
        sched.step()
    history = model.fit(X, y, epochs=epochs, batch_size=batch, lr=lr, shuffle=False, momentum=0.9,
                        schedule=schedule, **opts)
    np.testing.assert_allclose(history.loss, torch_epoch_losses, rtol=1e-10)
    _assert_same_as_torch(model, lins)
    # And not what a constant rate gives:
    constant = _model()
    constant.fit(X, y, epochs=epochs, batch_size=batch, lr=lr, shuffle=False, momentum=0.9)
    assert np.abs(constant._params - model._params).max() > 1e-3


def _torch_plateau_lrs(monitored, lr, gamma, patience, min_lr):
    """torch's ReduceLROnPlateau(mode='min', threshold=0) fed the monitored losses: the rate of
    every epoch (epoch 0 at lr; epoch e+1 after stepping with epoch e's loss)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=gamma, patience=patience,
                                                       threshold=0.0, min_lr=min_lr, eps=0.0)
    out = [opt.param_groups[0]["lr"]]
    for value in monitored[:-1]:
        sched.step(value)
        out.append(opt.param_groups[0]["lr"])
    return out


def _plateau_reference(monitored, lr, gamma, patience, min_lr):
    """The same rule written out: reduce when the loss has not beaten its best for more than
    ``patience`` epochs in a row (strictly lower counts as better), then start counting afresh."""
    out, best, bad = [lr], np.inf, 0
    for value in monitored[:-1]:
        if value < best:
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = max(lr * gamma, min_lr), 0
        out.append(lr)
    return out


@pytest.mark.parametrize("plateau_patience", [0, 1, 2])
def test_plateau_on_validation_loss_follows_reduce_lr_on_plateau(plateau_patience):
    X, y = _data(100, noise=0.5)
    lr, gamma, min_lr = 0.3, 0.5, 0.3 / 16
    kw = dict(batch_size=8, seed=3, validation_split=0.3, schedule="plateau",
              plateau_patience=plateau_patience, gamma=gamma, min_lr=min_lr)
    model = _model(layers=(12, 64, 4))
    history = model.fit(X, y, epochs=25, lr=lr, **kw)
    assert len(history.val_loss) == len(history.lr) == 25
    expected = _torch_plateau_lrs(history.val_loss, lr, gamma, plateau_patience, min_lr)
    assert expected == _plateau_reference(history.val_loss, lr, gamma, plateau_patience, min_lr)
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12)
    assert len(set(expected)) >= 3 and min(expected) == pytest.approx(min_lr)  # it reduced, to the floor

    # Training at those rates, one fit call per epoch (same seed: the same split every time,
    # no shuffling): the same weights. Plain SGD has no state to carry over.
    a, b = _model(layers=(12, 64, 4)), _model(layers=(12, 64, 4))
    h_a = a.fit(X, y, epochs=25, lr=lr, shuffle=False, **kw)
    for e, rate in enumerate(h_a.lr):
        b.fit(X, y, epochs=1, lr=float(rate), shuffle=False, batch_size=8, seed=3, validation_split=0.3)
    np.testing.assert_allclose(a._params, b._params, rtol=1e-12, atol=1e-14)


def test_plateau_on_training_loss_follows_reduce_lr_on_plateau():
    """Without a validation split the training loss is monitored."""
    X, y = _data(200, seed=0, noise=0.5)
    lr, gamma, min_lr = 1.0, 0.5, 0.05
    model = _model(layers=(12, 16, 4))
    history = model.fit(X, y, epochs=20, batch_size=20, lr=lr, seed=0, schedule="plateau",
                        plateau_patience=0, gamma=gamma, min_lr=min_lr)
    assert history.val_loss == []
    expected = _torch_plateau_lrs(history.loss, lr, gamma, 0, min_lr)
    assert expected == _plateau_reference(history.loss, lr, gamma, 0, min_lr)
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12)
    assert expected[-1] < lr  # it did reduce

    ref = _model(layers=(12, 16, 4), engine="numpy")
    h_ref = ref.fit(X, y, epochs=20, batch_size=20, lr=lr, seed=0, schedule="plateau",
                    plateau_patience=0, gamma=gamma, min_lr=min_lr)
    assert h_ref.lr == history.lr
    np.testing.assert_allclose(model._params, ref._params, rtol=1e-10, atol=1e-12)


def test_plateau_with_a_frozen_loss_reduces_every_patience_plus_one_epochs():
    """lr so small that float32 weights cannot move: the loss is exactly the same every epoch, so
    it never improves after the first epoch."""
    X, y = _data(40)
    model = _model(dtype=np.float32)
    before = model._params.copy()
    history = model.fit(X, y, epochs=10, batch_size=40, lr=1e-12, shuffle=False, schedule="plateau",
                        plateau_patience=1, gamma=0.5)
    assert model._params.tobytes() == before.tobytes() and len(set(history.loss)) == 1
    # losses L, L, L, ...: epoch 1 starts at lr; the non-improvements after epochs 1, 2 reduce for
    # epoch 3; then after 3, 4 for epoch 5; ...
    expected = [1e-12 * 0.5 ** ((e - 1) // 2) for e in range(10)]
    expected[0] = 1e-12
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12)
    np.testing.assert_allclose(history.lr, _torch_plateau_lrs(history.loss, 1e-12, 0.5, 1, 0.0), rtol=1e-12)


# ---- sample and class weights ------------------------------------------------------------------

def test_class_weight_equals_torch_weighted_cross_entropy():
    batch, steps = 16, 10
    X, y = _data(batch * steps, seed=4)
    cw = np.array([0.2, 1.0, 3.0, 0.7])
    model = _model(layers=(12, 10, 4))
    net, lins = torch_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(cw))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    torch_losses = []
    for t in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(Xt[t * batch:(t + 1) * batch]), yt[t * batch:(t + 1) * batch])
        loss.backward()
        opt.step()
        torch_losses.append(loss.item())
    losses, _ = fit_batch_losses(model, X, y, batch, lr=0.3, class_weight=cw)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-10)
    _assert_same_as_torch(model, lins)

    unweighted = _model(layers=(12, 10, 4))  # the weights make a real difference
    plain_losses, _ = fit_batch_losses(unweighted, X, y, batch, lr=0.3)
    assert np.abs(plain_losses - torch_losses).max() > 1e-2


def test_class_weight_as_a_dict_weighs_missing_classes_one():
    X, y = _data(64, seed=5)
    by_list, by_dict = _model(layers=(12, 10, 4)), _model(layers=(12, 10, 4))
    list_losses, _ = fit_batch_losses(by_list, X, y, 16, lr=0.3, class_weight=[1.0, 2.5, 1.0, 0.5])
    dict_losses, _ = fit_batch_losses(by_dict, X, y, 16, lr=0.3, class_weight={1: 2.5, np.int64(3): 0.5})
    np.testing.assert_array_equal(dict_losses, list_losses)
    assert by_dict._params.tobytes() == by_list._params.tobytes()
    for bad, match in [({4: 1.0}, r"labels in \[0, 4\), got 4$"), ({np.int64(-1): 1.0}, r"got -1$"),
                       ({"a": 1.0}, "got 'a'"),
                       ({True: 1.0}, "got True"), ({0: "x"}, r"class_weight\[0\] must be a number"),
                       ({0: -1.0}, "non-negative")]:
        with pytest.raises(ValueError, match=match):
            _model(layers=(12, 10, 4)).fit(X, y, class_weight=bad)


def test_sample_and_class_weight_multiply_like_torch_reduction_none():
    batch, steps = 16, 10
    X, y = _data(batch * steps, seed=5)
    rng = np.random.default_rng(6)
    sw = rng.uniform(0, 2, len(X))
    sw[::7] = 0.0  # some samples count for nothing
    cw = np.array([1.5, 0.5, 1.0, 2.0])
    model = _model(layers=(12, 10, 4))
    net, lins = torch_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    wt = torch.from_numpy(sw * cw[y])
    torch_losses = []
    for t in range(steps):
        s = slice(t * batch, (t + 1) * batch)
        opt.zero_grad()
        per_sample = nn.functional.cross_entropy(net(Xt[s]), yt[s], reduction="none")
        loss = (wt[s] * per_sample).sum() / wt[s].sum()
        loss.backward()
        opt.step()
        torch_losses.append(loss.item())
    losses, _ = fit_batch_losses(model, X, y, batch, lr=0.3, sample_weight=sw, class_weight=cw)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-10)
    _assert_same_as_torch(model, lins)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_weight_bce_equals_torch_weighted_mean(dtype):
    batch, steps, k = 16, 10, 3
    rng = np.random.default_rng(7)
    X = rng.standard_normal((batch * steps, 12))
    Y = (X[:, :k] + 0.5 * rng.standard_normal((len(X), k)) > 0).astype(np.float64)
    Y[::5] = rng.random((len(Y[::5]), k))  # soft targets too
    sw = rng.uniform(0.1, 3.0, len(X))
    model = _model(layers=(12, 8, k), output="sigmoid", activation="tanh", dtype=dtype)
    net, lins = torch_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    Xt, Yt, wt = (torch.from_numpy(a.astype(dtype)) for a in (X, Y, sw))
    torch_losses = []
    for t in range(steps):
        s = slice(t * batch, (t + 1) * batch)
        opt.zero_grad()
        elementwise = nn.BCEWithLogitsLoss(reduction="none")(net(Xt[s]), Yt[s]).to(tdt)
        loss = (wt[s][:, None] * elementwise).sum() / (wt[s].sum() * k)  # mean over the k outputs
        loss.backward()
        opt.step()
        torch_losses.append(loss.item())
    losses, _ = fit_batch_losses(model, X, Y, batch, lr=0.5, sample_weight=sw)
    tol = TOL64 if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses, torch_losses, rtol=max(tol["rtol"], 1e-10))
    _assert_same_as_torch(model, lins, **tol)


def test_integer_sample_weights_equal_duplicated_samples():
    """A full-batch step with weight k on a sample is the step on a batch holding it k times
    (and weight 0 drops it)."""
    X, y = _data(30, seed=8)
    counts = np.random.default_rng(9).integers(0, 4, len(X))
    counts[:3] = [0, 3, 1]
    weighted, duplicated = _model(), _model()
    h_w = weighted.fit(X, y, epochs=1, batch_size=len(X), lr=0.5, sample_weight=counts)
    Xd, yd = np.repeat(X, counts, axis=0), np.repeat(y, counts)
    h_d = duplicated.fit(Xd, yd, epochs=1, batch_size=len(Xd), lr=0.5)
    np.testing.assert_allclose(h_w.loss, h_d.loss, rtol=1e-12)
    np.testing.assert_allclose(weighted._params, duplicated._params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(weighted._grads, duplicated._grads, rtol=1e-10, atol=1e-14)
    assert np.abs(weighted._grads).max() > 1e-2


@pytest.mark.parametrize("batch", [5, 16])
def test_sample_weights_follow_their_samples_when_shuffled(batch):
    """The NumPy engine (weights[idx] per batch) agrees with the kernels under shuffling."""
    X, y = _data(90, seed=10)
    sw = np.random.default_rng(11).uniform(0, 2, len(X))
    fast, ref = _model(), _model(engine="numpy")
    h_f = fast.fit(X, y, epochs=3, batch_size=batch, lr=0.2, seed=2, sample_weight=sw,
                   class_weight=[1.0, 2.0, 0.5, 1.0], momentum=0.5)
    h_r = ref.fit(X, y, epochs=3, batch_size=batch, lr=0.2, seed=2, sample_weight=sw,
                  class_weight=[1.0, 2.0, 0.5, 1.0], momentum=0.5)
    np.testing.assert_allclose(fast._params, ref._params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_f.loss, h_r.loss, rtol=1e-10)


# ---- validation split and early stopping -------------------------------------------------------

def _held_out_rows(n, fraction, seed):
    """The rows fit(seed=seed, validation_split=fraction) holds out, as Model._split picks them:
    a split seed drawn from the fit's generator, then the first round(n * fraction) rows of a
    permutation drawn from that seed. (The tests below check that these are the right rows: the
    validation loss is the loss on them, and training never sees them.)"""
    split_seed = int(np.random.default_rng(seed).integers(2**62))
    return np.sort(np.random.default_rng(split_seed).permutation(n)[:int(round(n * fraction))])


def _snapshotting(model, store):
    def callback(epoch, loss):
        store.append(([W.copy() for W in model.weights], [b.copy() for b in model.biases]))
    return callback


def test_validation_loss_is_the_loss_on_the_held_out_rows():
    X, y = _data(100, noise=0.3)
    seed, split = 3, 0.3
    model = _model(layers=(12, 32, 4))
    snapshots = []
    history = model.fit(X, y, epochs=6, batch_size=8, lr=0.1, seed=seed, validation_split=split,
                        callback=_snapshotting(model, snapshots))
    assert len(history.val_loss) == len(history.loss) == 6 and history.best_epoch is None
    val_rows = _held_out_rows(100, split, seed)
    assert len(val_rows) == 30
    for e, (Ws, bs) in enumerate(snapshots):
        expected = _numpy_ce(Ws, bs, model.activations, X[val_rows], y[val_rows])
        assert history.val_loss[e] == pytest.approx(expected, rel=1e-10), e
    # A different set of 30 rows gives a clearly different loss: the rows matter.
    others = np.setdiff1d(np.arange(100), val_rows)[:30]
    assert abs(_numpy_ce(*snapshots[-1], model.activations, X[others], y[others])
               - history.val_loss[-1]) > 1e-3


def test_validation_rows_are_not_trained_on():
    """Without shuffling, training with a validation split is training on the other rows alone."""
    X, y = _data(100, noise=0.3)
    split_model, subset_model = _model(), _model()
    split_model.fit(X, y, epochs=2, batch_size=8, lr=0.1, shuffle=False, seed=5, validation_split=0.2)
    train_rows = np.setdiff1d(np.arange(100), _held_out_rows(100, 0.2, 5))
    subset_model.fit(X[train_rows], y[train_rows], epochs=2, batch_size=8, lr=0.1, shuffle=False)
    assert split_model._params.tobytes() == subset_model._params.tobytes()


def test_early_stopping_keeps_the_best_epoch():
    X, y = _data(100, noise=0.3)
    seed, split, patience = 3, 0.3, 5
    kw = dict(batch_size=8, lr=0.1, seed=seed, validation_split=split)
    model = _model(layers=(12, 64, 4))
    snapshots = []
    history = model.fit(X, y, epochs=60, patience=patience, callback=_snapshotting(model, snapshots), **kw)
    best = history.best_epoch
    n_run = len(history.val_loss)
    assert n_run < 60, "the validation loss never stalled: no early stop to test"
    assert best == int(np.argmin(history.val_loss))
    assert n_run == best + patience + 1  # stopped after `patience` epochs without improvement
    assert len(history.loss) == len(history.lr) == n_run
    assert min(history.val_loss[best + 1:]) >= history.val_loss[best]

    # The model holds the best epoch's weights ...
    Ws, bs = snapshots[best]
    for W, W_best, b, b_best in zip(model.weights, Ws, model.biases, bs):
        assert W.tobytes() == W_best.tobytes() and b.tobytes() == b_best.tobytes()
    val_rows = _held_out_rows(100, split, seed)
    p = model.predict_proba(X[val_rows])
    assert -np.mean(np.log(p[np.arange(30), y[val_rows]])) == pytest.approx(history.val_loss[best], rel=1e-10)
    # ... which are those of a run of best + 1 epochs, bit for bit.
    retrained = _model(layers=(12, 64, 4))
    h_re = retrained.fit(X, y, epochs=best + 1, **kw)
    assert retrained._params.tobytes() == model._params.tobytes()
    assert h_re.val_loss == history.val_loss[:best + 1]
    # and not the last epoch's
    assert any(not np.array_equal(W, W_last) for W, W_last in zip(model.weights, snapshots[-1][0]))


def test_a_callback_stop_with_patience_still_restores_the_best():
    X, y = _data(100, noise=0.3)
    model = _model(layers=(12, 64, 4))
    snapshots = []
    store = _snapshotting(model, snapshots)

    def callback(epoch, loss):
        store(epoch, loss)
        return epoch == 6

    history = model.fit(X, y, epochs=60, batch_size=8, lr=0.1, seed=3, validation_split=0.3, patience=50,
                        callback=callback)
    assert len(history.val_loss) == 7
    best = int(np.argmin(history.val_loss))
    assert history.best_epoch == best
    assert model.weights[0].tobytes() == snapshots[best][0][0].tobytes()


# ---- gradient norms ----------------------------------------------------------------------------

def test_grad_norms_are_those_of_the_last_batch_torch():
    """history.grad_norms[e][l] = ||dL/dW_l|| on epoch e's last batch, at the weights before its
    step. Those weights: plain SGD on everything before it (no shuffling, no optimizer state)."""
    X, y = _data(80, seed=12)
    batch = 16
    layers = (12, 16, 10, 4)
    model = _model(layers=layers, activation=["tanh", "relu"])
    history = model.fit(X, y, epochs=2, batch_size=batch, lr=0.2, shuffle=False, track_grad_norms=True)
    assert len(history.grad_norms) == 2 and all(len(g) == 3 for g in history.grad_norms)

    before_last = _model(layers=layers, activation=["tanh", "relu"])
    before_last.fit(X, y, epochs=1, batch_size=batch, lr=0.2, shuffle=False)
    before_last.fit(X[:-batch], y[:-batch], epochs=1, batch_size=batch, lr=0.2, shuffle=False)
    net, lins = torch_net(before_last)
    nn.functional.cross_entropy(net(torch.from_numpy(X[-batch:])), torch.from_numpy(y[-batch:])).backward()
    expected = [float(lin.weight.grad.norm()) for lin in lins]
    np.testing.assert_allclose(history.grad_norms[1], expected, rtol=1e-10)
    assert not np.allclose(history.grad_norms[0], expected, rtol=1e-3)  # epochs differ


@pytest.mark.parametrize("batch", [5, 16])
def test_grad_norms_match_numpy_engine(batch):
    X, y = _data(90, seed=13)
    fast, ref = _model(), _model(engine="numpy")
    h_f = fast.fit(X, y, epochs=4, batch_size=batch, lr=0.1, seed=1, track_grad_norms=True,
                   optimizer="adam", weight_decay=0.01)
    h_r = ref.fit(X, y, epochs=4, batch_size=batch, lr=0.1, seed=1, track_grad_norms=True,
                  optimizer="adam", weight_decay=0.01)
    assert np.shape(h_f.grad_norms) == (4, 2)
    np.testing.assert_allclose(h_f.grad_norms, h_r.grad_norms, rtol=1e-10)


def test_vanishing_gradients_sigmoid_versus_relu():
    """The article's lesson: through 8 sigmoid layers the first layer's gradient all but vanishes;
    with ReLU and He initialisation it does not."""
    rng = np.random.default_rng(14)
    X = rng.standard_normal((64, 20))
    y = (X[:, 0] > 0).astype(np.int64)
    layers = [20] + [32] * 8 + [2]
    ratios = {}
    for activation, init in [("sigmoid", "xavier"), ("relu", "he")]:
        model = Model(layers, activation=activation, init=init, dtype=np.float64, seed=1)
        history = model.fit(X, y, epochs=2, batch_size=16, lr=0.01, seed=0, track_grad_norms=True)
        norms = np.array(history.grad_norms)
        assert norms.shape == (2, 9) and (norms > 0).all()
        ratios[activation] = norms[:, 0] / norms[:, -1]
    assert (ratios["sigmoid"] < 1e-2).all(), ratios
    assert (ratios["relu"] > 1e-2).all(), ratios


# ---- divergence, callbacks, progress -----------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(momentum=0.9), dict(schedule="cosine"), dict(weight_decay=0.1)],
                         ids=["momentum", "cosine", "weight-decay"])
def test_divergence_names_the_learning_rate(kw):
    rng = np.random.default_rng(15)
    X = rng.standard_normal((64, 3)) * 10
    y = rng.standard_normal((64, 1)) * 1e4
    model = Model([3, 4, 1], activation="identity", output="identity", dtype=np.float64, seed=0)
    with pytest.raises(TrainingDiverged) as info:
        model.fit(X, y, epochs=50, batch_size=16, lr=1e6, **kw)
    message = str(info.value)
    assert "lr=1e+06" in message and "learning rate" in message, message
    assert isinstance(info.value, ValueError)
    assert np.isfinite(model._params).all()


def test_callback_returning_true_stops_after_that_epoch():
    X, y = _data(60)
    seen = []

    def callback(epoch, loss):
        seen.append((epoch, loss))
        return epoch == 2

    stopped, full = _model(), _model()
    h = stopped.fit(X, y, epochs=10, batch_size=8, lr=0.1, seed=4, momentum=0.9, callback=callback)
    h3 = full.fit(X, y, epochs=3, batch_size=8, lr=0.1, seed=4, momentum=0.9)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert [loss for _, loss in seen] == h.loss == h3.loss
    assert stopped._params.tobytes() == full._params.tobytes()


def test_callback_reads_the_history_as_it_fills():
    X, y = _data(60)
    history = History()
    lengths = []
    _model().fit(X, y, epochs=4, batch_size=8, lr=0.2, seed=0, schedule="step", step_size=1, gamma=0.5,
                 history=history, callback=lambda e, loss: lengths.append((len(history.loss), history.lr[-1])))
    assert lengths == [(1, 0.2), (2, 0.1), (3, 0.05), (4, 0.025)]


def test_progress_reports_increasing_batches_done():
    X, y = _data(998, seed=16)  # 199 batches of 5 and a last one of 3
    reports = []
    history = _model().fit(X, y, epochs=2, batch_size=5, lr=0.05, seed=0,
                           progress=lambda *a: reports.append(a))
    n_batches = 200
    for epoch in (0, 1):
        mine = [r for r in reports if r[0] == epoch]
        done = [r[1] for r in mine]
        assert len(mine) >= 10  # several times per epoch
        assert all(b > a for a, b in zip(done, done[1:])) and done[-1] == n_batches
        assert all(r[2] == n_batches for r in mine)
        # the running loss is the mean over the samples seen so far (batches weighted by size)
        assert mine[-1][3] == pytest.approx(history.loss[epoch], rel=1e-12)
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)  # epochs in order
