"""IDX files and the MNIST / Fashion-MNIST data sets: find, verify, download, load.

The IDX format (used by MNIST and Fashion-MNIST) is a tiny header followed by raw big-endian data::

    bytes 0-1   zero
    byte  2     element type: 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double
    byte  3     number of dimensions, d
    4*d bytes   the size of each dimension, unsigned 32-bit big-endian
    ...         the elements, row-major, big-endian, nothing after them

Files may be gzip-compressed; compression is detected from the content (the gzip magic bytes
``1f 8b``), never from the file name.

Data sets are described by :data:`DATASETS`. Each file is looked for in the folders returned by
:func:`candidate_dirs` (see there for the order); a file that is found is checked against its known
checksums before it is used; a file that is missing is downloaded from the data set's mirrors when
``download=True``. Every problem with a file is raised as :class:`~fastmlp.errors.FastMLPError` (or a
subclass) whose message names the file and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip as gziplib
import hashlib
import http.client
import io
import os
import sys
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import click
import numpy as np

from fastmlp.errors import FastMLPError
from fastmlp.fileio import atomic_open

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "ChecksumMismatch",
    "DataFile",
    "Dataset",
    "DatasetNotFound",
    "candidate_dirs",
    "find_file",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx_pair",
    "load_mnist",
    "read_idx",
    "verify_file",
    "write_idx",
]


class DatasetNotFound(FastMLPError):
    """A data set file is neither on disk nor downloadable; the message says how to provide it."""


class ChecksumMismatch(FastMLPError):
    """A data set file exists but its content is not the known-good content."""


# ---------------------------------------------------------------------------------------------
# IDX reading and writing
# ---------------------------------------------------------------------------------------------

#: IDX type code -> element type as stored (big-endian).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Most dimensions an IDX file may have here (MNIST uses 1 and 3; 4 allows colour channels).
MAX_IDX_NDIM = 4

#: Largest single dimension (IDX sizes are 32-bit; many readers treat them as signed).
MAX_IDX_DIM = 2**31 - 1

#: Largest payload read_idx will accept, checked before anything is allocated (4 GiB).
MAX_IDX_BYTES = 2**32

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-byte-order array.

    Raises :class:`FastMLPError`, naming the file, if the file cannot be read, is not a
    well-formed IDX file, is a corrupt gzip stream, or holds fewer or more bytes than its header
    announces.
    """
    path = Path(path)
    with _open_idx_stream(path) as stream:
        try:
            return _parse_idx_stream(stream, path)
        except (gziplib.BadGzipFile, EOFError, zlib.error) as exc:
            raise FastMLPError(f"{path}: corrupt gzip stream ({exc})") from exc
        except OSError as exc:
            raise FastMLPError(f"{path}: cannot read the file ({exc})") from exc


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = True) -> None:
    """Write ``array`` as an IDX file at ``path`` (gzip-compressed unless ``gzip=False``), atomically.

    The array's dtype must be one IDX can hold: uint8, int8, int16, int32, float32 or float64;
    it must have 1 to :data:`MAX_IDX_NDIM` dimensions.
    """
    array = np.asarray(array)
    type_code = _idx_type_code(array.dtype, path)
    if not 1 <= array.ndim <= MAX_IDX_NDIM:
        raise FastMLPError(
            f"cannot write {path}: IDX arrays here have 1 to {MAX_IDX_NDIM} dimensions, got {array.ndim}"
        )
    if any(size > MAX_IDX_DIM for size in array.shape):
        raise FastMLPError(f"cannot write {path}: a dimension of shape {array.shape} exceeds {MAX_IDX_DIM}")
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_TYPES[type_code]).tobytes()
    with atomic_open(path, "wb") as f:
        if gzip:
            with gziplib.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)


def _idx_type_code(dtype: np.dtype, path: str | os.PathLike) -> int:
    """The IDX type code for ``dtype`` (either byte order), or FastMLPError."""
    for code, idx_dtype in IDX_TYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    supported = ", ".join(str(t.newbyteorder("=")) for t in IDX_TYPES.values())
    raise FastMLPError(f"cannot write {path}: IDX cannot hold dtype {dtype}; supported: {supported}")


@contextlib.contextmanager
def _open_idx_stream(path: Path) -> Iterator[BinaryIO]:
    """The file's decompressed byte stream (gzip detected by its magic bytes, not by its name).

    Problems opening the file (missing, a folder, no permission) become FastMLPError.
    """
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise FastMLPError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    with raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if is_gzip:
            with gziplib.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        else:
            yield raw


def _parse_idx_stream(stream: BinaryIO, path: Path) -> np.ndarray:
    """Parse an IDX byte stream: header, then exactly the announced number of bytes."""
    dtype, shape = _read_idx_header(stream, path)
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise FastMLPError(
            f"{path}: header claims shape {shape} of {dtype.newbyteorder('=')}, i.e. {expected} bytes of data; "
            f"that is too large (limit {MAX_IDX_BYTES} bytes) — the header is corrupt"
        )
    data = _read_up_to(stream, expected)
    if len(data) < expected:
        raise FastMLPError(f"{path}: truncated: expected {expected} bytes of data, found {len(data)}")
    extra = _count_remaining(stream)
    if extra:
        raise FastMLPError(
            f"{path}: trailing bytes: {extra} bytes after the {expected} bytes of data that the header announces"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _read_idx_header(stream: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Read and check the magic number and the dimension sizes."""
    magic = _read_up_to(stream, 4)
    if not magic:
        raise FastMLPError(f"{path}: empty file, not an IDX file")
    if len(magic) < 4:
        raise FastMLPError(f"{path}: truncated header: expected 4 bytes of magic number, found {len(magic)}")
    if magic[0] != 0 or magic[1] != 0:
        raise FastMLPError(
            f"{path}: not an IDX file: bad magic number {magic.hex()} (its first two bytes must be zero)"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise FastMLPError(f"{path}: unknown IDX type code 0x{type_code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_IDX_NDIM:
        raise FastMLPError(f"{path}: bad number of dimensions {ndim} in the IDX header (expected 1 to {MAX_IDX_NDIM})")
    sizes = _read_up_to(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise FastMLPError(
            f"{path}: truncated header: expected {4 * ndim} bytes of dimension sizes, found {len(sizes)}"
        )
    shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    for axis, size in enumerate(shape):
        if size > MAX_IDX_DIM:
            raise FastMLPError(f"{path}: dimension {axis} has absurd size {size} (limit {MAX_IDX_DIM})")
    return IDX_TYPES[type_code], shape


def _read_up_to(stream: BinaryIO, n: int) -> bytearray:
    """Read ``n`` bytes, or fewer if the stream ends first; memory grows only with data read."""
    buffer = bytearray()
    while len(buffer) < n:
        chunk = stream.read(min(_CHUNK, n - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _count_remaining(stream: BinaryIO) -> int:
    """Number of bytes left in the stream (read and discarded in chunks)."""
    count = 0
    while chunk := stream.read(_CHUNK):
        count += len(chunk)
    return count


# ---------------------------------------------------------------------------------------------
# Data set descriptions
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file of a data set and the checksums a good copy may match.

    A copy is accepted if the SHA-256 of its *decompressed* bytes equals ``sha256`` or the MD5 of
    the file as stored equals one of ``gz_md5``. The decompressed hash is the robust one
    (Debian, for example, recompresses the files, which changes the ``.gz`` bytes but not their
    content); a ``gz_md5`` alone is used where only the canonical ``.gz`` checksum is known.
    """

    filename: str
    sha256: str | None = None
    gz_md5: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sha256 is None and not self.gz_md5:
            raise ValueError(f"{self.filename}: a DataFile needs a sha256 or at least one gz_md5")


ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set of 28x28 grey images with labels 0..9, stored as four IDX files."""

    name: str
    train_images: DataFile
    train_labels: DataFile
    test_images: DataFile
    test_labels: DataFile
    mirrors: tuple[str, ...]
    install_hint: str = ""

    def files(self) -> dict[str, DataFile]:
        """The four files, keyed by role (see :data:`ROLES`), in loading order."""
        return {role: getattr(self, role) for role in ROLES}


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        train_images=DataFile(
            "train-images-idx3-ubyte.gz",
            gz_md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
        ),
        train_labels=DataFile(
            "train-labels-idx1-ubyte.gz",
            sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            gz_md5=("d53e105ee54ea40749a09fcbcd1e9432",),
        ),
        test_images=DataFile(
            "t10k-images-idx3-ubyte.gz",
            sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            gz_md5=("9fb629c4189551a2d022fa330f9573f3",),
        ),
        test_labels=DataFile(
            "t10k-labels-idx1-ubyte.gz",
            sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            gz_md5=("ec29112dd5afa0611ce80d1b7f02629c",),
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        train_images=DataFile(
            "train-images-idx3-ubyte.gz",
            sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            gz_md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
        ),
        train_labels=DataFile(
            "train-labels-idx1-ubyte.gz",
            sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            gz_md5=("25c81989df183df01b3e8a0aad5dffbe",),
        ),
        test_images=DataFile(
            "t10k-images-idx3-ubyte.gz",
            sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            gz_md5=("bef4ecab320f06d8554ea6380940ec79",),
        ),
        test_labels=DataFile(
            "t10k-labels-idx1-ubyte.gz",
            sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            gz_md5=("bb300cfdad3c16e7a12a480ee83cd310",),
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        install_hint="on Debian/Ubuntu: apt-get install dataset-fashion-mnist",
    ),
}


def get_dataset(name: str) -> Dataset:
    """The description of data set ``name`` ("mnist", "fashion-mnist"; "fashion_mnist" also works)."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise FastMLPError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


# ---------------------------------------------------------------------------------------------
# Where files are looked for
# ---------------------------------------------------------------------------------------------

#: Environment variable naming a folder that holds ``<name>/`` sub-folders of data set files.
ENV_DATA_DIR = "FASTMLP_DATA_DIR"

#: The repository's ``data/`` folder (used only when it exists, i.e. in a source checkout).
PROJECT_DATA_ROOT = Path(__file__).resolve().parent.parent / "data"

#: Where Debian's ``dataset-*`` packages install data sets (read-only: never downloaded into).
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for data set ``name``'s files, in order; the first hit wins.

    1. ``data_dir`` itself, when given (the files lie directly in it);
    2. ``$FASTMLP_DATA_DIR/<name>/``, when the variable is set;
    3. the project's ``data/<name>/`` (only in a source checkout, where ``data/`` exists);
    4. ``~/.cache/fastmlp/<name>/``;
    5. ``/usr/share/datasets/<name>/`` (Debian's ``dataset-fashion-mnist`` installs here).

    Downloads go into the first writable folder of this list other than the last one.
    """
    dirs: list[Path] = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env_dir = os.environ.get(ENV_DATA_DIR)
    if env_dir:
        dirs.append(Path(env_dir).expanduser() / name)
    if PROJECT_DATA_ROOT.is_dir():
        dirs.append(PROJECT_DATA_ROOT / name)
    try:
        dirs.append(Path.home() / ".cache" / "fastmlp" / name)
    except RuntimeError:  # no home directory can be determined
        pass
    dirs.append(SYSTEM_DATA_ROOT / name)
    return dirs


def find_file(name: str, filename: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first existing ``filename`` among :func:`candidate_dirs`, or None (not verified)."""
    for folder in candidate_dirs(name, data_dir):
        path = folder / filename
        if path.is_file():
            return path
    return None


def _download_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    """The first candidate folder that exists or can be created and is writable (never the system one)."""
    for folder in candidate_dirs(name, data_dir):
        if _is_under(folder, SYSTEM_DATA_ROOT):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def _is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or inside it."""
    return path == root or root in path.parents


# ---------------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------------


def verify_file(path: str | os.PathLike, datafile: DataFile) -> None:
    """Check the file at ``path`` against ``datafile``'s checksums; raise ChecksumMismatch if neither matches."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FastMLPError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    problem = _checksum_problem(content, datafile)
    if problem:
        only_gz = (
            " Only the canonical .gz file is known for this one: use an original download, not a recompressed copy."
            if datafile.sha256 is None
            else ""
        )
        raise ChecksumMismatch(
            f"{path}: checksum mismatch: {problem}. The file is corrupt, incomplete or not the expected "
            f"{datafile.filename}; delete it (it is downloaded again when download=True) "
            f"or replace it with a good copy.{only_gz}"
        )


def _checksum_problem(content: bytes, datafile: DataFile) -> str | None:
    """None if ``content`` (the file's bytes as stored) matches ``datafile``; otherwise what differs."""
    gz_md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if gz_md5 in datafile.gz_md5:
        return None
    found = [f"MD5 of the file is {gz_md5}"]
    expected = [f"MD5 {' or '.join(datafile.gz_md5)}"] if datafile.gz_md5 else []
    if datafile.sha256 is not None:
        sha256 = _decompressed_sha256(content)
        if sha256 == datafile.sha256:
            return None
        found.insert(0, f"SHA-256 of the decompressed bytes is {sha256}")
        expected.insert(0, f"SHA-256 {datafile.sha256}")
    return f"{', '.join(found)}; expected {' or '.join(expected)}"


def _decompressed_sha256(content: bytes) -> str:
    """SHA-256 of the decompressed bytes (of the bytes themselves if not gzip); a note if corrupt."""
    digest = hashlib.sha256()
    if not content.startswith(_GZIP_MAGIC):
        digest.update(content)
        return digest.hexdigest()
    try:
        with gziplib.GzipFile(fileobj=io.BytesIO(content), mode="rb") as gz:
            while chunk := gz.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        return f"unknown (corrupt gzip stream: {exc})"
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------

#: Seconds to wait for a mirror to connect or send the next block.
DOWNLOAD_TIMEOUT_S = 30.0

#: The function that opens URLs; tests replace it to simulate the network.
_urlopen: Callable[..., BinaryIO] = urllib.request.urlopen


def _fetch(url: str) -> bytes:
    """Download ``url`` into memory, with a progress bar on stderr. Network errors propagate."""
    with _urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = _content_length(response)
        label = f"downloading {url}"
        if total is None:
            click.echo(f"{label} ...", err=True)
            return _read_all(response, lambda n: None)
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            return _read_all(response, bar.update)


def _content_length(response: object) -> int | None:
    """The announced size of a response, if it announces one."""
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _read_all(response: BinaryIO, progress: Callable[[int], None]) -> bytes:
    """Read a response to its end in chunks, reporting each chunk's size to ``progress``."""
    chunks = []
    while chunk := response.read(1 << 16):
        chunks.append(chunk)
        progress(len(chunk))
    return b"".join(chunks)


def _download(dataset: Dataset, datafile: DataFile, folder: Path, attempts: list[str]) -> Path | None:
    """Try each mirror in turn; save the first verified copy atomically into ``folder``.

    Every failed attempt is appended to ``attempts`` as "URL: reason". Returns None if all fail.
    """
    for mirror in dataset.mirrors:
        url = mirror + datafile.filename
        try:
            content = _fetch(url)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            attempts.append(f"{url}: {exc}")
            continue
        problem = _checksum_problem(content, datafile)
        if problem:
            attempts.append(f"{url}: downloaded file failed the checksum ({problem})")
            continue
        target = folder / datafile.filename
        with atomic_open(target, "wb") as f:
            f.write(content)
        return target
    return None


def _not_found_message(
    dataset: Dataset, missing: list[DataFile], data_dir: str | os.PathLike | None, attempts: list[str]
) -> str:
    """Explain which files are missing, where they were looked for, what was tried, how to fix it."""
    names = ", ".join(datafile.filename for datafile in missing)
    lines = [f"data set {dataset.name!r}: cannot find {names}.", "Looked in:"]
    lines += [f"  {folder}" for folder in candidate_dirs(dataset.name, data_dir)]
    if attempts:
        lines.append("Tried to download:")
        lines += [f"  {attempt}" for attempt in attempts]
    else:
        lines.append("Downloading was not attempted (download=False).")
    lines.append(
        "To provide the files offline, put them in one of those folders, or in $FASTMLP_DATA_DIR/"
        f"{dataset.name}/ after setting {ENV_DATA_DIR}, or pass data_dir=<folder holding them>."
    )
    if dataset.install_hint:
        lines.append(f"Or install them: {dataset.install_hint}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load data set ``name`` as ``(X_train, y_train, X_test, y_test)``.

    X is float32 in [0, 1], shape (n, 784), C-contiguous; y is int64, shape (n,). Files are
    looked for as :func:`candidate_dirs` says, verified against their checksums, and downloaded
    if missing and ``download`` is true. Raises :class:`DatasetNotFound` if a file can be neither
    found nor downloaded, :class:`ChecksumMismatch` if a found file is not the known-good one.
    """
    dataset = get_dataset(name)
    paths = _obtain_files(dataset, data_dir, download)
    for role, datafile in dataset.files().items():
        verify_file(paths[role], datafile)
    x_train, y_train = load_idx_pair(paths["train_images"], paths["train_labels"])
    x_test, y_test = load_idx_pair(paths["test_images"], paths["test_labels"])
    return x_train, y_train, x_test, y_test


def load_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST handwritten digits: 60,000 training and 10,000 test images (see :func:`load_dataset`)."""
    return load_dataset("mnist", data_dir=data_dir, download=download)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST clothing images: 60,000 training and 10,000 test (see :func:`load_dataset`)."""
    return load_dataset("fashion-mnist", data_dir=data_dir, download=download)


def _obtain_files(dataset: Dataset, data_dir: str | os.PathLike | None, download: bool) -> dict[str, Path]:
    """Path of each of the data set's files, downloading missing ones if allowed."""
    found = {role: find_file(dataset.name, f.filename, data_dir) for role, f in dataset.files().items()}
    missing = [role for role, path in found.items() if path is None]
    if missing and not download:
        files = [dataset.files()[role] for role in missing]
        raise DatasetNotFound(_not_found_message(dataset, files, data_dir, []))
    for role in missing:
        datafile = dataset.files()[role]
        folder = _download_dir(dataset.name, data_dir)
        if folder is None:
            raise DatasetNotFound(
                _not_found_message(dataset, [datafile], data_dir, ["none: no writable folder to download into"])
            )
        attempts: list[str] = []
        found[role] = _download(dataset, datafile, folder, attempts)
        if found[role] is None:
            raise DatasetNotFound(_not_found_message(dataset, [datafile], data_dir, attempts))
    return {role: path for role, path in found.items() if path is not None}


def load_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    image_shape: tuple[int, int] | None = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an images IDX file and a labels IDX file as ``(X, y)``, for any such pair of files.

    Images must be 3-D unsigned bytes of ``image_shape`` (any 2-D shape if None); labels 1-D
    unsigned bytes in ``0 .. num_classes-1``; the counts must agree. Returns X float32 in [0, 1]
    of shape (n, height*width), C-contiguous, and y int64 of shape (n,).
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    _check_images(images, Path(images_path), image_shape)
    _check_labels(labels, Path(labels_path), num_classes)
    if len(images) != len(labels):
        raise FastMLPError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the counts must be equal"
        )
    return _images_to_float(images), labels.astype(np.int64)


def _check_images(images: np.ndarray, path: Path, image_shape: tuple[int, int] | None) -> None:
    """Images must be (n, height, width) unsigned bytes, of ``image_shape`` when given."""
    wanted = "x".join(map(str, image_shape)) if image_shape else "height x width"
    if images.ndim != 3 or images.dtype != np.uint8 or (image_shape and images.shape[1:] != tuple(image_shape)):
        raise FastMLPError(
            f"{path}: expected images as a 3-D array of unsigned bytes, n x {wanted}; "
            f"found shape {images.shape} of {images.dtype}"
        )


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    """Labels must be a 1-D array of unsigned bytes in 0 .. num_classes-1."""
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise FastMLPError(
            f"{path}: expected labels as a 1-D array of unsigned bytes; found shape {labels.shape} of {labels.dtype}"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise FastMLPError(
            f"{path}: label value {labels[bad[0]]} at index {bad[0]} is out of range 0..{num_classes - 1} "
            f"({bad.size} labels out of range)"
        )


def _images_to_float(images: np.ndarray) -> np.ndarray:
    """(n, h, w) unsigned bytes -> (n, h*w) float32 in [0, 1], C-contiguous."""
    x = images.reshape(images.shape[0], images.shape[1] * images.shape[2]).astype(np.float32)
    np.divide(x, np.float32(255), out=x)
    return x
