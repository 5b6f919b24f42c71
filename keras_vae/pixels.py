"""How images are held: 8-bit levels in memory, pixel values in [0, 1] in the model.

Datasets keep their images as `uint8` arrays, levels 0-255 (a quarter of the
memory of float32; a binary pixel is 0 or 255), and the model converts each
batch as it arrives (`model.vae.unit_pixels`, in `VAE.call`), so `fit` never
holds a float copy of the training set. Everything else that reads images (the
likelihood estimate, the pictures) converts with `as_unit`: level k becomes
k/255 in float32, the same number on every path and backend.
"""

import numpy as np

LEVELS = 256


def is_levels(images):
    """True for an integer array: 8-bit levels, not values in [0, 1]."""
    return np.issubdtype(np.asarray(images).dtype, np.integer)


def as_unit(images):
    """Images as float32 NumPy pixel values in [0, 1] (levels divided by 255;
    float arrays are taken to be in [0, 1] already)."""
    images = np.asarray(images)
    if is_levels(images):
        return images.astype("float32") / np.float32(LEVELS - 1)
    return images.astype("float32", copy=False)


def as_levels(images):
    """Pixel values in [0, 1] (floats) as `uint8` levels, rounded to the nearest."""
    images = np.asarray(images)
    if is_levels(images):
        return images.astype("uint8", copy=False)
    return np.round(np.clip(images, 0.0, 1.0) * (LEVELS - 1)).astype("uint8")
