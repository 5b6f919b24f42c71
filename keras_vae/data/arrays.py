"""NumPy arrays as a source: `--dataset npz:PATH`.

A `.npz` file (`numpy.savez`) with `x_train` and `x_test`, uint8 images of
shape `(n, H, W)` or `(n, H, W, C)`, and optionally integer labels `y_train`
and `y_test` (both or neither; classes 0..K-1). The file is read without
pickles (`allow_pickle=False`), so a crafted file cannot run code.
"""

import zipfile
from pathlib import Path

import numpy as np

from keras_vae.data import transform
from keras_vae.files import sha256
from keras_vae.errors import DataError

REQUIRED = ("x_train", "x_test")
LABELS = ("y_train", "y_test")


def _load(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"npz:{path}: not a readable .npz file ({type(error).__name__}: {str(error)[:100]})") from None


def _check(path, arrays):
    """Raises `DataError` for what the module docstring does not allow."""
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        raise DataError(f"npz:{path}: no {' or '.join(missing)} in it (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    for key in REQUIRED:
        array = arrays[key]
        if array.dtype != np.uint8:
            raise DataError(f"npz:{path}: {key} is {array.dtype}; give uint8 images (levels 0-255)")
        if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)) or not len(array):
            raise DataError(f"npz:{path}: {key} has shape {array.shape}; give (n, H, W) or (n, H, W, C) with n > 0 and C 1 or 3")
    if sum(key in arrays for key in LABELS) == 1:
        raise DataError(f"npz:{path}: give both y_train and y_test, or neither")
    for key, images in zip(LABELS, REQUIRED):
        if key not in arrays:
            continue
        labels = arrays[key]
        if labels.shape != (len(arrays[images]),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DataError(f"npz:{path}: {key} must hold one integer label >= 0 per image of {images}")


class ArraysSource:
    """The arrays of a `.npz` file (see the module docstring).

    Args:
        path: the file.
    """

    #: NumPy reads the arrays whole: they are in memory from the start.
    reads_lazily = False

    def __init__(self, path):
        path = Path(path)
        self.name = f"npz:{path}"
        if not path.is_file():
            raise DataError(f"{self.name}: no such file")
        arrays = _load(path)
        _check(path, arrays)
        self._images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        if "y_train" in arrays:
            self._labels = {"train": arrays["y_train"].astype("int64"), "test": arrays["y_test"].astype("int64")}
            self.num_classes = int(max(self._labels["train"].max(), self._labels["test"].max())) + 1
        else:
            self._labels = {split: np.full(len(x), -1, dtype="int64") for split, x in self._images.items()}
            self.num_classes = 0
        self.fingerprint = f"npz:{sha256(path)[:16]}"

    def sizes(self):
        return {split: len(images) for split, images in self._images.items()}

    def image_shape(self, size=None, channels=None):
        """`(H, W, C)` of every image once made alike by `size` and `channels`."""
        shapes = [images.shape[1:] for images in self._images.values()]
        if size is None and len({shape[:2] for shape in shapes}) > 1:
            raise DataError(f"{self.name}: x_train and x_test differ in size; give --image-size HxW")
        own = max(shape[2] if len(shape) == 3 else 1 for shape in shapes)
        return (*(size or shapes[0][:2]), channels or own)

    def read(self, split, start, stop, size=None, channels=None):
        """Images `start:stop` of `split` (see `TfdsSource.read`)."""
        images = self._images[split][start:stop]
        names = transform.Numbered(f"{self.name} x_{split}[", start, start + len(images), "]")
        return transform.fit(images, names, size, channels), self._labels[split][start:stop]
