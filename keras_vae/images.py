"""Image grids: many small images tiled into one PNG."""

import io
import math

import numpy as np
from PIL import Image

from keras_vae.files import atomic_path


def grid_shape(num, rows=None, cols=None):
    """Rows and columns for `num` images: near-square unless given.

    Args:
        num: number of images.
        rows: optional number of rows.
        cols: optional number of columns.

    Returns:
        `(rows, cols)` with `rows * cols >= num`.
    """
    if rows and cols:
        return rows, cols
    if rows:
        return rows, math.ceil(num / rows)
    if cols:
        return math.ceil(num / cols), cols
    cols = math.ceil(math.sqrt(num))
    return math.ceil(num / cols), cols


def tile(images, rows=None, cols=None, pad=2, pad_value=0.5):
    """Tiles images into one 2-D array, row by row.

    Args:
        images: array `(n, height, width)` or `(n, height, width, 1)`, values
            in [0, 1].
        rows, cols: grid shape (see `grid_shape`); empty cells stay blank.
        pad: pixels between images and around the grid.
        pad_value: grey level of the padding.

    Returns:
        A float array of shape `(rows * (h + pad) + pad, cols * (w + pad) + pad)`.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim == 4:
        images = images[..., 0]
    num, height, width = images.shape
    rows, cols = grid_shape(num, rows, cols)
    if rows * cols < num:
        raise ValueError(f"a {rows}x{cols} grid cannot hold {num} images")
    grid = np.full(
        (rows * (height + pad) + pad, cols * (width + pad) + pad),
        pad_value,
        dtype="float32",
    )
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        top = pad + row * (height + pad)
        left = pad + col * (width + pad)
        grid[top : top + height, left : left + width] = image
    return grid


def save_grid(path, images, rows=None, cols=None, scale=2):
    """Writes images as one greyscale PNG grid, atomically.

    Args:
        path: destination `.png` file.
        images: see `tile`.
        rows, cols: grid shape (see `grid_shape`).
        scale: integer upscaling factor (nearest neighbour) for readability.
    """
    with atomic_path(path) as temporary:
        _picture(tile(images, rows, cols), scale).save(temporary)


def png_bytes(images, rows=None, cols=None, scale=1, pad=2):
    """Images as the bytes of one greyscale PNG (a grid, see `tile`)."""
    buffer = io.BytesIO()
    _picture(tile(images, rows, cols, pad=pad), scale).save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(grid, scale):
    """A grid of grey levels in [0, 1] as an 8-bit picture, `scale` times larger."""
    pixels = np.round(np.clip(grid, 0.0, 1.0) * 255).astype("uint8")
    return Image.fromarray(np.kron(pixels, np.ones((scale, scale), dtype="uint8")))
