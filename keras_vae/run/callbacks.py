"""Callbacks that record a training run: grids, history, timings, checkpoints.

Each does its work once per epoch, on few images, and writes atomically. The
writers skip an epoch whose loss is not finite, so a diverging run never
overwrites a good file with a broken one.
"""

import contextlib
import math
import time
from pathlib import Path

import keras
import numpy as np

from keras_vae import files, images, pixels
from keras_vae.model import save_model
from keras_vae.run.folder import epoch_filename, history_to_csv

def finite(logs):
    """Whether the epoch's logged loss is a finite number."""
    loss = (logs or {}).get("loss")
    return loss is not None and math.isfinite(float(loss))


class EpochWriter(keras.callbacks.Callback):
    """Base of the callbacks that write a file at the end of a good epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if finite(logs):
            self.write(epoch, logs)

    def write(self, epoch, logs):
        raise NotImplementedError


class SampleGrid(EpochWriter):
    """Decodes the same latent vectors after every epoch into a PNG grid.

    Because z is fixed, successive grids show the same samples sharpen. A
    prior with weights (the VampPrior, two layers) changes as it trains: give
    a count instead of vectors, and each epoch draws that many from the
    model's current prior with the same seed.

    Args:
        z: array `(n, code_dim)` of latent vectors, e.g. from
            `VAE.sample_prior`, or an int n: draw n with `seed` every epoch.
        directory: folder for `epoch_001.png`, `epoch_002.png`, ...
        rows, cols: grid shape (default near-square).
        labels: the label of each z, for a conditional VAE.
        seed: the seed of each epoch's draw, when `z` is a count.
        view: optional function, the trained model -> a context manager
            giving the model to decode with (the trainer's `local_view`:
            a one-device copy where only all processes together can run the
            trained one).
    """

    def __init__(self, z, directory, rows=None, cols=None, labels=None, seed=0, view=None):
        super().__init__()
        self.view = view or contextlib.nullcontext
        self.z = z if isinstance(z, int) else np.asarray(z, dtype="float32")
        self.directory = Path(directory)
        self.rows, self.cols = rows, cols
        self.labels = labels
        self.seed = seed

    def write(self, epoch, logs):
        with self.view(self.model) as model:
            z = model.sample_prior(self.z, self.seed) if isinstance(self.z, int) else self.z
            samples = model.decode(z, self.labels)
        images.save_grid(self.directory / epoch_filename(epoch), samples, self.rows, self.cols)


class ReconstructionGrid(EpochWriter):
    """After every epoch, writes fixed images above their reconstructions.

    Args:
        originals: array `(n, H, W, C)` of images (uint8 levels or in [0, 1]), e.g. one test image per
            digit.
        directory: folder for `epoch_001.png`, ...
        labels: their labels, for a conditional VAE.
        view: as `SampleGrid`'s.
    """

    def __init__(self, originals, directory, labels=None, view=None):
        super().__init__()
        self.view = view or contextlib.nullcontext
        self.originals = pixels.as_unit(originals)
        self.directory = Path(directory)
        self.labels = labels

    def write(self, epoch, logs):
        with self.view(self.model) as model:
            reconstructions = model.reconstruct(self.originals, self.labels)
        images.save_grid(
            self.directory / epoch_filename(epoch),
            np.concatenate([self.originals, reconstructions]),
            rows=2,
            cols=len(self.originals),
        )


class HistoryCSV(EpochWriter):
    """Keeps `history.csv`: one row per epoch, rewritten whole each epoch.

    Rewriting (atomically) rather than appending means the file is always a
    complete, well-formed table, even if the run is killed while writing.

    Args:
        path: the CSV file.
        rows: rows of earlier epochs to keep (when resuming a run).
    """

    def __init__(self, path, rows=()):
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows)

    def write(self, epoch, logs):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in logs.items()})
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        files.write_text(self.path, history_to_csv(self.rows))


def tensorboard(log_dir, samples_dir):
    """Keras's TensorBoard callback, and one that adds the sample grids.

    Keras's callback logs every loss per epoch (`train/` and `validation/`
    runs); `SampleGridSummary` adds each epoch's sample grid as an image. It
    works on every backend: TensorBoard's writer is TensorFlow's, which is
    installed with keras-vae anyway.

    Args:
        log_dir: the log folder, for `tensorboard --logdir`.
        samples_dir: the folder `SampleGrid` writes its grids into.

    Returns:
        A list of the two callbacks; place them after `SampleGrid`.
    """
    return [
        keras.callbacks.TensorBoard(str(log_dir), write_graph=False),
        SampleGridSummary(samples_dir, log_dir),
    ]


class SampleGridSummary(EpochWriter):
    """Adds the epoch's sample grid, as `SampleGrid` wrote it, to TensorBoard.

    Args:
        samples_dir: the folder of `SampleGrid`'s `epoch_NNN.png` files.
        log_dir: the TensorBoard log folder; the image goes to its `train/`
            run, beside the losses, at the epoch's step.
    """

    def __init__(self, samples_dir, log_dir):
        super().__init__()
        self.samples_dir = Path(samples_dir)
        self.log_dir = Path(log_dir)
        self._writer = None

    def write(self, epoch, logs):
        import tensorflow as tf
        from PIL import Image

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
        with Image.open(self.samples_dir / epoch_filename(epoch)) as image:
            grid = np.asarray(image.convert("RGB" if image.mode == "RGB" else "L"))
        if grid.ndim == 2:
            grid = grid[..., None]
        with self._writer.as_default():
            tf.summary.image("samples", grid[None], step=epoch)
        self._writer.flush()


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall-clock time to the logs as `seconds`.

    Place it first in the callback list: the logs dict it extends is the one
    the later callbacks (and `history.csv`) receive. The first epoch includes
    compiling the training step.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start


class BestModelCheckpoint(EpochWriter):
    """Saves the model whenever the monitored metric reaches a new minimum.

    Args:
        path: the `.keras` file, written atomically.
        monitor: the logged metric to minimize.
        best: the best value so far (when resuming a run).
    """

    def __init__(self, path, monitor="val_loss", best=math.inf):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = best

    def write(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(value) and value < self.best:
            self.best = float(value)
            save_model(self.model, self.path)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training after the first epoch whose loss is NaN or infinite.

    Like `keras.callbacks.TerminateOnNaN`, but it checks once per epoch: a
    callback with a per-batch hook makes Keras convert the logs to Python
    numbers after every step, a device sync that also turns off Keras's
    asynchronous callback dispatch. A diverged epoch costs at most one epoch
    of compute, and the `EpochWriter`s write nothing for it. The 1-based
    epoch is kept in `diverged_epoch` for the caller to report.
    """

    def __init__(self):
        super().__init__()
        self.diverged_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if not finite(logs) and self.diverged_epoch is None:
            self.diverged_epoch = epoch + 1
            self.model.stop_training = True
