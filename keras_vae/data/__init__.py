"""The input pipeline: images from TFDS, a folder or a NumPy file, in memory as uint8.

`--dataset` names one source (`open_source`), each in its own module:

- a TFDS image dataset by name (`data.tfds`): `mnist`, `fashion_mnist`,
  `binarized_mnist` (the fixed binarization of Larochelle & Murray: train
  50 000, validation 10 000, test 10 000, no labels), `cifar10`,
  `svhn_cropped`, `emnist/letters`, ...: its own splits;
- `folder:PATH`, a folder of PNG/JPEG/BMP/GIF images, subfolders as classes,
  with a test split held out (`data.folder`);
- `npz:PATH`, NumPy arrays `x_train`, `x_test` (and labels) (`data.arrays`).

Each split is read once into a uint8 array `(n, H, W, C)` of levels 0-255
(`keras_vae.pixels`: a quarter of float32; the model converts each batch).
`--image-size HxW` and `--channels 1|3` make the images alike
(`data.transform`); without them, the data's own size and channels.

Memory (checked before anything is read; 60 000 MNIST images are 47 MB,
50 000 32x32 colour images 154 MB as uint8): the validation and test images
are always held in memory. The training images are too when everything fits
in half the memory available (`IN_MEMORY_SHARE`); else they stream from disk
a block at a time (`stream="auto"`, `data.stream`; `"on"` always streams,
`"off"` refuses data that does not fit). A TFDS dataset and a folder stream;
an npz file is read whole by NumPy, so it must fit.

Grey-level data can be binarized (`BINARIZATIONS`):

- `none`: pixels stay grey levels;
- `dynamic`: training images get a fresh Bernoulli sample every time they are
  seen (done by the model, see `layers.DynamicBinarization`); the test set is
  binarized once with the fixed seed `TEST_BINARIZATION_SEED`;
- `static`: training and test sets are each binarized once, with fixed seeds.
Binary pixels are the levels 0 and 255. The test split binarized with
`TEST_BINARIZATION_SEED` is the same for every run, so likelihoods of
different runs compare.

Validation: `validation_split` N holds out the *last* N training images
(images 50 000-59 999 of MNIST for N = 10 000, as the published likelihood
protocols do) for the validation loss and the choice of the best epoch, so
that the test split is read once, at the end. The held-out images are
binarized once with `VALIDATION_BINARIZATION_SEED` (dynamic and static). A
dataset with a validation split of its own (`binarized_mnist`, `celeb_a`)
uses it, all of it, for any N > 0 (which must then be its size).
"""

import dataclasses
import math
import re
import typing
from pathlib import Path

import numpy as np

from keras_vae import memory
from keras_vae.data.arrays import ArraysSource
from keras_vae.data.folder import FolderSource
from keras_vae.data.stream import STREAM_CHOICES, ImageStream
from keras_vae.data.tfds import (
    BINARY_DATASETS,
    MANUAL_FILES,
    TfdsSource,
    ensure_prepared,
    resolve_data_dir,
)
from keras_vae.data.transform import CHANNELS, binarize, parse_image_size
from keras_vae.errors import DataError

__all__ = [
    "BINARIZATIONS", "CHANNELS", "DATASETS", "MANUAL_FILES", "STREAM_CHOICES", "Dataset", "ImageStream",
    "binarize", "binary_pixels",
    "check_validation_split", "ensure_prepared", "load_dataset", "load_split", "open_source",
    "parse_image_size", "resolve_data_dir", "setting_problems",
]

#: The datasets of the original design and of the likelihood literature;
#: any other TFDS image dataset, `folder:PATH` and `npz:PATH` work too.
DATASETS = ("mnist", "fashion_mnist", "binarized_mnist")
BINARIZATIONS = ("none", "dynamic", "static")
TEST_BINARIZATION_SEED = 0
TRAIN_BINARIZATION_SEED = 1
VALIDATION_BINARIZATION_SEED = 2
SPLITS = ("train", "validation", "test")
#: binarized_mnist's own validation split (Larochelle & Murray).
BINARIZED_MNIST_VALIDATION = 10_000
#: Images in each known dataset's train split (checked before any data is read).
TRAIN_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "binarized_mnist": 50_000}
#: The share of a folder's images (or of a TFDS train split without a test
#: split) held out as the test split.
DEFAULT_TEST_SPLIT = 0.1
#: Training images stay in memory while all images take at most this share
#: of the memory available (the engine, the model and its batches need the rest).
IN_MEMORY_SHARE = 0.5
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[a-z0-9_.]+)?(:[0-9.*]+)?")


@dataclasses.dataclass
class Dataset:
    """uint8 images `(n, H, W, C)` (levels 0-255) and their integer labels.

    Labels are -1 for a dataset without labels (`binarized_mnist`). The
    validation arrays are empty when no validation split was held out.
    Streamed training images (`streams`) are an `ImageStream` in `x_train`,
    which reads them with their labels (`y_train` is None).
    `num_classes` is 0 without labels; `fingerprint` names the data read
    (a TFDS version, a hash of a folder's file list or of an npz file).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray = None
    y_val: np.ndarray = None
    num_classes: int = 10
    fingerprint: str = ""

    def __post_init__(self):
        if self.x_val is None:
            self.x_val = np.zeros((0, *self.image_shape), dtype="uint8")
            self.y_val = np.zeros(0, dtype="int64")

    @property
    def streams(self):
        """True when the training images are read from disk as training goes."""
        return isinstance(self.x_train, ImageStream)

    @property
    def has_validation(self):
        """True when a validation split was held out of the training images."""
        return len(self.x_val) > 0

    @property
    def image_shape(self):
        """`(height, width, channels)` of the images."""
        return tuple(self.x_train.shape[1:])


class DataSettings(typing.NamedTuple):
    """What data a run read, enough to read it again: its flags (where the
    data was among them), and the `Dataset.fingerprint` of what it read
    (None where unrecorded)."""

    dataset: str = "mnist"
    binarize: str = "none"
    validation_split: int | None = None
    image_size: str | None = None
    channels: int | None = None
    test_split: float = DEFAULT_TEST_SPLIT
    fingerprint: str | None = None
    data_dir: str | None = None
    manual_dir: str | None = None

    def load_split(self, split="test", data_dir=None, manual_dir=None, limit=None):
        """`load_split` of this data: `(images, labels)`; a folder or file that
        changed since the run read it is refused (`DataError`).

        `data_dir` and `manual_dir` default to the run's own where those
        folders still exist (a TFDS version prepared elsewhere has the same
        fingerprint), else to TFDS's default (`resolve_data_dir`).
        """
        data_dir = data_dir or _existing(self.data_dir)
        manual_dir = manual_dir or _existing(self.manual_dir)
        return load_split(
            self.dataset, split, data_dir, manual_dir, limit, self.binarize,
            validation_split=self.validation_split or 0,
            image_size=parse_image_size(self.image_size) if self.image_size else None,
            channels=self.channels, test_split=self.test_split, fingerprint=self.fingerprint,
        )


def _existing(folder):
    return folder if folder and Path(folder).is_dir() else None


def open_source(name, data_dir=None, manual_dir=None, test_split=DEFAULT_TEST_SPLIT):
    """The source `--dataset name` names: `folder:PATH`, `npz:PATH` or a TFDS name.

    Raises:
        DataError, DataUnavailableError: as the source finds the data.
    """
    if name.startswith("folder:"):
        return FolderSource(name[len("folder:"):], test_split)
    if name.startswith("npz:"):
        return ArraysSource(name[len("npz:"):])
    return TfdsSource(name, data_dir, manual_dir, test_split)


def binary_pixels(name, binarization):
    """True when the model sees binary pixels."""
    return binarization != "none" or name in BINARY_DATASETS


def dataset_problem(name):
    """What is wrong with a `--dataset` value, seen without reading any data, or None."""
    if name.startswith("folder:"):
        path = Path(name[len("folder:"):])
        return None if path.is_dir() else f"--dataset {name}: no such folder"
    if name.startswith("npz:"):
        path = Path(name[len("npz:"):])
        return None if path.is_file() else f"--dataset {name}: no such file"
    if not _TFDS_NAME.fullmatch(name):
        return (
            f"unknown dataset {name!r}; give a TFDS name (mnist, fashion_mnist, binarized_mnist, "
            "cifar10, ...), folder:PATH or npz:PATH"
        )
    return None


def setting_problems(name, binarization, test_split=DEFAULT_TEST_SPLIT):
    """What is wrong with a dataset name, a binarization and a test split: a list of messages."""
    problems = [dataset_problem(name)]
    if binarization not in BINARIZATIONS:
        problems.append(
            f"unknown binarization {binarization!r}; choose from {', '.join(BINARIZATIONS)}"
        )
    if not 0 < test_split < 1:
        problems.append(f"test_split must be a share between 0 and 1, got {test_split}")
    return [problem for problem in problems if problem]


def check_validation_split(name, validation_split):
    """The problem with holding out `validation_split` images of `name`, or None
    (checked here for the datasets of `TRAIN_SIZES`, the others when read)."""
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


def _parts(source, validation_split):
    """The `(split, start, stop)` ranges of the train, validation and test images."""
    problem = check_validation_split(source.name, validation_split)
    if problem:
        raise DataError(problem)
    sizes = source.sizes()
    test = ("test", 0, sizes["test"])
    if not validation_split:
        return ("train", 0, sizes["train"]), None, test
    if "validation" in sizes:
        if validation_split != sizes["validation"]:
            raise DataError(
                f"{source.name} comes with its own {sizes['validation']} validation images: "
                f"give --validation-split {sizes['validation']} or 0, not {validation_split}"
            )
        return ("train", 0, sizes["train"]), ("validation", 0, sizes["validation"]), test
    total = sizes["train"]
    if validation_split >= total:
        raise DataError(
            f"validation_split {validation_split} leaves no training image: the {source.name} "
            f"train split has {total}"
        )
    return ("train", 0, total - validation_split), ("train", total - validation_split, total), test


def _limited(part, limit):
    split, start, stop = part
    return (split, start, stop if limit is None else min(stop, start + int(limit)))


_BINARIZATION_SEEDS = {"test": TEST_BINARIZATION_SEED, "validation": VALIDATION_BINARIZATION_SEED}


def _read(source, role, part, binarization, size, channels):
    """One part in memory, binarized as the module docstring says.

    `role` is what the images are for (`"train"`, `"validation"` or
    `"test"`), `part` where they come from (e.g. `("train", 50000, 60000)`).
    """
    images, labels = source.read(*part, size=size, channels=channels)
    if role in _BINARIZATION_SEEDS and binarization != "none":
        images = binarize(images, _BINARIZATION_SEEDS[role])
    elif role == "train" and binarization == "static":
        images = binarize(images, TRAIN_BINARIZATION_SEED)
    return images, labels


def _streams(source, parts, size, channels, stream):
    """Whether the training images (`parts[0]`) stream; refuses, before
    reading them, images that cannot be held (see the module docstring).

    Returns:
        `(streams, image_shape)`: True when the training images are to
        stream, and their `(H, W, C)` (`source.image_shape`; None if it
        cannot tell without reading them, and they do not stream).
    """
    if stream not in STREAM_CHOICES:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAM_CHOICES)}")
    image_shape = source.image_shape(size, channels)
    if image_shape is None and stream == "on":
        raise DataError(f"{source.name}: its images may differ in size; give --image-size HxW to stream them")
    image_bytes = math.prod(image_shape or _image_shape(source, parts[0], size, channels))
    counts = [stop - start for _, start, stop in parts]
    held = sum(counts[1:])
    memory.check_fits(held * image_bytes, f"holding the {held:,} validation and test images of {source.name} as uint8")
    lazy = stream == "on" or (stream == "auto" and source.reads_lazily)
    if not lazy:
        memory.check_fits(sum(counts) * image_bytes, f"holding {sum(counts):,} images of {source.name} as uint8",
                          hint=_stream_hint(source))
        return False, image_shape
    available = memory.available_bytes()
    fits = available is None or sum(counts) * image_bytes <= available * IN_MEMORY_SHARE
    if not fits and image_shape is None:
        raise DataError(
            f"the {sum(counts):,} images of {source.name} do not fit in half the memory available "
            "and may differ in size; give --image-size HxW to stream them"
        )
    return stream == "on" or not fits, image_shape


def _image_shape(source, part, size, channels):
    """`(H, W, C)` of the images of `part`, from its first image (an estimate,
    for a TFDS dataset whose images may differ in size)."""
    split, start, _ = part
    first, _ = source.read(split, start, start + 1, size=size, channels=channels)
    return first.shape[1:]


def _stream_hint(source):
    if source.reads_lazily:
        return "--stream auto (or on) reads the training images from disk a block at a time"
    return "an npz file is read whole: give a folder or a TFDS dataset, which stream, or ask for less"


def _checked(name, binarization, test_split):
    problems = setting_problems(name, binarization, test_split)
    if problems:
        raise DataError("; ".join(problems))


def load_dataset(
    name="mnist",
    data_dir=None,
    manual_dir=None,
    num_train=None,
    num_test=None,
    binarization="none",
    validation_split=0,
    num_validation=None,
    image_size=None,
    channels=None,
    test_split=DEFAULT_TEST_SPLIT,
    stream="off",
):
    """Loads the train, validation and test splits into memory (or streams train).

    Args:
        name: a TFDS name, `folder:PATH` or `npz:PATH` (`open_source`).
        data_dir: TFDS data directory (see `resolve_data_dir`).
        manual_dir: optional folder with the original files (TFDS).
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
        image_size: `(height, width)` to resize to, or None.
        channels: 1 or 3 to convert to, or None.
        test_split: the share held out as the test split where the data
            has none (a folder).
        stream: `"off"` holds the training images in memory; `"on"` reads
            them as training goes (an `ImageStream`); `"auto"` streams
            them when they do not fit (see the module docstring).

    Returns:
        A `Dataset` of uint8 images and int64 labels.

    Raises:
        DataUnavailableError: the data is absent and cannot be obtained.
        DataError: the data cannot be used as asked.
        ValueError: an unknown `binarization`, or a validation split that
            the train split cannot give.
    """
    _checked(name, binarization, test_split)
    source = open_source(name, data_dir, manual_dir, test_split)
    train, validation, test = _parts(source, validation_split)
    parts = [_limited(train, num_train), _limited(test, num_test)]
    if validation is not None:
        parts.append(_limited(validation, num_validation))
    streams, image_shape = _streams(source, parts, image_size, channels, stream)
    if streams:
        static = TRAIN_BINARIZATION_SEED if binarization == "static" else None
        x_train, y_train = ImageStream(source, parts[0], image_shape, static), None
    else:
        x_train, y_train = _read(source, "train", parts[0], binarization, image_size, channels)
    x_test, y_test = _read(source, "test", parts[1], binarization, image_size, channels)
    x_val = y_val = None
    if validation is not None:
        x_val, y_val = _read(source, "validation", parts[2], binarization, image_size, channels)
    return Dataset(x_train, y_train, x_test, y_test, x_val, y_val, source.num_classes, source.fingerprint)


def load_split(
    name="mnist",
    split="test",
    data_dir=None,
    manual_dir=None,
    limit=None,
    binarization="none",
    validation_split=10_000,
    image_size=None,
    channels=None,
    test_split=DEFAULT_TEST_SPLIT,
    fingerprint=None,
):
    """Loads one split into memory, as `load_dataset` does.

    Args:
        name: a TFDS name, `folder:PATH` or `npz:PATH`.
        split: `"train"`, `"validation"` or `"test"`.
        data_dir, manual_dir: where the data is (see `load_dataset`).
        limit: if set, keep only the first `limit` images.
        binarization: one of `BINARIZATIONS`.
        validation_split: the images held out of the train split for
            validation (see `load_dataset`): they make the `"validation"`
            split and are left out of `"train"`.
        image_size, channels, test_split: as `load_dataset`.
        fingerprint: if given, the `Dataset.fingerprint` the data must have
            (a run's): other data is refused.

    Returns:
        A pair `(images, labels)` of NumPy arrays: uint8 levels, int64.

    Raises:
        DataError: the data is not the one `fingerprint` names (a folder
            whose files changed since the run read it, another npz file).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    _checked(name, binarization, test_split)
    source = open_source(name, data_dir, manual_dir, test_split)
    if fingerprint and source.fingerprint.split(":")[0] == fingerprint.split(":")[0] and source.fingerprint != fingerprint:
        raise DataError(
            f"{name} is not the data the run read ({source.fingerprint}, the run's {fingerprint}): "
            "its files changed since, so its splits would differ"
        )
    train, validation, test = _parts(source, validation_split)
    if split == "validation" and validation is None:
        raise DataError("the validation split is empty: validation_split is 0")
    part = _limited({"train": train, "validation": validation, "test": test}[split], limit)
    count = part[2] - part[1]
    image_bytes = math.prod(_image_shape(source, part, image_size, channels))
    memory.check_fits(count * image_bytes, f"holding {count:,} images of {source.name} as uint8")
    return _read(source, split, part, binarization, image_size, channels)
