"""A picture from the browser (a drawing or an upload) as a model's input.

The bytes come from a stranger, so they are size-checked first and decoded
with Pillow, whose header gives the size before any pixel is decompressed.
The picture is then made to look like the model's data: grey, white on
black (a picture on a light background is inverted, as a digit on paper
is), cropped to its ink and centred by its centre of mass in a box of
20/28 of the image, as MNIST's digits were (LeCun et al., 1998).
"""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_vae.errors import UserError

#: The largest upload taken, in bytes of the file.
MAX_BYTES = 2 << 20
#: The largest picture taken, in pixels (a small PNG can declare a huge one).
MAX_PIXELS = 4096 * 4096
#: The formats taken: what browsers draw and what cameras and scanners write.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
#: MNIST's digits fill 20 of 28 pixels, centred by their centre of mass.
BOX_FRACTION = 20 / 28
#: Below this spread of grey levels a picture is blank.
BLANK = 0.1


def read_picture(data):
    """The grey levels of a picture file, in [0, 1], white ink on black.

    Args:
        data: the file's bytes.

    Returns:
        A float32 array `(height, width)`, and whether it was inverted.

    Raises:
        UserError: too large, not a picture in one of `FORMATS`, or blank.
    """
    if len(data) > MAX_BYTES:
        raise UserError(f"the picture is {len(data):,} bytes; at most {MAX_BYTES:,} are taken")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.format not in FORMATS:
                raise UserError(f"a {picture.format} file; give a {', '.join(FORMATS)} picture")
            if picture.width * picture.height > MAX_PIXELS:
                raise UserError(
                    f"the picture is {picture.width}x{picture.height} pixels; "
                    f"at most {MAX_PIXELS:,} are taken"
                )
            grey = _grey(picture)
    except Image.DecompressionBombError:
        raise UserError(f"the picture declares more pixels than the {MAX_PIXELS:,} taken") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UserError(f"not a picture that can be read ({type(error).__name__})") from error
    if grey.max() - grey.min() < BLANK:
        raise UserError("the picture is blank: draw a digit first")
    inverted = bool(np.median(_border(grey)) > 0.5)  # dark ink on a light ground
    return (1.0 - grey if inverted else grey), inverted


def _grey(picture):
    """Grey levels in [0, 1]; transparent pixels count as the ground (black)."""
    picture.seek(0)  # a GIF's first frame
    rgba = np.asarray(picture.convert("RGBA"), dtype="float32") / 255.0
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype="float32")
    alpha = rgba[..., 3]
    if alpha.min() < 1.0:  # a drawing on a transparent canvas: ink where it is opaque
        ink = luminance if np.median(luminance[alpha > 0.5]) > 0.5 else 1.0 - luminance
        return (ink * alpha).astype("float32")
    return luminance


def _border(grey):
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def as_model_input(grey, height, width, centre=True):
    """A grey picture at the model's size, as its data look.

    Args:
        grey: float array `(h, w)` in [0, 1], white ink on black.
        height, width: the model's image size.
        centre: crop to the ink, scale it into the middle `BOX_FRACTION`
            and centre it by its centre of mass (MNIST's preparation); if
            False, only resize the whole picture.

    Returns:
        A float32 array `(height, width)` in [0, 1].
    """
    picture = Image.fromarray(np.uint8(np.clip(grey, 0, 1) * 255 + 0.5))
    if not centre:
        return _resized(picture, width, height)
    rows, cols = np.nonzero(grey > BLANK)
    picture = picture.crop((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    scale = BOX_FRACTION * min(height / picture.height, width / picture.width)
    ink = _resized(picture, max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    # Place the ink so that its centre of mass falls on the image's centre.
    mass = ink.sum()
    cy = (ink.sum(1) * np.arange(ink.shape[0])).sum() / mass
    cx = (ink.sum(0) * np.arange(ink.shape[1])).sum() / mass
    top = int(np.clip(round((height - 1) / 2 - cy), 0, height - ink.shape[0]))
    left = int(np.clip(round((width - 1) / 2 - cx), 0, width - ink.shape[1]))
    image = np.zeros((height, width), dtype="float32")
    image[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return image


def _resized(picture, width, height):
    resized = picture.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype="float32") / 255.0
