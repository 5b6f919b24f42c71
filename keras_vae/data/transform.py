"""Images made alike: one size (`--image-size`), one channel count (`--channels`),
8-bit levels; and binarization.

Resizing is Pillow's Lanczos filter, antialiased when it shrinks. Colour
becomes grey by Pillow's luma, L = (299 R + 587 G + 114 B) / 1000 (ITU-R
601-2); grey becomes colour by repeating the level; an alpha channel is
dropped. Without `--image-size` every image must already have the same size;
without `--channels` the images keep theirs (colour if any image is).
"""

import collections.abc
import re

import numpy as np
from PIL import Image

from keras_vae.errors import DataError
from keras_vae.pixels import LEVELS

CHANNELS = (1, 3)
#: The largest side `--image-size` takes.
MAX_SIDE = 1024


def parse_image_size(text):
    """`"32x32"` or `"32"` -> `(32, 32)`.

    Raises:
        ValueError: not one or two whole numbers in [1, `MAX_SIDE`].
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not match:
        raise ValueError(f"--image-size must be HxW or N (e.g. 32x32), got {text!r}")
    height, width = int(match[1]), int(match[2] or match[1])
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"--image-size sides must be 1-{MAX_SIDE}, got {text!r}")
    return height, width


def _as_hwc(picture):
    """An image array as `(H, W, C)` uint8 with C of 1 or 3 (alpha dropped)."""
    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = picture[..., None]
    if picture.shape[-1] in (2, 4):  # grey + alpha, colour + alpha
        picture = picture[..., :-1]
    return picture


def to_channels(images, channels):
    """uint8 images `(..., C)` with `channels` channels (see the module docstring)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    weights = np.array([299, 587, 114], dtype="int64")
    luma = (images.astype("int64") @ weights + 500) // 1000
    return luma[..., None].astype("uint8")


def resize(picture, size):
    """One uint8 image `(H, W, C)` resized to `size` `(h, w)` with Lanczos."""
    if picture.shape[:2] == tuple(size):
        return picture
    mode_image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
    resized = np.asarray(mode_image.resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return _as_hwc(resized)


class Numbered(collections.abc.Sequence):
    """The names `f"{prefix}{i}{suffix}"` of images `start` to `stop - 1`,
    each made when a message asks for it (a read of 60 000 images makes none).

    Args:
        prefix, suffix: around the image's number, e.g. `"mnist train image "`.
        start, stop: the images' range.
    """

    def __init__(self, prefix, start, stop, suffix=""):
        self.prefix, self.suffix, self.numbers = prefix, suffix, range(start, stop)

    def __len__(self):
        return len(self.numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return f"{self.prefix}{self.numbers[index]}{self.suffix}"


def fit(images, names, size=None, channels=None):
    """Images of one size and channel count, as one uint8 array `(n, h, w, c)`.

    Args:
        images: a uint8 array `(n, H, W[, C])`, or a list of images
            `(H, W[, C])` whose sizes and channels may differ.
        names: what to call each image in a message (file names, or `Numbered`).
        size: `(h, w)` to resize to, or None for the images' own size.
        channels: 1 or 3, or None for the images' own (colour if any is).

    Returns:
        A uint8 array.

    Raises:
        DataError: images of different sizes without `size`, or an image
            that is not 8-bit.
    """
    if isinstance(images, np.ndarray):
        _check_levels(images, names[0] if names else "the images")
        if images.ndim == 3:
            images = images[..., None]
        if size is None and channels in (None, images.shape[-1]) and images.shape[-1] in CHANNELS:
            return images
        images = list(images)
    pictures = [_as_hwc(picture) for picture in images]
    for picture, name in zip(pictures, names):
        _check_levels(picture, name)
    if not pictures:
        return np.zeros((0, *(size or (1, 1)), channels or 1), dtype="uint8")
    if size is None:
        sizes = {picture.shape[:2] for picture in pictures}
        if len(sizes) > 1:
            first = pictures[0].shape[:2]
            other = next(i for i, p in enumerate(pictures) if p.shape[:2] != first)
            raise DataError(
                f"images of different sizes ({first[0]}x{first[1]} in {names[0]}, "
                f"{pictures[other].shape[0]}x{pictures[other].shape[1]} in {names[other]}): "
                "give --image-size HxW to resize them all"
            )
        size = pictures[0].shape[:2]
    channels = channels or max(picture.shape[-1] for picture in pictures)
    return np.stack([to_channels(resize(picture, size), channels) for picture in pictures])


def _check_levels(picture, name):
    if picture.dtype != np.uint8:
        raise DataError(
            f"{name}: pixels of type {picture.dtype}; keras-vae reads 8-bit images (uint8, 0-255)"
        )


def binarize(images, seed):
    """One Bernoulli sample of each pixel: 1 with probability its grey level.

    Args:
        images: uint8 levels (or floats in [0, 1]).
        seed: seed of NumPy's generator.

    Returns:
        A uint8 array of the same shape: 0 or 255 (binary pixels as levels).
    """
    images = np.asarray(images)
    probabilities = images.astype("float32") / np.float32(LEVELS - 1) if images.dtype == np.uint8 else images
    noise = np.random.default_rng(seed).random(images.shape, dtype="float32")
    return np.where(noise < probabilities, np.uint8(LEVELS - 1), np.uint8(0))
