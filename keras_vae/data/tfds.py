"""TensorFlow Datasets as a source: any image dataset by name, offline-safe.

The image feature and the label feature are found in the builder's info (the
first `Image`, the first `ClassLabel`; a dataset without one is unlabelled).
The dataset's own splits are used: `train`, `test`, and `validation` where it
has one. A dataset without a test split has one held out: the last
`test_split` of its training images.

Where the data comes from, in order:
1. a prepared TFDS data directory: `data_dir`, else `TFDS_DATA_DIR`, else
   TFDS's default (`~/tensorflow_datasets`);
2. `manual_dir`: a folder with the publisher's original files, from which
   TFDS prepares the dataset offline (`MANUAL_FILES` lists MNIST's);
3. a download by TFDS, when the network is reachable.
When none works, `DataUnavailableError` says how to provide the data.
"""

import contextlib
import logging
import math
import os
import socket
from pathlib import Path

import numpy as np

from keras_vae.backend import check_backend, import_tensorflow_quietly
from keras_vae.data import transform
from keras_vae.errors import DataError, DataUnavailableError

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
#: The original files TFDS needs in a manual directory, for the datasets
#: whose files we know.
MANUAL_FILES = {
    "mnist": _IDX_FILES,
    "fashion_mnist": _IDX_FILES,
    "binarized_mnist": (
        "binarized_mnist_train.amat",
        "binarized_mnist_valid.amat",
        "binarized_mnist_test.amat",
    ),
}

#: Datasets whose images are binary, stored as levels 0 and 1 (ours: 0 and 255).
BINARY_DATASETS = ("binarized_mnist",)

# TFDS downloads from here; checked first so that an offline machine gets an
# answer in seconds instead of minutes of retries.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


def _tfds():
    """Imports TFDS; keeps TensorFlow off the GPU when it only reads data."""
    tf = import_tensorflow_quietly()
    import tensorflow_datasets as tfds

    if check_backend() != "tensorflow":
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
    where = data_dir or "the default TFDS data directory (~/tensorflow_datasets)"
    if name in MANUAL_FILES:
        how = (
            f"or pass --manual-dir DIR where DIR holds the original files: "
            f"{', '.join(MANUAL_FILES[name])}"
        )
    else:
        how = f"or prepare it on a machine with network (`tfds build {name}`) and copy the data directory"
    return (
        f"the {name} dataset is not prepared in {where} and cannot be "
        f"downloaded (no network). Either point --data-dir (or TFDS_DATA_DIR) "
        f"at a prepared TFDS data directory, {how}."
    )


def _prepare_from_manual_dir(builder, name, manual_dir):
    tfds = _tfds()
    manual_dir = Path(manual_dir)
    missing = [f for f in MANUAL_FILES.get(name, ()) if not (manual_dir / f).is_file()]
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


def _builder(name, data_dir):
    """`tfds.builder(name)`, or one line naming an unknown dataset."""
    tfds = _tfds()
    try:
        with _quiet_absl():
            return tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError, a bad config or version
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataUnavailableError(
            f"unknown dataset {name!r}: not a TFDS dataset ({reason[:160]}); give a TFDS "
            "name (mnist, fashion_mnist, cifar10, ...), folder:PATH or npz:PATH"
        ) from None


def ensure_prepared(name="mnist", data_dir=None, manual_dir=None):
    """Makes sure TFDS has `name` prepared, without ever hanging offline.

    Args:
        name: a TFDS dataset name (`mnist`, `cifar10`, `emnist/letters`, ...).
        data_dir: TFDS data directory (see `resolve_data_dir`).
        manual_dir: optional folder with the original files (`MANUAL_FILES`).

    Returns:
        The prepared `tfds` builder.

    Raises:
        DataUnavailableError: an unknown name, or data that is absent and
            cannot be obtained.
    """
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    with _quiet_absl():
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


def _first_feature(features, kind):
    """The key of the first top-level feature of type `kind`, or None."""
    return next((key for key, feature in features.items() if isinstance(feature, kind)), None)


class TfdsSource:
    """A prepared TFDS image dataset (see the module docstring).

    Args:
        name: the TFDS name.
        data_dir, manual_dir: where the data is (see `ensure_prepared`).
        test_split: the share of the training images held out as the test
            split, for a dataset without one.
    """

    #: Images are read from the prepared files when asked for, so training
    #: images can stream.
    reads_lazily = True

    def __init__(self, name, data_dir=None, manual_dir=None, test_split=0.1):
        tfds = _tfds()
        self.name = name
        self.builder = ensure_prepared(name, data_dir, manual_dir)
        features = self.builder.info.features
        self.image_key = _first_feature(features, tfds.features.Image)
        if self.image_key is None:
            raise DataError(f"the {name} dataset has no image feature: it is not an image dataset")
        self.label_key = _first_feature(features, tfds.features.ClassLabel)
        self.num_classes = features[self.label_key].num_classes if self.label_key else 0
        self.fingerprint = f"tfds:{name}:{self.builder.info.version}"
        splits = self.builder.info.splits
        self._sizes = {split: splits[split].num_examples for split in ("train", "validation", "test") if split in splits}
        if "train" not in self._sizes:
            raise DataError(f"the {name} dataset has no train split")
        self._held_out = 0
        if "test" not in self._sizes:  # the last images of train are the test split
            self._held_out = math.ceil(self._sizes["train"] * test_split)
            if not 0 < self._held_out < self._sizes["train"]:
                raise DataError(f"--test-split {test_split} leaves {name} no test or no training image")
            self._sizes = {**self._sizes, "train": self._sizes["train"] - self._held_out, "test": self._held_out}

    def sizes(self):
        """Images in each split: `train`, `test`, and `validation` if it has its own."""
        return dict(self._sizes)

    def image_shape(self, size=None, channels=None):
        """`(H, W, C)` of every image once made alike by `size` and `channels`,
        from the dataset's features, without reading an image; None where
        the images may differ in size (the features do not say) and `size`
        is not given.
        """
        shape = self.builder.info.features[self.image_key].shape
        height, width = size or shape[:2]
        if None in (height, width):
            return None
        return (height, width, channels or (shape[2] if shape[2] in transform.CHANNELS else 3))

    def read(self, split, start, stop, size=None, channels=None):
        """Images `start:stop` of `split` as uint8 `(n, H, W, C)`, and labels.

        Args:
            split: `"train"`, `"validation"` or `"test"`.
            start, stop: the range of images.
            size, channels: the `transform.fit` of the images.

        Returns:
            `(images, labels)`: labels are int64, -1 without a label feature.
        """
        name = split
        if split == "test" and self._held_out:
            name, offset = "train", self._sizes["train"]
            start, stop = start + offset, stop + offset
        names = transform.Numbered(f"{self.name} {split} image ", start, stop)
        tfds = _tfds()
        shape = self.builder.info.features[self.image_key].shape
        if None not in shape:  # one batch of fixed-size images
            example = tfds.as_numpy(
                self.builder.as_dataset(split=f"{name}[{start}:{stop}]", batch_size=-1)
            )
            images = example[self.image_key]
            if self.name in BINARY_DATASETS:
                images = images * np.uint8(255)
            labels = example[self.label_key] if self.label_key else np.full(len(images), -1)
            return transform.fit(images, names, size, channels), np.asarray(labels, "int64")
        pictures, labels = [], []
        for example in tfds.as_numpy(self.builder.as_dataset(split=f"{name}[{start}:{stop}]")):
            pictures.append(example[self.image_key])
            labels.append(example[self.label_key] if self.label_key else -1)
        return transform.fit(pictures, names, size, channels), np.asarray(labels, "int64")
