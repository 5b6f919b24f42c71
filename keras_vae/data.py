"""The input pipeline: MNIST from TensorFlow Datasets, held in memory.

MNIST is 47 MB as float32, so each split is loaded once into a NumPy array of
shape `(n, 28, 28, 1)` with pixels scaled to [0, 1]; `fit` batches it.

Where the data comes from, in order:
1. a prepared TFDS data directory: `data_dir`, else `TFDS_DATA_DIR`, else
   TFDS's default (`~/tensorflow_datasets`);
2. `manual_dir`: a folder with the publisher's original files, from which
   TFDS prepares the dataset offline;
3. a download by TFDS, when the network is reachable.
When none works, `DataUnavailableError` says how to provide the data.
"""

import contextlib
import dataclasses
import logging
import os
import socket
from pathlib import Path

import keras
import numpy as np

from keras_vae.errors import DataUnavailableError

#: The original files TFDS needs in a manual directory, per dataset.
MANUAL_FILES = {
    "mnist": (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ),
}
DATASETS = tuple(MANUAL_FILES)

# TFDS downloads MNIST from here; checked first so that an offline machine
# gets an answer in seconds instead of minutes of retries.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


@dataclasses.dataclass
class Dataset:
    """Images in [0, 1] of shape `(n, 28, 28, 1)` and their integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _tfds():
    """Imports TFDS; keeps TensorFlow off the GPU when it only reads data."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if keras.backend.backend() != "tensorflow":
        tf.config.set_visible_devices([], "GPU")
    return tfds


@contextlib.contextmanager
def _quiet_absl():
    """Hides TFDS's warnings about absent data: we report that ourselves."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def resolve_data_dir(data_dir=None):
    """The TFDS data directory: `data_dir`, else `TFDS_DATA_DIR`, else None."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def _network_reachable(timeout=3.0):
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def _missing_data_message(name, data_dir):
    files = ", ".join(MANUAL_FILES[name])
    where = data_dir or "the default TFDS data directory (~/tensorflow_datasets)"
    return (
        f"the {name} dataset is not prepared in {where} and cannot be "
        f"downloaded (no network). Either point --data-dir (or TFDS_DATA_DIR) "
        f"at a prepared TFDS data directory, or pass --manual-dir DIR where "
        f"DIR holds the original files: {files}."
    )


def _prepare_from_manual_dir(builder, name, manual_dir):
    tfds = _tfds()
    manual_dir = Path(manual_dir)
    missing = [f for f in MANUAL_FILES[name] if not (manual_dir / f).is_file()]
    if missing:
        raise DataUnavailableError(
            f"--manual-dir {manual_dir} lacks {', '.join(missing)}; it must "
            f"hold the original {name} files: {', '.join(MANUAL_FILES[name])}."
        )
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # TFDS raises many types; report one line.
        raise DataUnavailableError(
            f"could not prepare {name} from --manual-dir {manual_dir}: {error}"
        ) from error


def ensure_prepared(name="mnist", data_dir=None, manual_dir=None):
    """Makes sure TFDS has `name` prepared, without ever hanging offline.

    Args:
        name: a TFDS dataset name from `DATASETS`.
        data_dir: TFDS data directory (see `resolve_data_dir`).
        manual_dir: optional folder with the original files (`MANUAL_FILES`).

    Returns:
        The prepared `tfds` builder.

    Raises:
        DataUnavailableError: the data is absent and cannot be obtained.
    """
    tfds = _tfds()
    data_dir = resolve_data_dir(data_dir)
    with _quiet_absl():
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    if prepared:
        return builder
    if manual_dir:
        _prepare_from_manual_dir(builder, name, manual_dir)
        return builder
    if not _network_reachable():
        raise DataUnavailableError(_missing_data_message(name, data_dir))
    try:
        builder.download_and_prepare()
    except Exception as error:  # a network failure half-way, a full disk...
        raise DataUnavailableError(
            f"{_missing_data_message(name, data_dir)} (download failed: {error})"
        ) from error
    return builder


def _load_split(builder, split, limit):
    tfds = _tfds()
    if limit is not None:
        split = f"{split}[:{int(limit)}]"
    images, labels = tfds.as_numpy(
        builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    )
    return (images.astype("float32") / 255.0), labels.astype("int64")


def load_dataset(
    name="mnist", data_dir=None, manual_dir=None, num_train=None, num_test=None
):
    """Loads the train and test splits into memory.

    Args:
        name: a TFDS dataset name from `DATASETS`.
        data_dir: TFDS data directory (see `resolve_data_dir`).
        manual_dir: optional folder with the original files.
        num_train: if set, keep only the first `num_train` training images.
        num_test: if set, keep only the first `num_test` test images.

    Returns:
        A `Dataset` of float32 images in [0, 1] and int64 labels.

    Raises:
        DataUnavailableError: the data is absent and cannot be obtained.
    """
    builder = ensure_prepared(name, data_dir=data_dir, manual_dir=manual_dir)
    x_train, y_train = _load_split(builder, "train", num_train)
    x_test, y_test = _load_split(builder, "test", num_test)
    return Dataset(x_train, y_train, x_test, y_test)
