"""The ``fastmlp`` command: train XOR or (Fashion-)MNIST, compare engines, evaluate and predict.

Every error a user can cause ends in one line on stderr and a non-zero exit status, never a
traceback: fastmlp's own errors (bad options, bad files, missing data) are ``FastMLPError``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import click
import numpy as np

from . import __version__, xor
from .errors import FastMLPError
from .model import ENGINES, History, Model, TrainingDiverged, TrainingInterrupted

TASKS = ("xor", "mnist", "fashion-mnist")
IMAGE_TASKS = ("mnist", "fashion-mnist")

# The defaults of `fastmlp train --task mnist|fashion-mnist`: the seed article's network.
IMAGE_DEFAULTS = dict(hidden="128,64", epochs=10, batch_size=32, lr=0.1, seed=0)


class _CleanErrors(click.Group):
    """Turn fastmlp's own errors into click's one-line 'Error: ...' and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FastMLPError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file that cannot be read or written: full disk, permissions, ...
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group(cls=_CleanErrors, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(__version__, prog_name="fastmlp")
def main():
    """fastmlp: a multilayer perceptron whose kernels are explicit Numba loops."""


def _count(n, word):
    """'1 epoch', '10,000 epochs'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _set_threads(threads):
    if threads is None:
        return
    import numba
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= threads <= limit:
        raise FastMLPError(f"--threads must be between 1 and {limit} (NUMBA_NUM_THREADS), got {threads}")
    numba.set_num_threads(threads)


def _parse_hidden(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise FastMLPError(f"--hidden takes layer sizes separated by commas, like 128,64; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise FastMLPError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def _check_writable(path, option):
    """Fail before any work when the file an option names could not be written, so that a typo in a
    folder name does not cost a training run that would end with nowhere to save it."""
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        problem = f"{folder} is not a folder" if folder.exists() else f"the folder {folder} does not exist"
        raise FastMLPError(f"{option} {path}: {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FastMLPError(f"{option} {path}: the folder {folder} is not writable")


def _warm_up(model, X, y, batch_size):
    """Compile the kernels (or load them from numba's cache) on a throwaway copy; return seconds.
    On a cold cache, say so first: compiling the image network's kernels takes about a minute."""
    start = time.perf_counter()
    if model.engine == "numba":
        if not model._compiled_on_disk(batch_size):
            click.echo("compiling fastmlp's kernels: once per version of fastmlp, cached for later runs "
                       "(seconds for XOR, about a minute for the image network)...", err=True)
        model._check_X(X)  # the input check of the real run: compiled too, for a large X
        probe = Model(model.layers, activation=list(model.activations), output=model.output,
                      loss=model.loss, bias=model.bias, dtype=model.dtype, seed=0)
        probe.fit(X[:batch_size], y[:batch_size], epochs=1, batch_size=batch_size, lr=1e-9, shuffle=False)
        probe.predict_proba(X[:1])
    return time.perf_counter() - start


engine_option = click.option("--engine", type=click.Choice(list(ENGINES)), default="numba",
                             show_default=True, help="numba kernels, or the pure-NumPy reference engine")
threads_option = click.option("--threads", type=int, default=None,
                              help="threads for the numba kernels (default: all cores)")


@main.command()
@click.option("--task", type=click.Choice(TASKS), default="xor", show_default=True)
@click.option("--epochs", type=int, default=None, help="epochs [xor: 10000; images: 10]")
@click.option("--lr", type=float, default=None, help="learning rate [xor: 0.5, the article's; images: 0.1]")
@click.option("--hidden", default=None, help="hidden layer sizes, comma-separated [xor: 4; images: 128,64]")
@click.option("--batch-size", type=int, default=None, help="mini-batch size [images: 32]")
@click.option("--seed", type=int, default=None, help="random seed [xor: 42; images: 0]")
@engine_option
@threads_option
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="folder holding the IDX files (also $FASTMLP_DATA_DIR)")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="save the trained model here (.npz)")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum, in [0, 1)")
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (with --momentum > 0)")
@click.option("--weight-decay", type=float, default=0.0, show_default=True,
              help="L2 penalty (sgd, adam) or decoupled decay (adamw)")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine", "plateau"]), default="constant",
              show_default=True, help="learning-rate schedule over the epochs")
@click.option("--validation-split", type=float, default=0.0, show_default=True,
              help="hold out this fraction of the training set; its loss is printed each epoch")
@click.option("--patience", type=int, default=None,
              help="early stopping: epochs without validation improvement (needs --validation-split)")
@click.option("--grad-norms", is_flag=True, help="print each layer's gradient norm every epoch")
@click.option("--dropout", type=float, default=0.0, show_default=True, help="dropout rate of the hidden layers")
@click.option("--batchnorm", is_flag=True, help="batch normalization in the hidden layers")
@click.option("--residual", is_flag=True, help="skip connections between hidden layers of equal width")
@click.option("--activation", default="relu", show_default=True,
              help="hidden-layer activation (relu, sigmoid, tanh, identity), or one per layer: relu,tanh")
@click.option("--class-weight", default=None,
              help="loss weight per class: 'balanced' (inverse class frequency) or one number per class")
@click.option("--init", type=click.Choice(["he", "he_uniform", "xavier", "xavier_uniform", "normal"]),
              default="he", show_default=True, help="weight initialisation")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="save the run here every --checkpoint-every epochs, and on Ctrl-C")
@click.option("--checkpoint-every", type=int, default=1, show_default=True)
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="continue the run saved in this checkpoint (same task and data)")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON on stdout")
@click.option("--progress/--no-progress", default=None, help="progress bar [default: when stderr is a terminal]")
def train(task, epochs, lr, hidden, batch_size, seed, engine, threads, data_dir, out, as_json, progress,
          **fit_options):
    """Train a network. With no options: the seed article's XOR program.

    \b
    fastmlp train --task xor            the article's 2-4-1 sigmoid network, lr 0.5, 10,000 epochs
    fastmlp train --task fashion-mnist  the article's 784-128-64-10 ReLU network
    """
    _set_threads(threads)
    _check_writable(out, "--out")
    if task == "xor":
        if batch_size is not None or data_dir is not None:
            raise FastMLPError("--batch-size and --data-dir do not apply to --task xor (it trains on "
                               "the four XOR rows, full batch)")
        given = [f"--{name.replace('_', '-')}" for name, value in fit_options.items()
                 if value != _FIT_DEFAULTS[name]]
        if given:
            raise FastMLPError(f"{', '.join(given)}: --task xor runs the article's network and plain "
                               "gradient descent; the architecture, optimizer, schedule, validation and "
                               "checkpoint options apply to the image tasks")
        _train_xor(epochs, lr, hidden, seed, engine, out, as_json)
    else:
        _train_images(task, epochs, lr, hidden, batch_size, seed, engine, data_dir, out, as_json, progress,
                      fit_options)


_FIT_DEFAULTS = dict(optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
                     validation_split=0.0, patience=None, grad_norms=False, dropout=0.0, batchnorm=False,
                     residual=False, activation="relu", init="he", checkpoint=None, checkpoint_every=1,
                     resume=None, class_weight=None)


def _xor_settings(epochs, lr, hidden, seed):
    hidden_sizes = _parse_hidden(hidden) if hidden is not None else [xor.ARTICLE["hidden"]]
    if len(hidden_sizes) != 1:
        raise FastMLPError("--task xor has one hidden layer: give --hidden a single size, like 8")
    settings = dict(epochs=xor.ARTICLE["epochs"] if epochs is None else epochs,
                    lr=xor.ARTICLE["lr"] if lr is None else lr,
                    hidden=hidden_sizes[0], seed=xor.ARTICLE["seed"] if seed is None else seed)
    if settings["epochs"] < 1:
        raise FastMLPError(f"--epochs must be at least 1, got {settings['epochs']}")
    if not settings["lr"] > 0 or not np.isfinite(settings["lr"]):
        raise FastMLPError(f"--lr must be a positive number, got {settings['lr']}")
    if not 0 <= settings["seed"] < 2**32:
        raise FastMLPError(f"--seed must be in [0, 2**32), got {settings['seed']}")
    return settings


def _run_xor(settings, engine):
    """Train the article's network; return (model, history, warm-up seconds, training seconds)."""
    model = xor.article_model(settings["hidden"], settings["seed"], engine=engine)
    warm = _warm_up(model, xor.X, xor.Y, 4)
    start = time.perf_counter()
    history = xor.train(model, settings["epochs"], settings["lr"])
    return model, history, warm, time.perf_counter() - start


def _train_xor(epochs, lr, hidden, seed, engine, out, as_json):
    settings = _xor_settings(epochs, lr, hidden, seed)
    model, history, warm, seconds = _run_xor(settings, engine)
    predictions = model.predict_proba(xor.X)
    if out:
        model.save(out)
    if as_json:
        click.echo(json.dumps(dict(task="xor", engine=engine, **settings, loss=history.loss[::2000],
                                   final_loss=history.loss[-1], predictions=predictions[:, 0].tolist(),
                                   train_seconds=seconds, compile_seconds=warm, model=out)))
        return
    for epoch in range(0, settings["epochs"], 2000):
        click.echo(f"Epoch {epoch}: Loss = {history.loss[epoch]:.4f}")
    click.echo(np.round(predictions, 2))
    click.echo(f"Trained {_count(settings['epochs'], 'epoch')} in {seconds:.4f} s ({engine} engine; "
               f"kernels compiled or loaded from cache in {warm:.2f} s before that)")
    if out:
        click.echo(f"Saved the model to {out}")


@main.command()
@click.option("--task", type=click.Choice(["xor"]), default="xor", show_default=True)
@click.option("--epochs", type=int, default=None, help="epochs [10000]")
@click.option("--lr", type=float, default=None, help="the article's learning rate [0.5]")
@click.option("--hidden", default=None, help="hidden layer size [4]")
@click.option("--seed", type=int, default=None, help="np.random.seed for the weights [42]")
@threads_option
def compare(task, epochs, lr, hidden, seed, threads):
    """Run the same training on both engines and print each one's time and the speed-up."""
    _set_threads(threads)
    settings = _xor_settings(epochs, lr, hidden, seed)
    results = {}
    for engine in ("numpy", "numba"):
        model, history, warm, seconds = _run_xor(settings, engine)
        results[engine] = (model, history, seconds)
        click.echo(f"{engine:>6}: {seconds:9.4f} s   final loss {history.loss[-1]:.6f}"
                   + (f"   (+ {warm:.2f} s compiling / loading kernels, not counted)" if engine == "numba" else ""))
    same = np.allclose(results["numba"][0].predict_proba(xor.X), results["numpy"][0].predict_proba(xor.X),
                       rtol=1e-9, atol=1e-12)
    click.echo(f"speed-up: numba is {results['numpy'][2] / results['numba'][2]:.1f}x faster than numpy; "
               f"predictions {'agree' if same else 'DIFFER'}")
    if not same:
        sys.exit(1)


def _load_data(task, data_dir):
    from .datasets import load_dataset
    return load_dataset(task, data_dir=data_dir)


def _class_weights(text, y):
    """--class-weight: None, 'balanced' (n / (classes x count), as scikit-learn) or numbers."""
    if text is None:
        return None
    if text == "balanced":
        counts = np.bincount(y, minlength=10).astype(np.float64)
        return np.where(counts > 0, len(y) / (10 * np.maximum(counts, 1)), 0.0)
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise FastMLPError(f"--class-weight takes 'balanced' or numbers separated by commas; got {text!r}") from None


class _CtrlC:
    """While active, the first Ctrl-C only raises a flag that fit checks between batches (it then
    saves the run); a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False

    def __call__(self):
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stderr.write("\nCtrl-C: finishing the current batches and saving a checkpoint "
                         "(press Ctrl-C again to quit at once)\n")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


class _Progress:
    """One self-rewriting line on stderr: epoch, bar, batches/s, running loss."""

    def __init__(self, epochs):
        self.epochs, self.start, self.epoch = epochs, time.perf_counter(), -1

    def __call__(self, epoch, done, total, loss):
        if epoch != self.epoch:
            self.epoch, self.start = epoch, time.perf_counter()
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        filled = int(30 * done / total)
        sys.stderr.write(f"\repoch {epoch + 1}/{self.epochs} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{done}/{total} batches, {rate:,.0f}/s, loss {loss:.4f}")
        sys.stderr.flush()
        if done == total:
            sys.stderr.write("\r\033[K")


def _train_images(task, epochs, lr, hidden, batch_size, seed, engine, data_dir, out, as_json, progress,
                  fit_options):
    d = IMAGE_DEFAULTS
    epochs = d["epochs"] if epochs is None else epochs
    lr = d["lr"] if lr is None else lr
    batch_size = d["batch_size"] if batch_size is None else batch_size
    seed = d["seed"] if seed is None else seed
    sizes = _parse_hidden(d["hidden"] if hidden is None else hidden)
    options = dict(fit_options)
    architecture = {k: options.pop(k) for k in ("dropout", "batchnorm", "residual", "activation", "init")}
    names = architecture["activation"].split(",")
    architecture["activation"] = names[0] if len(names) == 1 else names
    checkpoint, every, resume = options.pop("checkpoint"), options.pop("checkpoint_every"), options.pop("resume")
    _check_writable(checkpoint, "--checkpoint")
    options["track_grad_norms"] = options.pop("grad_norms")
    X_train, y_train, X_test, y_test = _load_data(task, data_dir)
    options["class_weight"] = _class_weights(options.pop("class_weight"), y_train)
    if resume:
        from .checkpoint import load_checkpoint
        model, state = load_checkpoint(resume, engine=engine)
        epochs = state["fit"].get("epochs", epochs)
        say_resume = f"resuming {resume} after epoch {state['epoch']}"
    else:
        model = Model([X_train.shape[1], *sizes, 10], seed=seed, engine=engine, **architecture)
        say_resume = ""
    say = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    say(f"{task}: {X_train.shape[0]:,} training and {X_test.shape[0]:,} test images; "
        f"network {'-'.join(map(str, model.layers))} ({model.n_params:,} parameters), "
        f"{_count(epochs, 'epoch')}, batch {batch_size}, lr {lr:g}, {engine} engine"
        + (f"; {say_resume}" if resume else ""))
    warm = _warm_up(model, X_train, y_train, min(batch_size, X_train.shape[0]))
    epochs_log = []
    last = [time.perf_counter()]
    live = History()  # filled by fit; after_epoch reads the validation loss and gradient norms

    def after_epoch(epoch, loss):
        accuracy = model.score(X_test, y_test)
        now = time.perf_counter()
        entry = dict(epoch=epoch + 1, train_loss=loss, test_accuracy=accuracy, seconds=now - last[0])
        line = f"epoch {epoch + 1:3d}/{epochs}: train loss {loss:.4f}"
        if live.val_loss:
            entry["val_loss"] = live.val_loss[-1]
            line += f"  val loss {live.val_loss[-1]:.4f}"
        line += f"  test accuracy {accuracy:.4f}  lr {live.lr[-1]:.4g}  ({now - last[0]:.2f} s)"
        if live.grad_norms:
            entry["grad_norms"] = live.grad_norms[-1]
            line += "  grad norms " + " ".join(f"{g:.2e}" for g in live.grad_norms[-1])
        epochs_log.append(entry)
        say(line)
        last[0] = time.perf_counter()

    show = sys.stderr.isatty() if progress is None else progress
    # Ctrl-C: finish the batches in flight, save the run, say how to resume, exit with 130.
    save_to = checkpoint or resume or f"{task}-interrupted.ckpt"
    stop = _CtrlC()
    common = dict(callback=after_epoch, progress=_Progress(epochs) if show else None, history=live,
                  checkpoint=save_to, interrupt=stop)
    try:
        with stop:
            if resume:
                history = model.resume_fit(state, X_train, y_train,
                                           checkpoint_every=every if checkpoint else None, **common)
            else:
                history = model.fit(X_train, y_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                    checkpoint_every=every if checkpoint else None, **options, **common)
    except TrainingDiverged as exc:
        raise click.ClickException(str(exc)) from None
    except TrainingInterrupted as exc:
        click.echo(f"\ninterrupted: saved the run to {exc.checkpoint} after {len(exc.history.loss)} "
                   f"complete epochs. Resume it with:\n  fastmlp train --task {task} --resume {exc.checkpoint}",
                   err=True)
        sys.exit(130)
    if not epochs_log:
        raise FastMLPError(f"{resume}: the run it holds had already finished all {epochs} epochs")
    accuracy = epochs_log[-1]["test_accuracy"]
    if out:
        model.save(out)
    if as_json:
        click.echo(json.dumps(dict(task=task, engine=engine, layers=list(model.layers), epochs=epochs,
                                   batch_size=batch_size, lr=lr, seed=seed, history=epochs_log,
                                   test_accuracy=accuracy, train_seconds=history.seconds,
                                   compile_seconds=warm, model=out)))
        return
    say(f"final test accuracy {accuracy:.4f} after {_count(epochs, 'epoch')}, {history.seconds:.1f} s training "
        f"(+ {warm:.2f} s compiling / loading kernels)")
    say(f"saved the model to {out}" if out else "the model was not saved (use --out PATH)")


@main.command("lr-find")
@click.option("--task", type=click.Choice(IMAGE_TASKS), default="fashion-mnist", show_default=True)
@click.option("--hidden", default="128,64", show_default=True, help="hidden layer sizes")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr-min", type=float, default=1e-5, show_default=True)
@click.option("--lr-max", type=float, default=10.0, show_default=True)
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@threads_option
def lr_find(task, hidden, batch_size, lr_min, lr_max, steps, seed, data_dir, threads):
    """Learning-rate range test: loss against a geometrically growing learning rate.

    Too small a rate crawls, too large a rate overshoots and the loss explodes; pick a rate a
    little below the steepest fall.
    """
    _set_threads(threads)
    X_train, y_train, _, _ = _load_data(task, data_dir)
    model = Model([X_train.shape[1], *_parse_hidden(hidden), 10], seed=seed)
    lrs, losses = model.lr_find(X_train, y_train, lr_min=lr_min, lr_max=lr_max, steps=steps,
                                batch_size=batch_size, seed=seed)
    low, high = float(np.min(losses)), float(np.percentile(losses, 90))
    click.echo(f"{'learning rate':>14}  {'loss':>8}")
    for i in range(0, len(lrs), max(1, len(lrs) // 25)):
        bar = int(40 * min(1.0, (losses[i] - low) / (high - low))) if high > low else 0
        click.echo(f"{lrs[i]:14.3g}  {losses[i]:8.4f}  {'#' * bar}")
    # Batch losses are noisy: find the steepest fall on a 5-batch moving average, before its minimum.
    window = min(5, len(losses))
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    falls = np.diff(smooth[:int(np.argmin(smooth)) + 1])
    steepest = (int(np.argmin(falls)) if len(falls) else 0) + window // 2
    diverged = len(lrs) < steps
    click.echo(f"steepest fall of the loss at lr = {lrs[steepest]:.3g}; "
               + (f"the loss diverged at lr = {lrs[-1]:.3g}" if diverged else "no divergence up to --lr-max"))


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(IMAGE_TASKS), required=True, help="whose test set to score")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@engine_option
def evaluate(model_path, task, data_dir, engine):
    """Test accuracy of a saved model."""
    model = Model.load(model_path, engine=engine)
    _, _, X_test, y_test = _load_data(task, data_dir)
    click.echo(f"{task} test accuracy: {model.score(X_test, y_test):.4f} ({X_test.shape[0]:,} images)")


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("input_path", type=click.Path(dir_okay=False))
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="write the classes here (.npy or text) instead of printing them")
@engine_option
def predict(model_path, input_path, output_path, engine):
    """Predicted classes for the images in INPUT (IDX images as uint8 0-255, or .npy/.npz floats)."""
    _check_writable(output_path, "--output")
    model = Model.load(model_path, engine=engine)
    X = _read_inputs(Path(input_path))
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    classes = model.predict(X)
    if output_path is None:
        click.echo("\n".join(map(str, classes.tolist())))
        return
    from .fileio import atomic_open
    with atomic_open(output_path, "wb") as f:
        if output_path.endswith(".npy"):
            np.save(f, classes)
        else:
            f.write(("\n".join(map(str, classes.tolist())) + "\n").encode())
    click.echo(f"wrote {len(classes)} predictions to {output_path}", err=True)


def _read_inputs(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FastMLPError(f"{path}: no such input file")
    if path.suffix == ".npy" or path.suffix == ".npz":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FastMLPError(f"{path}: not a readable {path.suffix} file ({exc})") from None
        if path.suffix == ".npz":
            with data:
                if len(data.files) != 1 and "X" not in data.files:
                    raise FastMLPError(f"{path}: expected one array or an array named 'X', found {data.files}")
                return data["X"] if "X" in data.files else data[data.files[0]]
        return data
    from .datasets import read_idx
    try:
        images = read_idx(path)
    except FastMLPError as exc:
        raise FastMLPError(f"{exc} (INPUT must be IDX images, a .npy array or a .npz archive)") from None
    if images.dtype != np.uint8:
        raise FastMLPError(f"{path}: IDX images must be unsigned bytes, got {images.dtype}")
    return images.astype(np.float32) / 255.0


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
@click.option("--quick", is_flag=True, help="small workloads, for a smoke test")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="timed runs per engine and workload (the best is reported)")
@threads_option
def bench(as_json, quick, repeat, threads):
    """Time training and inference on every engine, and the machine's matmul peak."""
    _set_threads(threads)
    from .benchmarks import format_table, run_all
    results = run_all(quick=quick, repeat=repeat, progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(results, indent=2) if as_json else format_table(results))


if __name__ == "__main__":
    main()
