"""Image grids: many small images, grey or colour, tiled into one PNG."""

import io
import math

import numpy as np
from PIL import Image

from keras_vae.files import atomic_path
from keras_vae.pixels import as_unit


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
    """Tiles images into one array, row by row.

    Args:
        images: array `(n, height, width)` or `(n, height, width, C)` with C
            1 (grey) or 3 (colour): uint8 levels or values in [0, 1].
        rows, cols: grid shape (see `grid_shape`); empty cells stay blank.
        pad: pixels between images and around the grid.
        pad_value: grey level of the padding.

    Returns:
        A float array in [0, 1] of shape `(rows * (h + pad) + pad, cols *
        (w + pad) + pad)`, with a last axis of 3 for colour.
    """
    images = as_unit(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    num, height, width = images.shape[:3]
    rows, cols = grid_shape(num, rows, cols)
    if rows * cols < num:
        raise ValueError(f"a {rows}x{cols} grid cannot hold {num} images")
    grid = np.full(
        (rows * (height + pad) + pad, cols * (width + pad) + pad, *images.shape[3:]),
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
    """Writes images as one PNG grid (grey or colour), atomically.

    Args:
        path: destination `.png` file.
        images: see `tile`.
        rows, cols: grid shape (see `grid_shape`).
        scale: integer upscaling factor (nearest neighbour) for readability.
    """
    with atomic_path(path) as temporary:
        _picture(tile(images, rows, cols), scale).save(temporary)


def png_bytes(images, rows=None, cols=None, scale=1, pad=2):
    """Images as the bytes of one PNG (a grid, see `tile`)."""
    buffer = io.BytesIO()
    _picture(tile(images, rows, cols, pad=pad), scale).save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(grid, scale):
    """A grid in [0, 1] (grey, or colour on a last axis of 3) as an 8-bit
    picture, `scale` times larger (nearest neighbour)."""
    levels = np.round(np.clip(grid, 0.0, 1.0) * 255).astype("uint8")
    return Image.fromarray(levels.repeat(scale, axis=0).repeat(scale, axis=1))
