"""Callbacks that record a training run: grids, history, timings, checkpoints.

Each does its work once per epoch, on few images, and writes atomically.
"""

import csv
import io
import time
from pathlib import Path

import keras
import numpy as np

from keras_vae import files, images

# Columns of history.csv, in this order; any other logged metric follows.
_HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "reconstruction_loss",
    "kl_loss",
    "val_loss",
    "val_reconstruction_loss",
    "val_kl_loss",
)


def epoch_filename(epoch):
    """`epoch_001.png` for Keras's 0-based epoch 0."""
    return f"epoch_{epoch + 1:03d}.png"


class SampleGrid(keras.callbacks.Callback):
    """Decodes the same latent vectors after every epoch into a PNG grid.

    Because z is fixed, successive grids show the same samples sharpen.

    Args:
        z: array `(n, latent_dim)` of latent vectors, e.g. from
            `VAE.sample_prior`.
        directory: folder for `epoch_001.png`, `epoch_002.png`, ...
        rows, cols: grid shape (default near-square).
    """

    def __init__(self, z, directory, rows=None, cols=None):
        super().__init__()
        self.z = np.asarray(z, dtype="float32")
        self.directory = Path(directory)
        self.rows, self.cols = rows, cols

    def on_epoch_end(self, epoch, logs=None):
        images.save_grid(
            self.directory / epoch_filename(epoch),
            self.model.decode(self.z),
            self.rows,
            self.cols,
        )


class ReconstructionGrid(keras.callbacks.Callback):
    """After every epoch, writes fixed images above their reconstructions.

    Args:
        originals: array `(n, 28, 28, 1)` of images, e.g. one test image per
            digit.
        directory: folder for `epoch_001.png`, ...
    """

    def __init__(self, originals, directory):
        super().__init__()
        self.originals = np.asarray(originals, dtype="float32")
        self.directory = Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = self.model.reconstruct(self.originals)
        images.save_grid(
            self.directory / epoch_filename(epoch),
            np.concatenate([self.originals, reconstructions]),
            rows=2,
            cols=len(self.originals),
        )


class HistoryCSV(keras.callbacks.Callback):
    """Keeps `history.csv`: one row per epoch, rewritten whole each epoch.

    Rewriting (atomically) rather than appending means the file is always a
    complete, well-formed table, even if the run is killed while writing.

    Args:
        path: the CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        files.write_text(self.path, history_to_csv(self.rows))


def history_to_csv(rows):
    """Formats a list of per-epoch dicts as CSV text."""
    keys = {key for row in rows for key in row}
    columns = [c for c in _HISTORY_COLUMNS if c in keys]
    columns += sorted(keys.difference(columns))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of every epoch in `self.seconds`.

    The first epoch includes compiling the training step.
    """

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever the monitored metric reaches a new minimum.

    Args:
        path: the `.keras` file, written atomically.
        monitor: the logged metric to minimize.
    """

    def __init__(self, path, monitor="val_loss"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = np.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and value < self.best:
            self.best = float(value)
            files.save_model(self.model, self.path)
