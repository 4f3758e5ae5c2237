"""The Model's public surface: saving and loading, input validation, parameter access, divergence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from fastmlp import FastMLPError, Model, TrainingDiverged
from fastmlp.model import PREDICT_ROWS
from fastmlp import validation
from fastmlp.validation import all_finite

# ---- save / load ----------------------------------------------------------------------------------

SAVE_CASES = [
    dict(layers=[6, 5, 4, 3], activation="relu", output="softmax", dtype=np.float32, bias=True),
    dict(layers=[6, 5, 4, 3], activation=["tanh", "sigmoid"], output="softmax", dtype=np.float64,
         bias=True),
    dict(layers=[6, 5, 2], activation="sigmoid", output="sigmoid", loss="mse", dtype=np.float64,
         bias=False, init="normal"),
    dict(layers=[6, 4, 2], activation="identity", output="identity", dtype=np.float32, bias=False,
         init="xavier_uniform"),
    dict(layers=[6, 3], output="sigmoid", dtype=np.float32, bias=True),
]


def _trained(case, seed=0):
    model = Model(seed=seed, **case)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, case["layers"][0]))
    k = case["layers"][-1]
    y = rng.integers(0, k, 40) if model.loss == "cross_entropy" else rng.random((40, k))
    model.fit(X, y, epochs=2, batch_size=8, lr=0.05)  # trained: biases and weights are not the init
    return model, X


@pytest.mark.parametrize("case", SAVE_CASES, ids=lambda c: f"{c['output']}-{np.dtype(c['dtype']).name}"
                                                          f"-{'bias' if c['bias'] else 'nobias'}")
def test_save_load_is_bit_exact(tmp_path, case):
    model, X = _trained(case)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Model.load(path)
    for attr in ("layers", "activations", "output", "loss", "bias", "init", "dtype"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded._params.dtype == model.dtype
    assert loaded._params.tobytes() == model._params.tobytes()
    for a, b in zip(list(model.weights) + list(model.biases), list(loaded.weights) + list(loaded.biases)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    if not case["bias"]:
        with pytest.raises(ValueError):
            loaded.biases[0][0] = 1.0
    # The file is the documented format: plain arrays and a JSON header, readable without fastmlp.
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes().decode())
        assert header["format"] == "fastmlp-model" and header["version"] == 1
        assert header["layers"] == list(case["layers"]) and header["bias"] == case["bias"]
        assert header["dtype"] == np.dtype(case["dtype"]).name
        np.testing.assert_array_equal(archive["W0"], model.weights[0])
    # And with the other engine.
    other = Model.load(path, engine="numpy")
    np.testing.assert_allclose(other.predict_proba(X), model.predict_proba(X), rtol=1e-5, atol=1e-6)


def _saved_arrays(tmp_path):
    model, _ = _trained(SAVE_CASES[0])
    path = tmp_path / "good.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(arrays["header"].tobytes().decode())


def _write(path, arrays, header=None):
    if header is not None:
        arrays = {**arrays, "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_load_rejects_missing_file(tmp_path):
    with pytest.raises(FastMLPError, match="no such model file"):
        Model.load(tmp_path / "absent.npz")
    with pytest.raises(FastMLPError, match="no such model file"):
        Model.load(tmp_path)  # a folder is not a model file


def test_load_rejects_garbage(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a model file \x00\xff\x13" * 20)
    with pytest.raises(FastMLPError, match="not a readable model file"):
        Model.load(path)
    path.write_bytes(b"")
    with pytest.raises(FastMLPError, match="garbage.npz"):
        Model.load(path)
    good = tmp_path / "good.npz"
    _trained(SAVE_CASES[0])[0].save(good)
    path.write_bytes(good.read_bytes()[:200])  # a truncated zip
    with pytest.raises(FastMLPError, match="not a readable model file"):
        Model.load(path)


def test_load_rejects_plain_npy_file(tmp_path):
    """A .npy array (np.save output, the likeliest wrong file) is not a model file."""
    path = tmp_path / "weights.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 3)))
    with pytest.raises(FastMLPError, match="not a (readable|fastmlp) model file"):
        Model.load(path)


def test_load_rejects_npz_without_header(tmp_path):
    arrays, _ = _saved_arrays(tmp_path)
    del arrays["header"]
    with pytest.raises(FastMLPError, match="no header"):
        Model.load(_write(tmp_path / "m.npz", arrays))


def test_load_rejects_newer_version(tmp_path):
    arrays, header = _saved_arrays(tmp_path)
    with pytest.raises(FastMLPError, match="newer") as info:
        Model.load(_write(tmp_path / "m.npz", arrays, {**header, "version": 999}))
    assert "999" in str(info.value)


@pytest.mark.parametrize("change,match", [
    (lambda a, h: a.update(W0=np.zeros((6, 6), np.float32)), r"W0.*\[6, 6\].*header says.*\[6, 5\]"),
    (lambda a, h: a.update(b1=np.zeros(5, np.float32)), r"b1"),
    (lambda a, h: a.update(W1=a["W1"].astype(np.float64)), r"W1 is float64"),
    (lambda a, h: h.update(layers=[6, 5, 4, 4]), r"W2"),
    (lambda a, h: a.pop("W2"), r"expected arrays"),
    (lambda a, h: a.update(W3=a["W2"]), r"expected arrays"),
    (lambda a, h: a["W1"].__setitem__((0, 0), np.nan), r"W1 contains NaN or inf"),
    (lambda a, h: h.update(format="something-else"), r"not a fastmlp model file"),
    (lambda a, h: h.update(output="bogus"), r"invalid model.*output"),
    (lambda a, h: h.pop("layers"), r"'layers'"),
    (lambda a, h: h.update(dtype="float16"), r"dtype"),
    (lambda a, h: h.update(version=0), r"version"),
], ids=["W-shape", "b-shape", "W-dtype", "header-layers", "missing-array", "extra-array", "nan",
        "format", "output", "no-layers", "dtype", "version-0"])
def test_load_rejects_inconsistent_file(tmp_path, change, match):
    arrays, header = _saved_arrays(tmp_path)
    arrays = {k: v.copy() for k, v in arrays.items() if k != "header"}
    change(arrays, header)
    with pytest.raises(FastMLPError, match=match):
        Model.load(_write(tmp_path / "m.npz", arrays, header))


def test_load_rejects_nonzero_biases_for_bias_free_model(tmp_path):
    arrays, header = _saved_arrays(tmp_path)
    header["bias"] = False
    with pytest.raises(FastMLPError, match="no biases"):
        Model.load(_write(tmp_path / "m.npz", {k: v for k, v in arrays.items() if k != "header"}, header))


def test_load_rejects_header_that_is_not_json(tmp_path):
    arrays, _ = _saved_arrays(tmp_path)
    arrays["header"] = np.frombuffer(b"{not json", dtype=np.uint8)
    with pytest.raises(FastMLPError, match="JSON"):
        Model.load(_write(tmp_path / "m.npz", arrays))


def test_save_refuses_non_finite_weights(tmp_path):
    model = Model([3, 2], seed=0)
    model.weights[0][0, 0] = np.inf  # the live view lets one break the model
    with pytest.raises(FastMLPError, match="NaN or inf"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# ---- validation of fit / predict --------------------------------------------------------------

@pytest.fixture
def clf():
    return Model([4, 5, 3], seed=0)


def _X(n=10, d=4):
    return np.random.default_rng(0).standard_normal((n, d))


Y = np.arange(10) % 3


def _with(X, where, value):
    X = X.copy()
    X[where] = value
    return X


BAD_FIT = [
    (dict(X=_X(d=5)), r"5 features.*input layer has 4"),
    (dict(X=_X(d=3)), r"3 features"),
    (dict(y=np.where(Y == 2, 3, Y)), r"label .*3.* outside \[0, 3\)"),
    (dict(y=np.where(Y == 2, -1, Y)), r"label .*-1.* outside \[0, 3\)"),
    (dict(y=Y + 0.5), r"integer"),
    (dict(y=Y.astype(str)), r"numbers"),
    (dict(X=_with(_X(), (3, 2), np.nan)), r"NaN.*row 3, column 2"),
    (dict(X=_with(_X(), (0, 0), np.inf)), r"inf"),
    (dict(X=_with(_X(), (5, 1), -np.inf)), r"inf"),
    (dict(X=_X().ravel()), r"2-D"),
    (dict(X=_X().reshape(10, 2, 2)), r"2-D"),
    (dict(X=np.zeros((0, 4)), y=np.zeros(0, int)), r"empty"),
    (dict(y=Y[:9]), r"different lengths"),
    (dict(X=_X(n=12)), r"different lengths"),
    (dict(X=[["a", "b", "c", "d"]] * 10), r"numbers"),
    (dict(batch_size=0), r"batch_size"),
    (dict(batch_size=-4), r"batch_size"),
    (dict(batch_size=2.5), r"batch_size"),
    (dict(lr=0.0), r"lr"),
    (dict(lr=-0.1), r"lr"),
    (dict(lr=float("nan")), r"lr"),
    (dict(lr=float("inf")), r"lr"),
    (dict(epochs=0), r"epochs"),
    (dict(epochs=-1), r"epochs"),
    (dict(shuffle="yes"), r"shuffle"),
    (dict(seed=-1), r"seed"),
]


@pytest.mark.parametrize("bad,match", BAD_FIT, ids=[f"{i}-{m[:18]}" for i, (_, m) in enumerate(BAD_FIT)])
def test_fit_rejects_bad_input_and_keeps_weights(clf, bad, match):
    before = clf._params.copy()
    kw = dict(X=_X(), y=Y, epochs=1, batch_size=4, lr=0.1)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        clf.fit(kw.pop("X"), kw.pop("y"), **kw)
    assert clf._params.tobytes() == before.tobytes()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64, bool])
def test_all_finite_agrees_with_numpy_isfinite(dtype):
    """The check fit and predict run on X and on float targets: the sum shortcut must never pass a
    NaN or inf, nor reject large finite values whose sum overflows."""
    rng = np.random.default_rng(0)
    big = np.finfo(dtype).max if np.issubdtype(dtype, np.floating) else 1
    cases = [np.zeros((3, 4), dtype), np.full((5, 7), big, dtype), rng.standard_normal((6, 5)).astype(dtype)]
    if np.issubdtype(dtype, np.floating):
        for value in (np.nan, np.inf, -np.inf):
            for where in ((0, 0), (4, 6)):
                cases.append(_with(np.full((5, 7), big, dtype), where, value))
                cases.append(_with(rng.standard_normal((5, 7)).astype(dtype), where, value))
        both = np.ones((2, 3), dtype)
        both[0, 0], both[1, 2] = np.inf, -np.inf  # their sum is NaN, and so is the check's
        cases.append(both)
    for arr in cases:
        assert all_finite(arr) == bool(np.isfinite(arr).all()), arr
        # The same values at the end of an array large enough for the sum's shortcut (smaller
        # ones take np.isfinite directly).
        large = np.zeros((validation.COMPILED_CHECK_MIN // arr.shape[1] + 1, arr.shape[1]), dtype)
        large[-arr.shape[0]:] = arr
        assert large.size >= validation.COMPILED_CHECK_MIN
        assert all_finite(large) == bool(np.isfinite(large).all()), arr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", [(1000, 784), (70, 1000), (130_000, 1)])
def test_compiled_finiteness_check_finds_every_nan_and_inf(dtype, rows, cols):
    """Arrays past COMPILED_CHECK_MIN take the compiled check (row blocks across threads): one
    NaN or inf anywhere (first element, last element, a block's first or last row, at random) is
    found; the largest finite values, whose sum overflows, pass."""
    assert rows * cols >= validation.COMPILED_CHECK_MIN
    rng = np.random.default_rng(rows)
    block = -(-rows // validation.CHECK_BLOCKS)
    places = [(0, 0), (rows - 1, cols - 1), (block, 0), (block - 1, cols - 1), (rows // 2, cols // 3)]
    places += [(int(rng.integers(rows)), int(rng.integers(cols))) for _ in range(5)]
    clean = rng.standard_normal((rows, cols)).astype(dtype)
    assert all_finite(clean, compiled=True)
    assert all_finite(np.full((rows, cols), np.finfo(dtype).max, dtype), compiled=True)
    for value in (np.nan, np.inf, -np.inf):
        for where in places:
            assert not all_finite(_with(clean.copy(), where, value), compiled=True), (value, where)
    with pytest.raises(ValueError, match=f"X contains inf \\(first at row {rows - 1}, column {cols - 1}\\)"):
        Model([cols, 3]).predict(_with(clean.copy(), (rows - 1, cols - 1), np.inf))


@pytest.mark.parametrize("engine,calls", [("numba", 1), ("numpy", 0)])
def test_only_the_numba_engine_checks_with_the_compiled_loop(monkeypatch, engine, calls):
    """The NumPy engine stays pure NumPy: numba's threads, spinning after a parallel loop, would
    share the cores with its BLAS calls."""
    import fastmlp.kernels.checks as checks
    seen = []
    real = checks.nonfinite_blocks
    monkeypatch.setattr(checks, "nonfinite_blocks", lambda *a: seen.append(1) or real(*a))
    X = np.random.default_rng(0).standard_normal((200, 784)).astype(np.float32)
    Model([784, 3], engine=engine).fit(X, np.arange(200) % 3, batch_size=64)
    assert len(seen) == calls


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("layers,rows,small", [
    ([784, 32, 10], 2 * PREDICT_ROWS + 3, False),  # two chunks on every thread, one of 3 rows on one
    ([2, 4, 1], 150, True),  # the small path
])
def test_predict_finds_every_nan_and_inf(engine, layers, rows, small):
    """Prediction looks for NaN and inf chunk by chunk, as the network reads X: one anywhere, in any
    chunk, is reported with its place, whatever came before it, and no output is returned."""
    from fastmlp.kernels.small import use_small
    model = Model(layers, output="softmax" if layers[-1] > 1 else "sigmoid",
                  loss=None if layers[-1] > 1 else "mse", dtype=np.float32, seed=0, engine=engine)
    assert use_small(model._layout, min(PREDICT_ROWS, rows)) == small
    cols = layers[0]
    clean = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
    expected = model.predict_proba(clean)
    assert np.isfinite(expected).all()
    places = [(0, 0), (rows - 1, cols - 1), (rows // 2, cols // 2)]
    if not small:
        places += [(PREDICT_ROWS - 1, cols - 1), (PREDICT_ROWS, 0), (2 * PREDICT_ROWS, 3)]
    for value, kind in ((np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")):
        for r, c in places:
            with pytest.raises(ValueError, match=f"X contains {kind} \\(first at row {r}, column {c}\\)"):
                model.predict_proba(_with(clean, (r, c), value))
    assert np.array_equal(model.predict_proba(clean), expected)  # (the model is untouched)


def test_label_error_shows_the_label_as_a_plain_number(clf):
    """The message is for people: "label 3", not NumPy's repr "label np.int64(3)"."""
    with pytest.raises(ValueError) as info:
        clf.fit(_X(), np.where(Y == 2, 3, Y))
    assert "label 3 outside [0, 3)" in str(info.value)
    assert "np." not in str(info.value)


def test_fit_rejects_bad_targets_for_float_losses():
    X = _X()
    bce = Model([4, 3, 2], output="sigmoid", seed=0)
    mse = Model([4, 3, 2], output="identity", seed=0)
    before = bce._params.copy(), mse._params.copy()
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        bce.fit(X, np.full((10, 2), 1.5))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        mse.fit(X, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        mse.fit(X, _with(np.zeros((10, 2)), (1, 1), np.nan))
    assert bce._params.tobytes() == before[0].tobytes() and mse._params.tobytes() == before[1].tobytes()


@pytest.mark.parametrize("bad,match", [
    (_X(d=5), r"5 features"), (_with(_X(), (2, 2), np.nan), r"NaN"), (_with(_X(), (2, 2), np.inf), "inf"),
    (_X().ravel(), r"2-D"), (np.zeros((0, 4)), r"empty"),
])
def test_predict_rejects_bad_input(clf, bad, match):
    before = clf._params.copy()
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match=match):
            method(bad)
    assert clf._params.tobytes() == before.tobytes()


def test_inputs_are_not_modified():
    X = _X().astype(np.float32)
    X_copy = X.copy()
    y = Y.copy()
    Model([4, 5, 3], seed=0).fit(X, y, epochs=2, batch_size=3, lr=0.1)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, Y)


@pytest.mark.parametrize("kw,match", [
    (dict(activation="swish"), r"activation 'swish'"),
    (dict(activation=["relu"]), r"activation lists 1 names for 2 hidden layers"),
    (dict(output="softplus"), r"output 'softplus'"),
    (dict(loss="hinge"), r"loss 'hinge'"),
    (dict(output="softmax", loss="mse"), r"loss 'mse' does not go with output 'softmax'"),
    (dict(output="identity", loss="cross_entropy"), r"does not go with"),
    (dict(init="orthogonal"), r"init 'orthogonal'"),
    (dict(engine="cuda"), r"engine 'cuda'"),
    (dict(dtype=np.float16), r"dtype"),
    (dict(dtype=np.int32), r"dtype"),
    (dict(dtype="complex128"), r"dtype"),
    (dict(dtype="not-a-dtype"), r"dtype"),
    (dict(bias="yes"), r"bias"),
    (dict(seed=-3), r"seed"),
    (dict(seed=1.5), r"seed"),
    (dict(layers=[4]), r"at least an input and an output"),
    (dict(layers=[4, 0, 3]), r"layer size"),
    (dict(layers=[4, -2, 3]), r"layer size"),
    (dict(layers=[4, 2.5, 3]), r"layer size"),
    (dict(layers=7), r"layers must be a list"),
])
def test_constructor_rejects_bad_arguments(kw, match):
    kw = {"layers": [4, 6, 5, 3], **kw}
    with pytest.raises(ValueError, match=match):
        Model(kw.pop("layers"), **kw)


def test_engine_can_be_switched_but_only_to_a_known_one():
    model = Model([4, 3], seed=0)
    model.engine = "numpy"
    assert model.engine == "numpy"
    with pytest.raises(ValueError, match="engine"):
        model.engine = "gpu"
    assert model.engine == "numpy"


# ---- parameters -------------------------------------------------------------------------------

def test_article_parameter_count():
    model = Model([784, 128, 64, 10])
    per_layer = [784 * 128 + 128, 128 * 64 + 64, 64 * 10 + 10]
    assert model.n_params == 109_386 == sum(per_layer)
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    assert model.n_params == sum(p.numel() for p in net.parameters())
    text = model.summary()
    for count in per_layer:
        assert f"{count:,}" in text or str(count) in text
    assert "109,386" in text or "109386" in text
    no_bias = Model([784, 128, 64, 10], bias=False)
    assert no_bias.n_params == 784 * 128 + 128 * 64 + 64 * 10
    assert f"{no_bias.n_params:,}" in no_bias.summary() or str(no_bias.n_params) in no_bias.summary()


def test_weights_setter_copies_and_checks():
    model = Model([4, 5, 3], seed=0, dtype=np.float32)
    new = np.arange(20, dtype=np.float64).reshape(4, 5) / 7
    model.weights[0] = new
    new[0, 0] = 99.0  # the model holds a copy
    assert model.weights[0][0, 0] == 0.0
    np.testing.assert_array_equal(model.weights[0], (np.arange(20).reshape(4, 5) / 7).astype(np.float32))
    assert model.weights[0].dtype == np.float32
    assert np.shares_memory(model.weights[0], model._params)  # still a view of the flat buffer
    model.biases[1] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(model._params[-3:], [1.0, 2.0, 3.0])
    before = model._params.copy()
    with pytest.raises(FastMLPError, match=r"shape \(4, 5\).*shape \(5, 4\)"):
        model.weights[0] = np.zeros((5, 4))
    with pytest.raises(FastMLPError, match="shape"):
        model.biases[0] = np.zeros(4)
    with pytest.raises(FastMLPError, match="NaN or inf"):
        model.weights[1] = np.full((5, 3), np.nan)
    assert model._params.tobytes() == before.tobytes()
    assert len(model.weights) == len(model.biases) == 2


def test_assigning_the_whole_list_copies_in_after_checking_every_array():
    """model.weights = [...] fills the parameter buffer (it does not replace the attribute with a
    list the kernels never read); one bad array leaves every weight as it was."""
    model = Model([4, 5, 3], seed=0, dtype=np.float64)
    other = Model([4, 5, 3], seed=7, dtype=np.float64)
    X = _X().astype(np.float64)
    model.weights = [w.copy() for w in other.weights]
    model.biases = [np.full(5, 0.5), np.full(3, -0.5)]
    other.biases = [np.full(5, 0.5), np.full(3, -0.5)]
    np.testing.assert_array_equal(model.predict_proba(X), other.predict_proba(X))
    assert type(model.weights).__name__ == "_ParamList"
    before = model._params.copy()
    for bad, match in [([np.zeros((4, 5))], "list of 2 arrays"),
                       (np.zeros((4, 5)), "list of 2 arrays"),
                       ([np.zeros((4, 5)), np.zeros((3, 5))], r"weights\[1\] has shape \(5, 3\)"),
                       ([np.zeros((4, 5)), np.full((5, 3), np.inf)], "NaN or inf"),
                       ([np.zeros((4, 5)), "abc"], "array of numbers")]:
        with pytest.raises(FastMLPError, match=match):
            model.weights = bad
    assert model._params.tobytes() == before.tobytes()  # weights[0] was not written either


@pytest.mark.parametrize("name,value", [("layers", (4, 6, 3)), ("dtype", np.float64), ("output", "sigmoid"),
                                        ("activations", ("tanh",)), ("bias", False), ("seed", 3)])
def test_the_architecture_cannot_be_changed_after_construction(name, value):
    model = Model([4, 5, 3], seed=0)
    before = getattr(model, name)
    with pytest.raises(FastMLPError, match=f"{name} is fixed when a Model is built"):
        setattr(model, name, value)
    assert getattr(model, name) == before
    model.fit(_X(), Y, epochs=1, batch_size=4)  # still the same, working model


def test_bias_free_biases_are_read_only():
    model = Model([4, 5, 3], seed=0, bias=False)
    with pytest.raises(FastMLPError, match="read-only"):
        model.biases[0] = np.ones(5)
    with pytest.raises(ValueError):
        model.biases[1][0] = 1.0
    assert not any(b.any() for b in model.biases)
    model.fit(_X(), Y, epochs=3, batch_size=4, lr=0.5)
    assert not any(b.any() for b in model.biases)


def test_initialisations_have_their_scale():
    """He: std sqrt(2 / fan_in); Xavier: sqrt(2 / (fan_in + fan_out)); normal: 1; uniform limits."""
    expected = {"he": np.sqrt(2 / 400), "xavier": np.sqrt(2 / 600), "normal": 1.0,
                "he_uniform": np.sqrt(6 / 400) / np.sqrt(3), "xavier_uniform": np.sqrt(6 / 600) / np.sqrt(3)}
    for init, std in expected.items():
        W = Model([400, 200], init=init, seed=1, dtype=np.float64).weights[0]
        assert W.std() == pytest.approx(std, rel=0.02), init
        assert abs(W.mean()) < 0.02 * std
    limit = np.sqrt(6 / 400)
    assert np.abs(Model([400, 200], init="he_uniform", seed=1).weights[0]).max() <= limit
    assert not any(b.any() for b in Model([400, 200], seed=1).biases)


# ---- divergence -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_callback", [False, True])
def test_huge_learning_rate_raises_training_diverged(dtype, with_callback):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)) * 10
    y = rng.standard_normal((64, 1)) * 1e4
    model = Model([3, 4, 1], activation="identity", output="identity", dtype=dtype, seed=0)
    epochs_done = []
    callback = (lambda e, loss: epochs_done.append(e)) if with_callback else None
    with pytest.raises(TrainingDiverged, match="learning rate") as info:
        model.fit(X, y, epochs=200, batch_size=16, lr=1e6, callback=callback)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FastMLPError)
    assert "1e+06" in str(info.value)
    assert all(np.isfinite(W).all() for W in model.weights)
    assert all(np.isfinite(b).all() for b in model.biases)
    assert np.isfinite(model.predict_proba(X)).all()
    assert all(np.isfinite(info.value.history.loss))
    assert len(info.value.history.loss) == len(epochs_done)
