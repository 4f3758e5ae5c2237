"""The `fastmlp` command, run as a user runs it.

The XOR expectations are the printed output of the seed article's own NumPy program (inlined in
test_engines.py as an oracle), not fastmlp's output copied back.
"""

import gzip
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastmlp import Model, datasets
from fastmlp.cli import main

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

# What the article's program prints (its NumPy run, np.random.seed(42)).
ARTICLE_LINES = [
    "Epoch 0: Loss = 0.2832",
    "Epoch 2000: Loss = 0.0063",
    "Epoch 4000: Loss = 0.0021",
    "Epoch 6000: Loss = 0.0011",
    "Epoch 8000: Loss = 0.0008",
    "[[0.03]",
    " [0.98]",
    " [0.98]",
    " [0.02]]",
]


def run(*args):
    """The installed console script in a fresh process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "fastmlp.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_train_xor_prints_the_articles_output():
    result = run("train", "--task", "xor")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:len(ARTICLE_LINES)] == ARTICLE_LINES
    assert lines[len(ARTICLE_LINES)].startswith("Trained 10,000 epochs in ")
    assert "Traceback" not in result.stderr


def test_one_epoch_is_said_in_the_singular():
    result = CliRunner().invoke(main, ["train", "--task", "xor", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "Trained 1 epoch in " in result.output


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_train_xor_json_and_options(engine):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--task", "xor", "--engine", engine, "--hidden", "8",
                                  "--epochs", "3000", "--lr", "1.0", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["hidden"] == 8 and out["epochs"] == 3000 and out["engine"] == engine
    assert out["final_loss"] < out["loss"][0]
    assert out["compile_seconds"] >= 0 and out["train_seconds"] > 0


def test_a_cold_kernel_cache_is_announced_once(tmp_path):
    """With an empty numba cache the command says it is compiling before the seconds of silence;
    the next run loads the cache and says nothing of it. stdout stays the article's output."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    runs = [subprocess.run([sys.executable, "-m", "fastmlp.cli", "train", "--task", "xor"], capture_output=True,
                           text=True, timeout=600, env=env) for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[:len(ARTICLE_LINES)] == ARTICLE_LINES
    assert "compiling fastmlp's kernels" in runs[0].stderr
    assert "compiling" not in runs[1].stderr


def test_compare_runs_both_engines_and_they_agree():
    result = CliRunner().invoke(main, ["compare", "--task", "xor", "--epochs", "2000"])
    assert result.exit_code == 0, result.output
    assert "numpy:" in result.output and "numba:" in result.output
    assert "predictions agree" in result.output and "speed-up" in result.output


@pytest.mark.parametrize("args,message", [
    (["train", "--task", "xor", "--lr", "-1"], "--lr must be a positive number"),
    (["train", "--task", "xor", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--task", "xor", "--hidden", "4,x"], "--hidden takes layer sizes"),
    (["train", "--task", "xor", "--hidden", "4,4"], "single size"),
    (["train", "--task", "xor", "--threads", "0"], "--threads must be between"),
    (["train", "--task", "xor", "--batch-size", "2"], "do not apply to --task xor"),
    (["train", "--task", "xor", "--momentum", "0.9"], "--momentum: --task xor runs the article's"),
    (["train", "--task", "xor", "--activation", "tanh", "--dropout", "0.2"], "--activation, --dropout: --task xor"),
    (["train", "--task", "xor", "--resume", "run.ckpt"], "--resume: --task xor"),
    (["train", "--task", "fashion-mnist", "--momentum", "1.5", "--epochs", "1"], "momentum must be < 1.0"),
    (["evaluate", "does-not-exist.npz", "--task", "mnist"], "no such model file"),
    (["predict", "{model}", "{text}"], "not an IDX file: bad magic number 68656c6c (its first two bytes must "
                                       "be zero) (INPUT must be IDX images, a .npy array or a .npz archive)"),
    (["train", "--task", "fashion-mnist", "--class-weight", "1,2", "--epochs", "1"], "one weight per class"),
    (["train", "--task", "fashion-mnist", "--activation", "relu,swish", "--epochs", "1"], "unknown activation"),
    (["train", "--task", "fashion-mnist", "--dropout", "-0.1", "--epochs", "1"], "dropout rate must be >= 0.0"),
    (["train", "--task", "fashion-mnist", "--residual", "--epochs", "1"], "equal width"),
])
def test_bad_options_end_in_one_clear_line(args, message, tmp_path):
    Model([784, 10], seed=0).save(tmp_path / "m.npz")
    (tmp_path / "images.csv").write_text("hello,world\n")
    result = run(*[a.format(model=tmp_path / "m.npz", text=tmp_path / "images.csv") for a in args])
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [
    ["train", "--task", "xor", "--out", "{missing}/model.npz"],
    ["train", "--task", "xor", "--out", "{file}/model.npz"],
    ["train", "--task", "fashion-mnist", "--checkpoint", "{missing}/run.ckpt"],
    ["predict", "{model}", "{images}", "--output", "{missing}/classes.npy"],
])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, monkeypatch, command):
    """A typo in a folder name is reported at once, before training or predicting (which would
    otherwise run to the end and then fail to save)."""
    Model([784, 10], seed=0).save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", np.zeros((3, 784), np.float32))
    (tmp_path / "a-file").write_text("")
    paths = dict(missing=tmp_path / "missing", file=tmp_path / "a-file", model=tmp_path / "m.npz",
                 images=tmp_path / "x.npy")
    args = [a.format(**paths) for a in command]

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")
    monkeypatch.setattr(Model, "fit", no_work)
    monkeypatch.setattr(Model, "predict", no_work)
    monkeypatch.setattr(datasets, "load_dataset", no_work)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    option = next(a for a in args if a.startswith("--") and a != "--task")
    assert f"Error: {option} {args[args.index(option) + 1]}: " in result.output
    assert ("is not a folder" if "a-file" in args[args.index(option) + 1] else "does not exist") in result.output
    assert sorted(os.listdir(tmp_path)) == ["a-file", "m.npz", "x.npy"]


def test_a_failing_save_is_one_clear_line(tmp_path, monkeypatch):
    """An OSError while writing (here a full disk) ends as one line naming the file, no traceback."""
    def full_disk(self, path):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(Model, "save", full_disk)
    target = tmp_path / "model.npz"
    result = CliRunner().invoke(main, ["train", "--task", "xor", "--epochs", "10", "--out", str(target)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {target}: No space left on device"
    assert not isinstance(result.exception, OSError)


def test_missing_data_without_network_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "_urlopen", offline)
    monkeypatch.setattr(datasets, "PROJECT_DATA_ROOT", tmp_path / "project")
    monkeypatch.setattr(datasets, "SYSTEM_DATA_ROOT", tmp_path / "system")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTMLP_DATA_DIR", raising=False)
    result = CliRunner().invoke(main, ["train", "--task", "mnist", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte.gz" in result.output
    assert str(tmp_path / "empty") in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fashion_mnist_one_epoch_with_the_defaults(tmp_path):
    """The full command, one epoch, the seed network and default options: >= 83 % test accuracy."""
    out = tmp_path / "fm.npz"
    result = run("train", "--task", "fashion-mnist", "--epochs", "1", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["layers"] == [784, 128, 64, 10]
    assert report["test_accuracy"] >= 0.83
    assert "epoch   1/1" in result.stderr

    # evaluate and predict the saved model: the same accuracy, from files alone
    evaluated = run("evaluate", str(out), "--task", "fashion-mnist")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"{report['test_accuracy']:.4f}" in evaluated.stdout

    X_train, y_train, X_test, y_test = datasets.load_fashion_mnist(download=False)
    np.save(tmp_path / "few.npy", X_test[:50])
    predicted = run("predict", str(out), str(tmp_path / "few.npy"))
    assert predicted.returncode == 0, predicted.stderr
    classes = [int(v) for v in predicted.stdout.split()]
    assert classes == Model.load(out).predict(X_test[:50]).tolist()


def test_mnist_test_set_first_8000_train_last_2000_score():
    """On the real MNIST test digits: train on the first 8,000, at least 94 % on the last 2,000."""
    X, y = datasets.load_idx_pair(SHARED_MNIST / "t10k-images-idx3-ubyte.gz",
                                  SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    model = Model([784, 128, 64, 10], seed=0)
    model.fit(X[:8000], y[:8000], epochs=10, batch_size=32, lr=0.1, seed=0)
    assert model.score(X[8000:], y[8000:]) >= 0.94


def test_predict_reads_idx_images(tmp_path):
    with gzip.open(SHARED_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    (tmp_path / "imgs.idx3-ubyte").write_bytes(raw[:16 + 784 * 5].replace(b"\x00\x00\x27\x10", b"\x00\x00\x00\x05", 1))
    model = Model([784, 16, 10], seed=0)
    model.save(tmp_path / "m.npz")
    result = run("predict", str(tmp_path / "m.npz"), str(tmp_path / "imgs.idx3-ubyte"))
    assert result.returncode == 0, result.stderr
    X = datasets.read_idx(tmp_path / "imgs.idx3-ubyte").reshape(5, -1).astype(np.float32) / 255
    assert [int(v) for v in result.stdout.split()] == model.predict(X).tolist()


def test_version_and_help():
    assert run("--version").stdout.startswith("fastmlp, version")
    for command in ("train", "compare", "evaluate", "predict", "bench"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout


def test_ctrl_c_saves_a_checkpoint_and_resume_ends_bit_identical(tmp_path):
    """SIGINT mid-run: exit 130 with a checkpoint; --resume finishes with the very weights of the
    same run never interrupted."""
    import os
    import signal

    common = ["train", "--task", "fashion-mnist", "--epochs", "2", "--no-progress", "--momentum", "0.9",
              "--lr", "0.01"]
    straight = run(*common, "--out", str(tmp_path / "straight.npz"))
    assert straight.returncode == 0, straight.stderr

    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp.cli", *common, "--checkpoint", str(ckpt),
                             "--out", str(tmp_path / "resumed.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # wait for the first epoch to finish, then interrupt the second
        if line.startswith("epoch   1/2"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Resume it with" in err and str(ckpt) in err
    assert "Traceback" not in err
    assert ckpt.exists() and not (tmp_path / "resumed.npz").exists()

    resumed = run("train", "--task", "fashion-mnist", "--resume", str(ckpt), "--no-progress",
                  "--out", str(tmp_path / "resumed.npz"))
    assert resumed.returncode == 0, resumed.stderr
    a, b = Model.load(tmp_path / "straight.npz"), Model.load(tmp_path / "resumed.npz")
    assert a._params.tobytes() == b._params.tobytes()


def test_checkpoint_every_epoch_then_resume_a_finished_run_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    done = run("train", "--task", "fashion-mnist", "--epochs", "1", "--no-progress", "--checkpoint", str(ckpt))
    assert done.returncode == 0, done.stderr
    again = run("train", "--task", "fashion-mnist", "--resume", str(ckpt), "--no-progress")
    assert again.returncode != 0 and "already finished" in again.stderr
