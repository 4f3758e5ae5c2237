"""Checkpoints: bit-exact round trips (weights, random generator, history, optimizer arrays), exact
resumption of training, and hostile or damaged files refused with a CheckpointError."""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from fastmlp import FastMLPError, Model
from fastmlp.checkpoint import (CheckpointError, load_checkpoint, rng_from_state, save_checkpoint)
from fastmlp.io import ModelFileError

CASES = [
    dict(layers=[6, 5, 3], dtype=np.float32, bias=True),
    dict(layers=[6, 5, 4, 3], dtype=np.float64, bias=True, activation=["tanh", "sigmoid"]),
    dict(layers=[6, 2], dtype=np.float32, bias=False, output="sigmoid"),
]


def _data(model, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, model.layers[0]))
    k = model.n_outputs
    y = rng.integers(0, k, n) if model.loss == "cross_entropy" else rng.random((n, k))
    return X, y


def _trained(case, seed=0):
    model = Model(seed=seed, **case)
    X, y = _data(model)
    history = model.fit(X, y, epochs=2, batch_size=8, lr=0.05)
    return model, history


def _state(model, history, epoch=2):
    rng = np.random.default_rng(7)
    return {
        "epoch": epoch,
        "history": {"loss": list(history.loss), "val": [0.1, 1e-300, 3.0], "norms": [[1.0, 2.5], [0.0, 1e300]]},
        "fit": {"epochs": 10, "batch_size": 8, "lr": 0.05, "shuffle": True, "seed": None, "note": "x"},
        "arrays": {"momentum": rng.standard_normal(model._params.size).astype(model.dtype),
                   "adam.v": rng.random(3).astype(model.dtype), "empty": np.zeros(0, model.dtype)},
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{np.dtype(c['dtype']).name}-{c['bias']}")
def test_round_trip_is_bit_exact(tmp_path, case):
    model, history = _trained(case)
    state = _state(model, history)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, state)
    expected_rng = np.random.Generator(np.random.PCG64())
    expected_rng.bit_generator.state = model._rng.bit_generator.state

    loaded, got = load_checkpoint(path)
    assert isinstance(loaded, Model)
    for attr in ("layers", "activations", "output", "loss", "bias", "init", "dtype"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded._params.tobytes() == model._params.tobytes()
    assert got["epoch"] == 2
    assert got["history"] == state["history"]
    assert all(type(v) is float for v in got["history"]["loss"])
    assert got["fit"] == state["fit"]
    assert set(got["arrays"]) == set(state["arrays"])
    for name, arr in state["arrays"].items():
        assert got["arrays"][name].dtype == model.dtype and got["arrays"][name].shape == arr.shape
        assert got["arrays"][name].tobytes() == arr.tobytes()
        assert got["arrays"][name].flags.writeable
    # The model's generator (what fit shuffles with when it gets no seed) is restored, and the
    # saved state gives a Generator that continues exactly where the original one was.
    assert got["rng"] == model._rng.bit_generator.state
    restored = rng_from_state(got["rng"])
    assert restored.random(5).tobytes() == expected_rng.random(5).tobytes()
    assert loaded._rng.integers(0, 1 << 62, 5).tolist() == model._rng.integers(0, 1 << 62, 5).tolist()
    assert restored.permutation(50).tolist() == expected_rng.permutation(50).tolist()
    X, _ = _data(model)
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def test_model_part_is_exactly_a_model_file(tmp_path):
    """The checkpoint holds the model as save_model writes it, plus its own header and arrays."""
    model, history = _trained(CASES[0])
    save_checkpoint(tmp_path / "c.npz", model, _state(model, history))
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as c, np.load(tmp_path / "m.npz", allow_pickle=False) as m:
        assert set(c.files) == set(m.files) | {"checkpoint", "state.momentum", "state.adam.v", "state.empty"}
        for name in m.files:
            assert c[name].dtype == m[name].dtype and c[name].tobytes() == m[name].tobytes(), name
        header = json.loads(c["checkpoint"].tobytes().decode())
    assert header["format"] == "fastmlp-checkpoint" and header["version"] == 1
    assert header["epoch"] == 2 and header["rng"]["bit_generator"] == "PCG64"
    assert sorted(header["arrays"]) == ["adam.v", "empty", "momentum"]
    assert sorted(os.listdir(tmp_path)) == ["c.npz", "m.npz"]  # no temporary files left


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    """Train 2 epochs, checkpoint, load, train 2 more (no seed: the model's generator shuffles)
    == train 4 epochs straight."""
    case = dict(layers=[6, 8, 3], dtype=np.float64)
    X, y = _data(Model(**case), n=37)
    straight = Model(seed=3, **case)
    straight.fit(X, y, epochs=4, batch_size=5, lr=0.05)

    first = Model(seed=3, **case)
    h = first.fit(X, y, epochs=2, batch_size=5, lr=0.05)
    save_checkpoint(tmp_path / "c.npz", first, {"epoch": 2, "history": h})
    resumed, state = load_checkpoint(tmp_path / "c.npz")
    assert state["epoch"] == 2 and state["history"]["loss"] == h.loss
    resumed.fit(X, y, epochs=2, batch_size=5, lr=0.05)
    assert resumed._params.tobytes() == straight._params.tobytes()


@pytest.mark.parametrize("kind", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_every_numpy_bit_generator_round_trips(tmp_path, kind):
    model = Model([3, 2], seed=0)
    gen = np.random.Generator(getattr(np.random, kind)(12345))
    gen.random(3)
    save_checkpoint(tmp_path / "c.npz", model, {"epoch": 0, "rng": gen})
    _, state = load_checkpoint(tmp_path / "c.npz")
    assert rng_from_state(state["rng"]).random(20).tobytes() == gen.random(20).tobytes()


def test_defaults_and_history_object(tmp_path):
    model, history = _trained(CASES[0])
    save_checkpoint(tmp_path / "c.npz", model, {"epoch": np.int64(2), "history": history,
                                                 "fit": {"lr": np.float32(0.5), "batch_size": np.int64(8)}})
    loaded, state = load_checkpoint(tmp_path / "c.npz", engine="numpy")
    assert loaded.engine == "numpy"
    assert state["history"]["loss"] == history.loss
    assert state["arrays"] == {} and state["fit"] == {"lr": 0.5, "batch_size": 8}
    assert state["rng"] == model._rng.bit_generator.state


def test_compressed_checkpoint_loads(tmp_path):
    """A checkpoint recompressed by another tool (deflate) is still read."""
    model, history = _trained(CASES[0])
    save_checkpoint(tmp_path / "c.npz", model, _state(model, history))
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    np.savez_compressed(tmp_path / "z.npz", **members)
    loaded, state = load_checkpoint(tmp_path / "z.npz")
    assert loaded._params.tobytes() == model._params.tobytes()
    assert state["arrays"]["momentum"].tobytes() == members["state.momentum"].tobytes()


# ---- refusing to save -------------------------------------------------------------------------------

BAD_STATES = {
    "not a dict": [1, 2],
    "no epoch": {},
    "negative epoch": {"epoch": -1},
    "bool epoch": {"epoch": True},
    "float epoch": {"epoch": 1.0},
    "unknown key": {"epoch": 1, "optimiser": {}},
    "nan history": {"epoch": 1, "history": {"loss": [1.0, float("nan")]}},
    "string history": {"epoch": 1, "history": {"loss": ["1.0"]}},
    "history not a dict": {"epoch": 1, "history": [1.0]},
    "deep history": {"epoch": 1, "history": {"loss": [[[1.0]]]}},
    "fit lr negative": {"epoch": 1, "fit": {"lr": -1.0}},
    "fit epochs float": {"epoch": 1, "fit": {"epochs": 2.5}},
    "fit nested": {"epoch": 1, "fit": {"x": [1, 2]}},
    "fit inf": {"epoch": 1, "fit": {"x": float("inf")}},
    "fit int lr too large for a float": {"epoch": 1, "fit": {"lr": 10 ** 400}},
    "fit int too large for a float": {"epoch": 1, "fit": {"x": 10 ** 400}},
    "history int too large for a float": {"epoch": 1, "history": {"loss": [10 ** 400]}},
    "epoch huge": {"epoch": 2 ** 64},
    "rng junk": {"epoch": 1, "rng": {"bit_generator": "PCG64", "state": "x"}},
    "rng unknown generator": {"epoch": 1, "rng": {"bit_generator": "Evil", "state": {}}},
    "rng float state": {"epoch": 1, "rng": {"bit_generator": "PCG64", "state": {"state": 1.5, "inc": 3},
                                            "has_uint32": 0, "uinteger": 0}},
    "rng None": {"epoch": 1, "rng": None},
    "array wrong dtype": {"epoch": 1, "arrays": {"m": np.zeros(3, np.float64)}},
    "array 2-D": {"epoch": 1, "arrays": {"m": np.zeros((3, 1), np.float32)}},
    "array list": {"epoch": 1, "arrays": {"m": [0.0, 1.0]}},
    "array nan": {"epoch": 1, "arrays": {"m": np.array([0.0, np.nan], np.float32)}},
    "array bad name": {"epoch": 1, "arrays": {"../m": np.zeros(3, np.float32)}},
    "arrays not a dict": {"epoch": 1, "arrays": [np.zeros(3, np.float32)]},
}


@pytest.mark.parametrize("name", BAD_STATES)
def test_bad_state_is_refused_before_writing(tmp_path, name):
    model = Model([4, 3], seed=0)  # float32
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.npz", model, BAD_STATES[name])
    assert str(info.value)
    assert os.listdir(tmp_path) == []


def test_non_finite_weights_are_refused(tmp_path):
    model = Model([4, 3], seed=0)
    model._params[1] = np.inf
    with pytest.raises(CheckpointError, match="NaN or inf"):
        save_checkpoint(tmp_path / "c.npz", model, {"epoch": 0})
    assert os.listdir(tmp_path) == []


def test_checkpoint_error_is_a_fastmlp_error():
    assert issubclass(CheckpointError, FastMLPError) and issubclass(CheckpointError, ValueError)


# ---- refusing to load -------------------------------------------------------------------------------

def _members(tmp_path, case=CASES[0]):
    model, history = _trained(case)
    save_checkpoint(tmp_path / "good.npz", model, _state(model, history))
    with np.load(tmp_path / "good.npz", allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    header = json.loads(members["checkpoint"].tobytes().decode())
    return members, header


def _write(path, members, header=None):
    if header is not None:
        members = dict(members, checkpoint=np.frombuffer(json.dumps(header).encode(), np.uint8))
    np.savez(path, **members)
    return path


def _edit(base, /, **changes):
    return {**base, **changes}


HEADER_EDITS = {
    "format": lambda h: _edit(h, format="fastmlp-model"),
    "newer version": lambda h: _edit(h, version=2),
    "version zero": lambda h: _edit(h, version=0),
    "version string": lambda h: _edit(h, version="1"),
    "version bool": lambda h: _edit(h, version=True),
    "epoch negative": lambda h: _edit(h, epoch=-3),
    "epoch string": lambda h: _edit(h, epoch="2"),
    "epoch missing": lambda h: {k: v for k, v in h.items() if k != "epoch"},
    "rng missing": lambda h: {k: v for k, v in h.items() if k != "rng"},
    "rng list": lambda h: _edit(h, rng=[1, 2]),
    "rng bad generator": lambda h: _edit(h, rng=_edit(h["rng"], bit_generator="os.system")),
    "rng negative": lambda h: _edit(h, rng=_edit(h["rng"], state={"state": -1, "inc": 1})),
    "rng huge": lambda h: _edit(h, rng=_edit(h["rng"], state={"state": 2 ** 200, "inc": 1})),
    "rng float": lambda h: _edit(h, rng=_edit(h["rng"], state={"state": 2.0, "inc": 1})),
    "rng missing field": lambda h: _edit(h, rng={"bit_generator": "PCG64"}),
    "history list": lambda h: _edit(h, history=[1.0]),
    "history strings": lambda h: _edit(h, history={"loss": ["a"]}),
    "history bools": lambda h: _edit(h, history={"loss": [True]}),
    "history null": lambda h: _edit(h, history={"loss": [None]}),
    "fit list": lambda h: _edit(h, fit=[]),
    "fit batch zero": lambda h: _edit(h, fit={"batch_size": 0}),
    "fit shuffle string": lambda h: _edit(h, fit={"shuffle": "yes"}),
    "fit dict value": lambda h: _edit(h, fit={"x": {}}),
    "arrays not a list": lambda h: _edit(h, arrays="momentum"),
    "arrays missing one": lambda h: _edit(h, arrays=h["arrays"][:-1]),
    "arrays extra name": lambda h: _edit(h, arrays=h["arrays"] + ["ghost"]),
    "arrays duplicate": lambda h: _edit(h, arrays=h["arrays"] + h["arrays"][:1]),
    "header is a list": lambda h: [h],
}


@pytest.mark.parametrize("name", HEADER_EDITS)
def test_bad_checkpoint_header_is_refused(tmp_path, name):
    members, header = _members(tmp_path)
    path = _write(tmp_path / "bad.npz", members, HEADER_EDITS[name](header))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    if name == "newer version":
        assert "newer" in str(info.value) and "Upgrade" in str(info.value)


RAW_HEADERS = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe{}",
    "NaN constant": b'{"format": "fastmlp-checkpoint", "version": 1, "epoch": NaN}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "huge integer": b'{"format": "fastmlp-checkpoint", "version": 1' + b"0" * 5000 + b"}",
    "empty": b"",
}


@pytest.mark.parametrize("name", RAW_HEADERS)
def test_unparseable_checkpoint_header_is_refused(tmp_path, name):
    members, _ = _members(tmp_path)
    members["checkpoint"] = np.frombuffer(RAW_HEADERS[name], np.uint8)
    path = _write(tmp_path / "bad.npz", members)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


MEMBER_EDITS = {
    "no checkpoint header": lambda m: {k: v for k, v in m.items() if k != "checkpoint"},
    "header as float": lambda m: _edit(m, checkpoint=m["checkpoint"].astype(np.float32)),
    "header 2-D": lambda m: _edit(m, checkpoint=m["checkpoint"][None, :]),
    "state array float64": lambda m: _edit(m, **{"state.momentum": m["state.momentum"].astype(np.float64)}),
    "state array 2-D": lambda m: _edit(m, **{"state.momentum": m["state.momentum"][None, :]}),
    "state array NaN": lambda m: _edit(m, **{"state.momentum": np.full(3, np.nan, np.float32)}),
    "state array int": lambda m: _edit(m, **{"state.momentum": np.zeros(3, np.int32)}),
    "state array missing": lambda m: {k: v for k, v in m.items() if k != "state.momentum"},
    "unlisted state array": lambda m: _edit(m, **{"state.extra": np.zeros(3, np.float32)}),
    "unknown member": lambda m: _edit(m, junk=np.zeros(3, np.float32)),
    "weights NaN": lambda m: _edit(m, W0=np.full_like(m["W0"], np.nan)),
    "weights wrong shape": lambda m: _edit(m, W0=m["W0"][:-1]),
    "weights float64": lambda m: _edit(m, W0=m["W0"].astype(np.float64)),
    "no model header": lambda m: {k: v for k, v in m.items() if k != "header"},
    "model header newer": lambda m: _edit(m, header=np.frombuffer(json.dumps(
        {**json.loads(m["header"].tobytes()), "version": 99}).encode(), np.uint8)),
    "missing bias": lambda m: {k: v for k, v in m.items() if k != "b1"},
}


@pytest.mark.parametrize("name", MEMBER_EDITS)
def test_bad_archive_members_are_refused(tmp_path, name):
    members, _ = _members(tmp_path)
    path = _write(tmp_path / "bad.npz", MEMBER_EDITS[name](members))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "fastmlp-checkpoint-" not in str(info.value)  # no temporary path leaks into messages
    if name == "model header newer":
        assert "newer" in str(info.value)


def _zip(path, entries, compression=zipfile.ZIP_STORED):
    entries = entries.items() if isinstance(entries, dict) else entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_hostile_archives_are_refused(tmp_path):
    members, _ = _members(tmp_path)
    good = {f"{k}.npy": _npy(v) for k, v in members.items()}
    hostile = {
        # An .npy header claiming a petabyte of data: refused before anything is allocated.
        "huge shape": {**good, "state.momentum.npy": _npy(np.zeros(3, np.float32)).replace(
            b"(3,)", b"(100000000000000,)")},
        "negative shape": {**good, "state.momentum.npy": _npy(np.zeros(3, np.float32)).replace(
            b"(3,)", b"(-3,)  ")},
        "pickled object array": {**good, "state.momentum.npy": _npy(np.array([{}, 1], dtype=object))},
        "not an npy member": {**good, "evil.py": b"import os"},
        # Names that would collide with np.savez's own parameters, or are no checkpoint member.
        "member named file": {**good, "file.npy": good["W0.npy"]},
        "member named allow_pickle": {**good, "allow_pickle.npy": good["W0.npy"]},
        "member in a folder": {**good, "sub/W0.npy": good["W0.npy"]},
        "duplicate member": list(good.items()) + [("W0.npy", good["W0.npy"])],
        "bad npy magic": {**good, "W0.npy": b"\x93NUMPX" + good["W0.npy"][6:]},
        "npy version 3": {**good, "W0.npy": good["W0.npy"][:6] + b"\x03" + good["W0.npy"][7:]},
        "trailing data": {**good, "W0.npy": good["W0.npy"] + b"\0" * 8},
        "short data": {**good, "W0.npy": good["W0.npy"][:-4]},
        "empty member": {**good, "W0.npy": b""},
    }
    for name, entries in hostile.items():
        path = _zip(tmp_path / "bad.npz", entries)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        path.unlink()


def test_unreadable_files_are_refused(tmp_path):
    members, _ = _members(tmp_path)
    good = (tmp_path / "good.npz").read_bytes()
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path)  # a folder
    cases = {
        "empty": b"",
        "garbage": b"this is not a zip file" * 10,
        "truncated": good[: len(good) // 2],
        "truncated tail": good[:-10],
        "flipped data": good[:200] + bytes([good[200] ^ 0xFF]) + good[201:],
        "zeroed": bytes(len(good)),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value), name


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    model, _ = _trained(CASES[0])
    model.save(tmp_path / "m.npz")
    with pytest.raises(CheckpointError, match="model file, not a checkpoint"):
        load_checkpoint(tmp_path / "m.npz")
    save_checkpoint(tmp_path / "c.npz", model, {"epoch": 0})
    with pytest.raises(ModelFileError):  # and the model loader does not take a checkpoint either
        Model.load(tmp_path / "c.npz")
