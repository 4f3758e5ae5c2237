"""Fuzzing the file readers: damaged model files, IDX files and checkpoints either load into a valid
object or raise FastMLPError with a message naming the file; never another exception, a crash, or
a hang.

Valid files are written by fastmlp itself (Model.save, write_idx, save_checkpoint) and then damaged:
bytes flipped, replaced, inserted or deleted, "interesting" integers written over size fields, the
file truncated, or parts of two files spliced together. Since an .npz member carries a CRC, most
byte-level damage inside a member is caught by zipfile; the structured strategies therefore also
damage a member's content and re-zip it with a correct CRC (so the .npy headers and the JSON header
are really parsed), drop, duplicate or swap members, and put hostile values into JSON header fields.

Hypothesis runs derandomized (the same cases on every run, no example database). Every example runs
under an alarm, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import struct
import tempfile
import time
import warnings
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import given
from hypothesis import strategies as st

from fastmlp import FastMLPError, Model
from fastmlp.checkpoint import load_checkpoint, save_checkpoint
from fastmlp.datasets import load_idx_pair, read_idx, write_idx

# Seconds one example may take before it counts as a hang.
EXAMPLE_LIMIT = 20


def fuzz_settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds=EXAMPLE_LIMIT):
    def alarm(signum, frame):
        raise Hang(f"an example ran longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_FOLDER = tempfile.TemporaryDirectory(prefix="fastmlp-fuzz-")
FOLDER = Path(_FOLDER.name)


def _bytes_of(write):
    """The bytes of a file written by ``write(path)``."""
    path = FOLDER / "source.bin"
    write(path)
    data = path.read_bytes()
    path.unlink()
    return data


# ---- the valid files ------------------------------------------------------------------------------

MODEL_SPECS = [
    dict(layers=[4, 3, 2], dtype=np.float32),
    dict(layers=[3, 2], dtype=np.float64, output="sigmoid", bias=False),
    dict(layers=[5, 4, 3, 2], dtype=np.float64, output="identity", activation=["tanh", "relu"], init="normal"),
    dict(layers=[2, 3, 1], dtype=np.float32, output="sigmoid", loss="mse", activation="sigmoid"),
]


@cache
def model_files():
    return [_bytes_of(Model(seed=i, **spec).save) for i, spec in enumerate(MODEL_SPECS)]


@cache
def checkpoint_files():
    out = []
    for i, spec in enumerate(MODEL_SPECS[:2]):
        model = Model(seed=i, **spec)
        state = {"epoch": 3, "history": {"loss": [0.5, 0.25, 0.125]}, "fit": {"lr": 0.1, "batch_size": 4},
                 "arrays": {"momentum": np.arange(model._params.size, dtype=model.dtype)}}
        out.append(_bytes_of(lambda p: save_checkpoint(p, model, state)))
    return out


IDX_ARRAYS = [
    np.arange(48, dtype=np.uint8).reshape(3, 4, 4),              # images
    np.array([0, 1, 2, 9, 5], dtype=np.uint8),                   # labels
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    np.array([1e300, -0.0, np.pi], dtype=np.float64),
    np.arange(-4, 4, dtype=np.int16).reshape(2, 2, 2),
    np.array([2**31 - 1, -2**31, 0, 7], dtype=np.int32),
    np.arange(-3, 3, dtype=np.int8).reshape(2, 3, 1, 1),
]


@cache
def idx_files():
    return [_bytes_of(lambda p: write_idx(p, arr, gzip=gz)) for arr in IDX_ARRAYS for gz in (True, False)]


@cache
def three_labels():
    return _bytes_of(lambda p: write_idx(p, np.array([0, 1, 2], np.uint8)))


# ---- byte-level damage ----------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]
position = st.integers(0, 1 << 16)
byte_mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(1, 255)),
    st.tuples(st.just("replace"), position, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("int"), position, st.sampled_from([1, 2, 4, 8]), st.sampled_from(INTERESTING),
              st.sampled_from(["<", ">"])),
    st.tuples(st.just("digit"), position, st.sampled_from(b"0123456789-.e[]{}\",:")),
    st.tuples(st.just("replace"), position, st.sampled_from([str(v).encode() for v in INTERESTING]
                                                            + [b"1e999", b"-1", b"NaN", b"99999999999"])),
    st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), position, st.integers(1, 64)),
    st.tuples(st.just("truncate"), position),
    st.tuples(st.just("repeat"), position, st.integers(1, 64), st.integers(1, 4)),
)


def damage(data: bytes, mutation) -> bytes:
    kind, pos = mutation[0], mutation[1]
    if not data:
        return bytes(mutation[2]) if kind in ("replace", "insert") else data
    i = pos % len(data)
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ mutation[2]]) + data[i + 1:]
    if kind == "replace":
        return data[:i] + mutation[2] + data[i + len(mutation[2]):]
    if kind == "int":
        _, _, width, value, order = mutation
        packed = (value % (1 << (8 * width))).to_bytes(width, "little" if order == "<" else "big")
        return data[:i] + packed + data[i + width:]
    if kind == "digit":
        return data[:i] + bytes([mutation[2]]) + data[i + 1:]
    if kind == "insert":
        return data[:i] + mutation[2] + data[i:]
    if kind == "delete":
        return data[:i] + data[i + mutation[2]:]
    if kind == "truncate":
        return data[:pos % (len(data) + 1)]
    if kind == "repeat":
        chunk = data[i:i + mutation[2]]
        return data[:i] + chunk * (mutation[3] + 1) + data[i + len(chunk):]
    raise AssertionError(kind)


def splice(a: bytes, b: bytes, i: int, j: int) -> bytes:
    """The start of ``a`` up to a cut, then ``b`` from a cut."""
    return a[:i % (len(a) + 1)] + b[j % (len(b) + 1):]


def damaged_files(corpus, others=()):
    """Strategy: (description, bytes) of a file from ``corpus`` after 1 to 3 damages or a splice."""
    n = len(corpus())

    @st.composite
    def build(draw):
        data = corpus()[draw(st.integers(0, n - 1))]
        steps = []
        if draw(st.integers(0, 4)) == 0:  # splice with another file of the corpus (or another kind)
            pool = corpus() + [f for other in others for f in other()]
            k, i, j = draw(st.integers(0, len(pool) - 1)), draw(position), draw(position)
            data = splice(data, pool[k], i, j)
            steps.append(("splice", k, i, j))
        for m in draw(st.lists(byte_mutation, min_size=0 if steps else 1, max_size=3)):
            data = damage(data, m)
            steps.append(m)
        return steps, data
    return build()


# ---- member-level damage (valid zip, damaged content) ---------------------------------------------

def members_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def zip_of(entries) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are part of the damage
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, content in entries:
                zf.writestr(name, content)
    return buf.getvalue()


HOSTILE_JSON = [None, True, False, 0, -1, 1, 3, 4096, 1.5, -0.0, 1e308, "", "relu", "float16", "float64",
                "cross_entropy", [], [0], [4, 3, 2], [3, 2], [[4]], ["relu"], {}, {"a": 1}, 2**63, 2**64, -2**63,
                10**400, "x" * 1000]


@st.composite
def damaged_archive(draw, corpus):
    """Valid zip structure, damaged inside: member content, member list, or a JSON field."""
    files = corpus()
    data = files[draw(st.integers(0, len(files) - 1))]
    entries = list(members_of(data).items())
    how = draw(st.sampled_from(["content", "content", "json", "json", "drop", "duplicate", "rename", "swap"]))
    k = draw(st.integers(0, len(entries) - 1))
    name, content = entries[k]
    if how == "content":  # damage one member's bytes (its .npy header or data) and fix its CRC
        for m in draw(st.lists(byte_mutation, min_size=1, max_size=3)):
            content = damage(content, m)
        entries[k] = (name, content)
        step = (how, name)
    elif how == "json":  # a hostile value in a JSON header field, written as a valid .npy member
        jsons = [(i, n) for i, (n, _) in enumerate(entries) if n in ("header.npy", "checkpoint.npy")]
        i, name = jsons[draw(st.integers(0, len(jsons) - 1))]
        header = json.loads(np.load(io.BytesIO(entries[i][1])).tobytes())
        path = _json_path(draw, header)
        value = draw(st.sampled_from(HOSTILE_JSON))
        _set(header, path, value)
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
        entries[i] = (name, buf.getvalue())
        step = (how, name, path, value)
    elif how == "drop":
        del entries[k]
        step = (how, name)
    elif how == "duplicate":
        entries.insert(draw(st.integers(0, len(entries))), (name, entries[draw(st.integers(0, len(entries) - 1))][1]))
        step = (how, name)
    elif how == "rename":
        new = draw(st.sampled_from(["W0.npy", "b0.npy", "W9.npy", "header.npy", "checkpoint.npy", "x.npy",
                                    "W0", "../W0.npy", "state.momentum.npy", "state..npy",
                                    "file.npy", "allow_pickle.npy", "args.npy"]))
        entries[k] = (new, content)
        step = (how, name, new)
    else:  # swap a member's content with a member of another file of the corpus
        other = list(members_of(files[draw(st.integers(0, len(files) - 1))]).values())
        entries[k] = (name, other[draw(st.integers(0, len(other) - 1))])
        step = (how, name)
    return [step], zip_of(entries)


def _json_path(draw, header):
    """A path (list of keys/indices) to a value somewhere in the JSON header."""
    path, node = [], header
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys or (path and draw(st.booleans())):
            return path
        key = keys[draw(st.integers(0, len(keys) - 1))]
        path.append(key)
        node = node[key]


def _set(header, path, value):
    if not path:
        header.clear()
        return
    node = header
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


# ---- the checks -----------------------------------------------------------------------------------

def write_case(data: bytes, name="case.bin") -> Path:
    path = FOLDER / name
    path.write_bytes(data)
    return path


def refused_readably(exc: FastMLPError, path: Path):
    message = str(exc)
    assert message.strip(), "an empty error message"
    assert path.name in message, f"the message does not name the file: {message!r}"


def check_model(path: Path):
    try:
        with time_limit():
            model = Model.load(path)
    except FastMLPError as exc:
        refused_readably(exc, path)
        return
    assert model.dtype in (np.float32, np.float64)
    assert np.isfinite(model._params).all()
    for W, b, fan_in, fan_out in zip(model.weights, model.biases, model.layers[:-1], model.layers[1:]):
        assert W.shape == (fan_in, fan_out) and b.shape == (fan_out,)
        assert W.dtype == b.dtype == model.dtype
    X = np.random.default_rng(0).standard_normal((3, model.layers[0]))
    with time_limit():
        p = model.predict_proba(X)
    assert p.shape == (3, model.n_outputs) and np.isfinite(p).all()


def check_checkpoint(path: Path):
    try:
        with time_limit():
            model, state = load_checkpoint(path)
    except FastMLPError as exc:
        refused_readably(exc, path)
        return
    assert np.isfinite(model._params).all()
    assert isinstance(state["epoch"], int) and state["epoch"] >= 0
    for arr in state["arrays"].values():
        assert arr.ndim == 1 and arr.dtype == model.dtype and np.isfinite(arr).all()
    model._rng.random()
    p = model.predict_proba(np.zeros((2, model.layers[0])))
    assert np.isfinite(p).all()


IDX_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)}


def check_idx(path: Path):
    try:
        with time_limit():
            arr = read_idx(path)
    except FastMLPError as exc:
        refused_readably(exc, path)
        return
    assert isinstance(arr, np.ndarray) and arr.dtype in IDX_DTYPES and 1 <= arr.ndim <= 4
    assert arr.dtype.isnative


# ---- the fuzz tests -------------------------------------------------------------------------------

@fuzz_settings(2500)
@given(case=damaged_files(model_files, others=(idx_files,)))
def test_damaged_model_files(case):
    _, data = case
    check_model(write_case(data, "model.npz"))


@fuzz_settings(2500)
@given(case=damaged_archive(model_files))
def test_damaged_model_archives(case):
    _, data = case
    check_model(write_case(data, "model.npz"))


@fuzz_settings(3000)
@given(case=damaged_files(idx_files, others=(model_files,)))
def test_damaged_idx_files(case):
    _, data = case
    check_idx(write_case(data, "data.idx"))


@fuzz_settings(500)
@given(case=damaged_files(idx_files), labels=st.sampled_from([0, 1]))
def test_damaged_idx_pairs(case, labels):
    """load_idx_pair on a damaged images or labels file (the other one valid)."""
    _, data = case
    damaged = write_case(data, "damaged.idx")
    images = write_case(idx_files()[0], "images.idx")  # 3 images of 4 x 4
    good_labels = write_case(three_labels(), "labels.idx")
    pair = (images, damaged) if labels else (damaged, good_labels)
    try:
        with time_limit():
            X, y = load_idx_pair(*pair, image_shape=None, num_classes=10)
    except FastMLPError as exc:
        assert str(exc).strip()
        return
    assert X.dtype == np.float32 and X.ndim == 2 and np.isfinite(X).all() and (0 <= X).all() and (X <= 1).all()
    assert y.dtype == np.int64 and y.shape == (X.shape[0],) and ((0 <= y) & (y < 10)).all()


@fuzz_settings(1200)
@given(case=damaged_files(checkpoint_files, others=(model_files,)))
def test_damaged_checkpoint_files(case):
    _, data = case
    check_checkpoint(write_case(data, "ckpt.npz"))


@fuzz_settings(2000)
@given(case=damaged_archive(checkpoint_files))
def test_damaged_checkpoint_archives(case):
    _, data = case
    check_checkpoint(write_case(data, "ckpt.npz"))


def test_the_undamaged_files_load():
    for i, data in enumerate(model_files()):
        assert Model.load(write_case(data, "model.npz")).layers == tuple(MODEL_SPECS[i]["layers"])
    for data, arr in zip(idx_files(), [a for a in IDX_ARRAYS for _ in (0, 1)]):
        np.testing.assert_array_equal(read_idx(write_case(data, "data.idx")), arr)
    for data in checkpoint_files():
        assert load_checkpoint(write_case(data, "ckpt.npz"))[1]["epoch"] == 3


# ---- specific hostile files found while fuzzing ---------------------------------------------------

def _model_file(header_changes=None, **arrays):
    header = {"format": "fastmlp-model", "version": 1, "layers": [4, 3], "activations": [],
              "output": "softmax", "loss": "cross_entropy", "bias": True, "init": "he", "dtype": "float32"}
    header.update(header_changes or {})
    arrays = arrays or {"W0": np.zeros((4, 3), np.float32), "b0": np.zeros(3, np.float32)}
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return buf.getvalue()


def test_a_tiny_file_claiming_a_huge_model_is_refused_cheaply():
    """A 1 KB model file whose header claims an 8000 x 8000 layer (but holds a 4 x 3 array) is
    refused quickly and without allocating and initialising the claimed 64 M parameters."""
    import tracemalloc
    path = write_case(_model_file({"layers": [8000, 8000]}), "model.npz")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(FastMLPError):
            Model.load(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6 and seconds < 0.5, (f"loading a {path.stat().st_size}-byte file took {seconds:.2f} s "
                                          f"and allocated {peak / 1e6:.0f} MB before refusing it")


@pytest.mark.parametrize("compress_type", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_stored_member_marked_as_compressed_is_refused(compress_type):
    """A flipped compression-method field: zipfile then feeds stored bytes to a decompressor."""
    data = bytearray(model_files()[0])
    # Compression method: offset 8 of every local header (PK\3\4), offset 10 of every central one.
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := data.find(sig, start)) >= 0:
            struct.pack_into("<H", data, start + offset, compress_type)
            start += 4
    check_model(write_case(bytes(data), "model.npz"))


def _with_member(data: bytes, name: str, edit) -> bytes:
    return zip_of([(n, edit(c) if n == name else c) for n, c in members_of(data).items()])


@pytest.mark.parametrize("claim", [b"(4, 30000000000)", b"(400000000000000000000, 3)", b"(-4, 3)"])
def test_an_npy_header_claiming_a_huge_array_is_refused(claim):
    """W0's .npy header claims far more data than the member holds (its CRC is valid)."""
    data = _with_member(model_files()[0], "W0.npy", lambda c: c.replace(b"(4, 3)", claim))
    check_model(write_case(data, "model.npz"))


@pytest.mark.parametrize("claim", [b"(30000000000,)", b"(400000000000000000000,)", b"(-1,)"])
def test_a_checkpoint_npy_header_claiming_a_huge_array_is_refused(claim):
    data = checkpoint_files()[0]
    size = np.load(io.BytesIO(members_of(data)["state.momentum.npy"])).size
    data = _with_member(data, "state.momentum.npy", lambda c: c.replace(f"({size},)".encode(), claim))
    check_checkpoint(write_case(data, "ckpt.npz"))


@pytest.mark.parametrize("member", ["header.npy", "W0.npy"])
def test_a_member_without_the_npy_magic_is_refused(member):
    """np.load returns such a member as raw bytes instead of an array."""
    data = _with_member(model_files()[0], member, lambda c: b"\x92" + c[1:])
    check_model(write_case(data, "model.npz"))


def test_an_npy_header_that_does_not_tokenize_is_refused():
    """numpy's .npy header parser raises tokenize.TokenError for an unterminated literal."""
    data = _with_member(model_files()[0], "b0.npy", lambda c: c.replace(b"'shape': (3,)", b"'shape': (3,("))
    check_model(write_case(data, "model.npz"))
