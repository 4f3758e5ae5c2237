"""Tests for fastmlp.datasets: IDX parsing, checksums, search order, downloads, real data.

Facts checked against come from outside this code: the checksums published in the shared data
README, the canonical first MNIST test label (7), the balanced class counts of Fashion-MNIST
(6,000 per class in training, 1,000 in test), and IDX bytes written out by hand.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastmlp import datasets
from fastmlp.datasets import (
    ChecksumMismatch,
    DataFile,
    DatasetNotFound,
    candidate_dirs,
    find_file,
    load_fashion_mnist,
    load_idx_pair,
    load_mnist,
    read_idx,
    verify_file,
    write_idx,
)
from fastmlp.errors import FastMLPError

# The shared data folder sits next to the repository: <repo>/../shared/data/.
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# SHA-256 of the decompressed bytes, from the shared data README.
README_SHA256 = {
    "mnist": {
        "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# gz MD5s of the canonical (upstream) distributions, from the same README.
README_GZ_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

FILENAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def idx_bytes(type_code: int, shape: tuple[int, ...], payload: bytes, magic01: bytes = b"\0\0") -> bytes:
    """IDX file bytes assembled by hand, independently of fastmlp's writer."""
    header = magic01 + bytes([type_code, len(shape)])
    for size in shape:
        header += size.to_bytes(4, "big")
    return header + payload


def ubyte_idx(array: np.ndarray) -> bytes:
    """Hand-made IDX bytes for an unsigned-byte array."""
    return idx_bytes(0x08, array.shape, np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def sha256_decompressed(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


class FakeResponse(io.BytesIO):
    """What urlopen returns, served from memory."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def refuse_network(url, timeout=None):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may touch the network: every URL open fails unless a test serves it."""
    monkeypatch.setattr(datasets, "_urlopen", refuse_network)


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point every search folder at empty folders under tmp_path; returns them in search order."""
    dirs = [tmp_path / "first", tmp_path / "second"]
    monkeypatch.setattr(datasets, "candidate_dirs", lambda name, data_dir=None: list(dirs))
    return dirs


def assert_raises_with(path_or_call, *words: str, exc: type[Exception] = FastMLPError) -> str:
    """Call, expect ``exc``, and check that every word appears in the message; return it."""
    with pytest.raises(exc) as info:
        path_or_call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in message: {message}"
    return message


# ------------------------------------------------------------------------------------------------
# the real MNIST files in the shared folder
# ------------------------------------------------------------------------------------------------


def test_shared_mnist_folder_exists():
    assert SHARED_MNIST.is_dir(), f"the shared MNIST folder is missing: {SHARED_MNIST}"


def test_real_mnist_test_set():
    images_path = SHARED_MNIST / "t10k-images-idx3-ubyte.gz"
    labels_path = SHARED_MNIST / "t10k-labels-idx1-ubyte.gz"
    mnist = datasets.DATASETS["mnist"]
    for path, datafile in ((images_path, mnist.test_images), (labels_path, mnist.test_labels)):
        assert sha256_decompressed(path) == README_SHA256["mnist"][path.name]
        verify_file(path, datafile)

    images = read_idx(images_path)
    labels = read_idx(labels_path)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[0] == 7  # the canonical first MNIST test digit
    counts = np.bincount(labels, minlength=10)
    assert counts.size == 10 and counts.sum() == 10000
    assert np.all((counts >= 800) & (counts <= 1200)), counts
    assert images.min() == 0 and images.max() == 255

    x, y = load_idx_pair(images_path, labels_path)
    assert x.shape == (10000, 784) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int64 and np.array_equal(y, labels)
    assert np.array_equal(x[123], images[123].ravel() / np.float32(255))


def test_real_mnist_training_labels():
    path = SHARED_MNIST / "train-labels-idx1-ubyte.gz"
    assert sha256_decompressed(path) == README_SHA256["mnist"][path.name]
    verify_file(path, datasets.DATASETS["mnist"].train_labels)
    labels = read_idx(path)
    assert labels.shape == (60000,)
    assert np.all(np.bincount(labels, minlength=10) > 5000)


def test_mnist_without_training_images_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(datasets, "candidate_dirs", lambda name, data_dir=None: [SHARED_MNIST])
    message = assert_raises_with(
        lambda: load_mnist(download=False), "train-images-idx3-ubyte.gz", str(SHARED_MNIST), exc=DatasetNotFound
    )
    # the files that are there are not reported missing
    assert "t10k-images-idx3-ubyte.gz" not in message


# ------------------------------------------------------------------------------------------------
# the real Fashion-MNIST files installed by Debian's dataset-fashion-mnist
# ------------------------------------------------------------------------------------------------


def test_fashion_mnist_installed_files_match_readme():
    for filename, sha in README_SHA256["fashion-mnist"].items():
        path = FASHION_DIR / filename
        assert path.is_file(), f"{path} missing: apt-get install dataset-fashion-mnist"
        assert sha256_decompressed(path) == sha
        # Debian recompressed the files: accepted by their content, not by the upstream gz MD5
        assert hashlib.md5(path.read_bytes()).hexdigest() != README_GZ_MD5["fashion-mnist"][filename]


def test_load_fashion_mnist_from_system_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.setattr(datasets, "PROJECT_DATA_ROOT", tmp_path / "no-project-data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_file("fashion-mnist", FILENAMES["train_images"]) == FASHION_DIR / FILENAMES["train_images"]

    x_train, y_train, x_test, y_test = load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    for x in (x_train, x_test):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (y_train, y_test):
        assert y.dtype == np.int64
    # Fashion-MNIST is balanced: 6,000 of each class in training, 1,000 in test.
    assert np.array_equal(np.bincount(y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))


def test_tampered_copy_is_rejected_not_used(tmp_path, monkeypatch):
    """A good-looking IDX file whose content differs by one label fails the checksum."""
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    labels = read_idx(FASHION_DIR / FILENAMES["test_labels"])
    labels[17] = (labels[17] + 1) % 10
    tampered = tmp_path / FILENAMES["test_labels"]
    tampered.write_bytes(gzip.compress(ubyte_idx(labels)))
    # data_dir comes first, so the tampered copy is found before the system one
    assert find_file("fashion-mnist", FILENAMES["test_labels"], data_dir=tmp_path) == tampered
    message = assert_raises_with(
        lambda: load_fashion_mnist(data_dir=tmp_path, download=False),
        str(tampered),
        "checksum mismatch",
        README_SHA256["fashion-mnist"][FILENAMES["test_labels"]],
        "delete it",
        exc=ChecksumMismatch,
    )
    assert hashlib.sha256(ubyte_idx(labels)).hexdigest() in message


# ------------------------------------------------------------------------------------------------
# hostile files
# ------------------------------------------------------------------------------------------------

GOOD_PAYLOAD = bytes(range(6))
HOSTILE_FILES = {
    "truncated payload": (idx_bytes(0x08, (2, 3), GOOD_PAYLOAD[:5]),
                          ["truncated", "expected 6 bytes of data, found 5"]),
    "trailing bytes": (idx_bytes(0x08, (2, 3), GOOD_PAYLOAD + b"\0\0"), ["trailing bytes", "2 bytes"]),
    "wrong magic": (idx_bytes(0x08, (2, 3), GOOD_PAYLOAD, magic01=b"\x01\x00"), ["magic", "first two bytes"]),
    "wrong type code": (idx_bytes(0x0A, (2, 3), GOOD_PAYLOAD), ["type code 0x0A"]),
    "zero dimensions": (idx_bytes(0x08, (), GOOD_PAYLOAD), ["number of dimensions 0"]),
    "too many dimensions": (idx_bytes(0x08, (1,) * 9, GOOD_PAYLOAD), ["number of dimensions 9"]),
    "huge dims": (idx_bytes(0x08, (10**6, 10**6), GOOD_PAYLOAD), ["too large", "1000000000000 bytes"]),
    "huge doubles": (idx_bytes(0x0E, (60000, 60000), GOOD_PAYLOAD), ["too large"]),
    "absurd dim": (idx_bytes(0x08, (0, 2**32 - 1), b""), ["absurd", "4294967295"]),
    "truncated dims": (idx_bytes(0x08, (2, 3), b"")[:9], ["truncated header", "found 5"]),
    "short magic": (b"\0\0\x08", ["truncated header", "found 3"]),
    "empty file": (b"", ["empty"]),
    "multi-byte truncated": (idx_bytes(0x0C, (2,), b"\0\0\0\1\0\0\0"),
                             ["truncated", "expected 8 bytes of data, found 7"]),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_idx_file(tmp_path, case, compress):
    content, words = HOSTILE_FILES[case]
    path = tmp_path / "bad.idx"  # no .gz suffix: compression is detected from the bytes
    path.write_bytes(gzip.compress(content) if compress else content)
    started = time.perf_counter()
    assert_raises_with(lambda: read_idx(path), str(path), *words)
    assert time.perf_counter() - started < 1.0  # nothing huge was allocated or read


def test_valid_file_parses_with_either_compression(tmp_path):
    """The control for the hostile cases: the same header with the right payload is accepted."""
    content = idx_bytes(0x08, (2, 3), GOOD_PAYLOAD)
    for name, data in (("raw.gz", content), ("packed", gzip.compress(content))):
        (tmp_path / name).write_bytes(data)
        assert np.array_equal(read_idx(tmp_path / name), np.arange(6, dtype=np.uint8).reshape(2, 3))


def _valid_gz() -> bytes:
    rng = np.random.default_rng(0)
    return gzip.compress(ubyte_idx(rng.integers(0, 256, size=(50, 28, 28))))


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: data[:500] + bytes([data[500] ^ 0xFF]) + data[501:],  # a flipped byte in the deflate data
        lambda data: data[:-8] + bytes(8),  # CRC and length trailer zeroed
        lambda data: data[:3] + b"\xff" + data[4:],  # invalid header flags
    ],
    ids=["cut", "flipped", "trailer", "flags"],
)
def test_corrupt_gzip(tmp_path, corrupt):
    path = tmp_path / "corrupt.gz"
    path.write_bytes(corrupt(_valid_gz()))
    assert_raises_with(lambda: read_idx(path), str(path), "corrupt gzip")


def test_unreadable_paths(tmp_path):
    assert_raises_with(lambda: read_idx(tmp_path / "absent.gz"), "absent.gz", "cannot read")
    assert_raises_with(lambda: read_idx(tmp_path), str(tmp_path), "cannot read")


def _write_pair(folder: Path, images: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    images_path, labels_path = folder / "images.gz", folder / "labels.gz"
    images_path.write_bytes(gzip.compress(ubyte_idx(images)))
    labels_path.write_bytes(gzip.compress(ubyte_idx(labels)))
    return images_path, labels_path


def test_label_count_must_match_image_count(tmp_path):
    paths = _write_pair(tmp_path, np.zeros((5, 28, 28)), np.zeros(4))
    assert_raises_with(lambda: load_idx_pair(*paths), "5 images", "4 labels", str(paths[0]), str(paths[1]))


def test_label_out_of_range(tmp_path):
    paths = _write_pair(tmp_path, np.zeros((3, 28, 28)), np.array([1, 10, 3]))
    assert_raises_with(lambda: load_idx_pair(*paths), str(paths[1]), "label value 10", "index 1", "0..9")


def test_wrong_image_shape_and_label_type(tmp_path):
    paths = _write_pair(tmp_path, np.zeros((3, 28, 27)), np.zeros(3))
    assert_raises_with(lambda: load_idx_pair(*paths), str(paths[0]), "28x28", "(3, 28, 27)")
    images, labels = tmp_path / "images.gz", tmp_path / "labels32.gz"
    images.write_bytes(ubyte_idx(np.zeros((3, 28, 28))))
    labels.write_bytes(idx_bytes(0x0C, (3,), bytes(12)))
    assert_raises_with(lambda: load_idx_pair(images, labels), str(labels), "unsigned bytes", "int32")
    # any image size is accepted when image_shape=None
    x, y = load_idx_pair(*_write_pair(tmp_path, np.full((2, 3, 4), 255), np.array([0, 9])), image_shape=None)
    assert x.shape == (2, 12) and np.all(x == 1.0) and list(y) == [0, 9]


# ------------------------------------------------------------------------------------------------
# IDX writing
# ------------------------------------------------------------------------------------------------


def test_write_idx_matches_hand_made_bytes(tmp_path):
    array = np.array([1, -2], dtype=np.int16)
    write_idx(tmp_path / "a.idx", array, gzip=False)
    assert (tmp_path / "a.idx").read_bytes() == b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\xff\xfe"
    write_idx(tmp_path / "a.idx.gz", array)
    assert gzip.decompress((tmp_path / "a.idx.gz").read_bytes()) == b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\xff\xfe"
    floats = read_idx_from_bytes(tmp_path, idx_bytes(0x0D, (1,), b"\x3f\xc0\x00\x00"))  # 1.5 big-endian
    assert floats.dtype == np.float32 and floats.tolist() == [1.5]


def read_idx_from_bytes(folder: Path, content: bytes) -> np.ndarray:
    path = folder / "from-bytes"
    path.write_bytes(content)
    return read_idx(path)


def test_write_idx_rejects_what_idx_cannot_hold(tmp_path):
    assert_raises_with(lambda: write_idx(tmp_path / "x", np.zeros(3, np.int64)), "int64", str(tmp_path / "x"))
    assert_raises_with(lambda: write_idx(tmp_path / "x", np.float32(1.0)), "dimensions")
    assert_raises_with(lambda: write_idx(tmp_path / "x", np.zeros((1,) * 5, np.uint8)), "dimensions")
    assert os.listdir(tmp_path) == []


IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dtype: hnp.arrays(
            st.sampled_from([np.dtype(dtype), np.dtype(dtype).newbyteorder(">")]),
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
        )
    ),
    compress=st.booleans(),
)
def test_write_read_round_trip(array, compress):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "round.idx"
        write_idx(path, array, gzip=compress)
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
        back = read_idx(path)
        assert os.listdir(folder) == ["round.idx"]
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=") and back.dtype.isnative
    assert back.tobytes() == array.astype(back.dtype).tobytes()  # bit-exact, NaNs and -0.0 included


# ------------------------------------------------------------------------------------------------
# the data set table
# ------------------------------------------------------------------------------------------------


def test_table_carries_the_published_checksums():
    for name in ("mnist", "fashion-mnist"):
        files = {f.filename: f for f in datasets.DATASETS[name].files().values()}
        assert set(files) == set(FILENAMES.values())
        for filename, datafile in files.items():
            assert datafile.sha256 == README_SHA256[name].get(filename)
            assert README_GZ_MD5[name][filename] in datafile.gz_md5
        assert len(datasets.DATASETS[name].mirrors) >= 2
    assert datasets.get_dataset("Fashion_MNIST").name == "fashion-mnist"
    assert_raises_with(lambda: datasets.get_dataset("cifar"), "cifar", "mnist")


# ------------------------------------------------------------------------------------------------
# search order
# ------------------------------------------------------------------------------------------------


def test_search_order(tmp_path, monkeypatch):
    explicit, env_root, project, home, system = (tmp_path / n for n in ("explicit", "env", "project", "home", "sys"))
    project.mkdir()
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(env_root))
    monkeypatch.setattr(datasets, "PROJECT_DATA_ROOT", project)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_ROOT", system)
    expected = [
        explicit,
        env_root / "mnist",
        project / "mnist",
        home / ".cache" / "fastmlp" / "mnist",
        system / "mnist",
    ]
    assert candidate_dirs("mnist", data_dir=explicit) == expected
    assert candidate_dirs("mnist") == expected[1:]

    filename = FILENAMES["test_labels"]
    for folder in expected:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_bytes(b"x")
    for folder in expected:  # each folder wins while it has the file, then gives way to the next
        assert find_file("mnist", filename, data_dir=explicit) == folder / filename
        (folder / filename).unlink()
    assert find_file("mnist", filename, data_dir=explicit) is None

    # without a project data/ folder (an installed package) that entry is left out
    shutil.rmtree(project)
    monkeypatch.delenv(datasets.ENV_DATA_DIR)
    assert candidate_dirs("mnist") == [home / ".cache" / "fastmlp" / "mnist", system / "mnist"]


# ------------------------------------------------------------------------------------------------
# missing files and downloads
# ------------------------------------------------------------------------------------------------


def test_missing_files_without_network(isolated_dirs):
    message = assert_raises_with(
        lambda: load_mnist(download=True),
        "train-images-idx3-ubyte.gz",
        *(str(folder) for folder in isolated_dirs),
        *(mirror + "train-images-idx3-ubyte.gz" for mirror in datasets.DATASETS["mnist"].mirrors),
        "network disabled in tests",
        "FASTMLP_DATA_DIR",
        exc=DatasetNotFound,
    )
    assert isinstance(DatasetNotFound(message), FastMLPError)
    assert not any(folder.exists() and any(folder.iterdir()) for folder in isolated_dirs)


def test_missing_fashion_mnist_suggests_the_debian_package(isolated_dirs):
    assert_raises_with(
        lambda: load_fashion_mnist(download=False),
        "t10k-labels-idx1-ubyte.gz",
        str(isolated_dirs[0]),
        "apt-get install dataset-fashion-mnist",
        "download=False",
        exc=DatasetNotFound,
    )


@pytest.fixture
def tiny_mnist(monkeypatch):
    """Replace MNIST's table entry with a tiny valid data set; returns (arrays, gz bytes by file name)."""
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        "test_labels": np.array([5, 6, 7, 8], dtype=np.uint8),
    }
    raw = {role: ubyte_idx(array) for role, array in arrays.items()}
    served = {FILENAMES[role]: gzip.compress(content) for role, content in raw.items()}
    table = {
        role: DataFile(FILENAMES[role], sha256=hashlib.sha256(content).hexdigest())
        for role, content in raw.items()
    }
    # one file is known only by its gz MD5, like the real MNIST training images
    table["train_images"] = DataFile(
        FILENAMES["train_images"], gz_md5=(hashlib.md5(served[FILENAMES["train_images"]]).hexdigest(),)
    )
    entry = dataclasses.replace(datasets.DATASETS["mnist"], **table)
    monkeypatch.setitem(datasets.DATASETS, "mnist", entry)
    return arrays, served


def serve(log: list[str], responders: dict[str, object]):
    """A fake urlopen: for each mirror prefix, bytes-transform or an exception to raise."""

    def urlopen(url, timeout=None):
        assert timeout and timeout > 0
        log.append(url)
        mirror, filename = url.rsplit("/", 1)
        behaviour = responders[mirror + "/"]
        if isinstance(behaviour, Exception):
            raise behaviour
        return FakeResponse(behaviour(filename))

    return urlopen


def test_download_falls_back_to_second_mirror(isolated_dirs, tiny_mnist, monkeypatch, capsys):
    arrays, served = tiny_mnist
    first, second = datasets.DATASETS["mnist"].mirrors
    log: list[str] = []
    corrupted = lambda filename: served[filename][:-20] + bytes(20)  # noqa: E731
    monkeypatch.setattr(datasets, "_urlopen", serve(log, {first: corrupted, second: lambda f: served[f]}))

    x_train, y_train, x_test, y_test = load_mnist()

    assert log == [mirror + f for f in FILENAMES.values() for mirror in (first, second)]
    target = isolated_dirs[0]
    assert sorted(os.listdir(target)) == sorted(FILENAMES.values())  # no temporary files left behind
    for filename, content in served.items():
        assert (target / filename).read_bytes() == content
    assert np.array_equal(y_train, arrays["train_labels"]) and y_train.dtype == np.int64
    assert np.array_equal(y_test, arrays["test_labels"])
    assert np.array_equal(x_train, arrays["train_images"].reshape(6, 784) / np.float32(255))
    assert np.array_equal(x_test, arrays["test_images"].reshape(4, 784) / np.float32(255))
    assert "downloading" in capsys.readouterr().err

    # a second load uses the files now on disk, without the network
    monkeypatch.setattr(datasets, "_urlopen", refuse_network)
    assert np.array_equal(load_mnist()[1], arrays["train_labels"])


def test_download_after_network_error_and_only_missing_files(isolated_dirs, tiny_mnist, monkeypatch):
    arrays, served = tiny_mnist
    first, second = datasets.DATASETS["mnist"].mirrors
    isolated_dirs[1].mkdir()
    for role in ("train_images", "test_images", "test_labels"):  # already present, in the second folder
        (isolated_dirs[1] / FILENAMES[role]).write_bytes(served[FILENAMES[role]])
    log: list[str] = []
    error = urllib.error.HTTPError(first + "x", 503, "Service Unavailable", {}, None)
    monkeypatch.setattr(datasets, "_urlopen", serve(log, {first: error, second: lambda f: served[f]}))

    _, y_train, _, _ = load_mnist()

    assert log == [first + FILENAMES["train_labels"], second + FILENAMES["train_labels"]]
    assert os.listdir(isolated_dirs[0]) == [FILENAMES["train_labels"]]
    assert np.array_equal(y_train, arrays["train_labels"])


def test_all_mirrors_bad(isolated_dirs, tiny_mnist, monkeypatch):
    _, served = tiny_mnist
    first, second = datasets.DATASETS["mnist"].mirrors
    log: list[str] = []
    not_gzip = lambda filename: b"<html>moved</html>"  # noqa: E731
    monkeypatch.setattr(datasets, "_urlopen", serve(log, {first: not_gzip, second: TimeoutError("timed out")}))
    assert_raises_with(
        lambda: load_mnist(),
        "train-images-idx3-ubyte.gz",
        first + "train-images-idx3-ubyte.gz",
        "checksum",
        second + "train-images-idx3-ubyte.gz",
        "timed out",
        exc=DatasetNotFound,
    )
    assert not isolated_dirs[0].exists() or os.listdir(isolated_dirs[0]) == []


def test_found_file_with_wrong_checksum_is_not_replaced_silently(isolated_dirs, tiny_mnist, monkeypatch):
    _, served = tiny_mnist
    isolated_dirs[0].mkdir()
    for filename, content in served.items():
        (isolated_dirs[0] / filename).write_bytes(content)
    bad = isolated_dirs[0] / FILENAMES["test_images"]
    bad.write_bytes(gzip.compress(ubyte_idx(np.zeros((4, 28, 28)))))
    assert_raises_with(lambda: load_mnist(), str(bad), "checksum mismatch", exc=ChecksumMismatch)
    assert bad.read_bytes() != served[FILENAMES["test_images"]]


def test_never_downloads_into_the_system_folder(tmp_path, tiny_mnist, monkeypatch):
    _, served = tiny_mnist
    monkeypatch.setattr(datasets, "SYSTEM_DATA_ROOT", tmp_path / "system")
    monkeypatch.setattr(datasets, "candidate_dirs", lambda name, data_dir=None: [tmp_path / "system" / name])
    log: list[str] = []
    good_mirrors = dict.fromkeys(datasets.DATASETS["mnist"].mirrors, lambda f: served[f])
    monkeypatch.setattr(datasets, "_urlopen", serve(log, good_mirrors))
    assert_raises_with(lambda: load_mnist(), "no writable folder", exc=DatasetNotFound)
    assert log == [] and not (tmp_path / "system").exists()
