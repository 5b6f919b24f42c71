"""The input pipeline: MNIST and friends from TensorFlow Datasets, in memory.

MNIST is 47 MB as float32, so each split is loaded once into a NumPy array of
shape `(n, 28, 28, 1)` with pixels scaled to [0, 1]; `fit` batches it.

Datasets: `mnist`, `fashion_mnist` (grey levels) and `binarized_mnist` (the
fixed binarization of Larochelle & Murray: train 50 000, test 10 000, no
labels). Grey-level data can be binarized (`BINARIZATIONS`):

- `none`: pixels stay grey levels in [0, 1]; the loss is not a likelihood;
- `dynamic`: training images get a fresh Bernoulli sample every time they are
  seen (done by the model, see `layers.DynamicBinarization`); the test set is
  binarized once with the fixed seed `TEST_BINARIZATION_SEED`;
- `static`: training and test sets are each binarized once, with fixed seeds.

The test split binarized with `TEST_BINARIZATION_SEED` is the same for every
run, so likelihoods of different runs compare.

Validation: `validation_split` N holds out the *last* N training images
(images 50 000-59 999 of MNIST for N = 10 000, as the published likelihood
protocols do) for the validation loss and the choice of the best epoch, so
that the test split is read once, at the end. The held-out images are
binarized once with `VALIDATION_BINARIZATION_SEED` (dynamic and static).
`binarized_mnist` comes with its own validation split of 10 000 images, used
for any N > 0 (which must then be 10 000).

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

import numpy as np

from keras_vae.backend import check_backend, import_tensorflow_quietly
from keras_vae.errors import DataUnavailableError

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
#: The original files TFDS needs in a manual directory, per dataset.
MANUAL_FILES = {
    "mnist": _IDX_FILES,
    "fashion_mnist": _IDX_FILES,
    "binarized_mnist": (
        "binarized_mnist_train.amat",
        "binarized_mnist_valid.amat",
        "binarized_mnist_test.amat",
    ),
}
DATASETS = tuple(MANUAL_FILES)
NUM_CLASSES = 10  # digits, or Fashion-MNIST's classes
BINARIZATIONS = ("none", "dynamic", "static")
TEST_BINARIZATION_SEED = 0
TRAIN_BINARIZATION_SEED = 1
VALIDATION_BINARIZATION_SEED = 2
SPLITS = ("train", "validation", "test")
#: binarized_mnist's own validation split (Larochelle & Murray).
BINARIZED_MNIST_VALIDATION = 10_000
#: Images in each dataset's train split.
TRAIN_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "binarized_mnist": 50_000}

# TFDS downloads MNIST from here; checked first so that an offline machine
# gets an answer in seconds instead of minutes of retries.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


@dataclasses.dataclass
class Dataset:
    """Images in [0, 1] of shape `(n, 28, 28, 1)` and their integer labels.

    Labels are -1 for a dataset without labels (`binarized_mnist`). The
    validation arrays are empty when no validation split was held out.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray = None
    y_val: np.ndarray = None

    def __post_init__(self):
        if self.x_val is None:
            self.x_val = self.x_train[:0]
            self.y_val = self.y_train[:0]

    @property
    def has_validation(self):
        """True when a validation split was held out of the training images."""
        return len(self.x_val) > 0


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


def _load_split(builder, split, limit=None):
    """`(images, labels)` of a TFDS split `(name, start, stop)`.

    `stop` None is the end of the split; `limit` keeps the first images (all
    of them when it is larger than the split).
    """
    name, start, stop = split
    size = builder.info.splits[name].num_examples
    stop = size if stop is None else min(stop, size)
    if limit is not None:
        stop = min(stop, start + int(limit))
    tfds = _tfds()
    example = tfds.as_numpy(
        builder.as_dataset(split=f"{name}[{start}:{stop}]", batch_size=-1)
    )
    images = example["image"].astype("float32")
    if images.max() > 1.0:  # uint8 grey levels; binarized_mnist is 0/1
        images /= 255.0
    labels = example.get("label")
    if labels is None:
        labels = np.full(len(images), -1)
    return images, labels.astype("int64")


def binary_pixels(name, binarization):
    """True when the model sees binary pixels, so that its loss is a likelihood."""
    return binarization != "none" or name == "binarized_mnist"


def binarize(images, seed):
    """One Bernoulli sample of each pixel: 1 with probability its grey level.

    Args:
        images: float array with values in [0, 1].
        seed: seed of NumPy's generator.

    Returns:
        A float32 array of 0s and 1s of the same shape.
    """
    noise = np.random.default_rng(seed).random(images.shape, dtype="float32")
    return (noise < images).astype("float32")


def check_validation_split(name, validation_split):
    """The problem with holding out `validation_split` images of `name`, or None."""
    if validation_split < 0:
        return f"validation_split must be >= 0, got {validation_split}"
    if name == "binarized_mnist" and validation_split not in (0, BINARIZED_MNIST_VALIDATION):
        return (
            f"binarized_mnist comes with its own {BINARIZED_MNIST_VALIDATION} validation "
            f"images: give --validation-split {BINARIZED_MNIST_VALIDATION} or 0, not "
            f"{validation_split}"
        )
    if name in TRAIN_SIZES and name != "binarized_mnist" and validation_split >= TRAIN_SIZES[name]:
        return (
            f"validation_split {validation_split} leaves no training image: the {name} "
            f"train split has {TRAIN_SIZES[name]}"
        )
    return None


def load_dataset(
    name="mnist",
    data_dir=None,
    manual_dir=None,
    num_train=None,
    num_test=None,
    binarization="none",
    validation_split=0,
    num_validation=None,
):
    """Loads the train, validation and test splits into memory.

    Args:
        name: a TFDS dataset name from `DATASETS`.
        data_dir: TFDS data directory (see `resolve_data_dir`).
        manual_dir: optional folder with the original files.
        num_train: if set, keep only the first `num_train` training images
            (of those not held out).
        num_test: if set, keep only the first `num_test` test images.
        binarization: one of `BINARIZATIONS` (see the module docstring);
            with `dynamic` the training images stay grey levels, for the
            model to sample.
        validation_split: training images held out for validation, the
            last ones of the train split (see the module docstring); 0 for
            none.
        num_validation: if set, keep only the first `num_validation` of them.

    Returns:
        A `Dataset` of float32 images in [0, 1] and int64 labels.

    Raises:
        DataUnavailableError: the data is absent and cannot be obtained.
        ValueError: an unknown `name` or `binarization`, or a validation
            split that the train split cannot give.
    """
    builder = _prepared_builder(name, data_dir, manual_dir, binarization)
    train, validation = _train_and_validation(builder, name, validation_split)
    x_train, y_train = _load_binarized(builder, "train", train, num_train, binarization)
    x_test, y_test = _load_binarized(builder, "test", _TEST, num_test, binarization)
    if validation is None:
        return Dataset(x_train, y_train, x_test, y_test)
    x_val, y_val = _load_binarized(builder, "validation", validation, num_validation, binarization)
    return Dataset(x_train, y_train, x_test, y_test, x_val, y_val)


def load_split(
    name="mnist",
    split="test",
    data_dir=None,
    manual_dir=None,
    limit=None,
    binarization="none",
    validation_split=10_000,
):
    """Loads one split into memory, binarized as `load_dataset` does.

    Args:
        name: a TFDS dataset name from `DATASETS`.
        split: `"train"`, `"validation"` or `"test"`.
        data_dir, manual_dir: where the data is (see `load_dataset`).
        limit: if set, keep only the first `limit` images.
        binarization: one of `BINARIZATIONS`.
        validation_split: the images held out of the train split for
            validation (see `load_dataset`): they make the `"validation"`
            split and are left out of `"train"`.

    Returns:
        A pair `(images, labels)` of NumPy arrays.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    builder = _prepared_builder(name, data_dir, manual_dir, binarization)
    train, validation = _train_and_validation(builder, name, validation_split)
    if split == "validation" and validation is None:
        raise ValueError("the validation split is empty: validation_split is 0")
    tfds_split = {"train": train, "validation": validation, "test": _TEST}[split]
    return _load_binarized(builder, split, tfds_split, limit, binarization)


_TEST = ("test", 0, None)


def _train_and_validation(builder, name, validation_split):
    """The TFDS splits `(name, start, stop)` of the training and validation images."""
    problem = check_validation_split(name, validation_split)
    if problem:
        raise ValueError(problem)
    if not validation_split:
        return ("train", 0, None), None
    if name == "binarized_mnist":
        return ("train", 0, None), ("validation", 0, None)
    total = builder.info.splits["train"].num_examples
    if validation_split >= total:
        raise ValueError(
            f"validation_split {validation_split} leaves no training image: the {name} "
            f"train split has {total}"
        )
    kept = total - validation_split
    return ("train", 0, kept), ("train", kept, None)


def setting_problems(name, binarization):
    """What is wrong with a dataset name and a binarization: a list of messages."""
    problems = []
    if name not in DATASETS:
        problems.append(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if binarization not in BINARIZATIONS:
        problems.append(
            f"unknown binarization {binarization!r}; choose from {', '.join(BINARIZATIONS)}"
        )
    return problems


def _prepared_builder(name, data_dir, manual_dir, binarization):
    """Checks the arguments and returns the prepared TFDS builder."""
    problems = setting_problems(name, binarization)
    if problems:
        raise ValueError("; ".join(problems))
    return ensure_prepared(name, data_dir=data_dir, manual_dir=manual_dir)


_BINARIZATION_SEEDS = {"test": TEST_BINARIZATION_SEED, "validation": VALIDATION_BINARIZATION_SEED}


def _load_binarized(builder, role, tfds_split, limit, binarization):
    """One split in memory, binarized as the module docstring says.

    `role` is what the images are for (`"train"`, `"validation"` or
    `"test"`), `tfds_split` where they come from (e.g. `("train", 50000,
    None)`, see `_load_split`).
    """
    images, labels = _load_split(builder, tfds_split, limit)
    if role in _BINARIZATION_SEEDS and binarization != "none":
        images = binarize(images, _BINARIZATION_SEEDS[role])
    elif role == "train" and binarization == "static":
        images = binarize(images, TRAIN_BINARIZATION_SEED)
    return images, labels
