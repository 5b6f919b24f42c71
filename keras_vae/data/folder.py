"""A folder of images as a source: `--dataset folder:PATH`.

The conventions of `keras.utils.image_dataset_from_directory`: PNG, JPEG,
BMP and GIF files (the first frame); a folder whose images lie in
subfolders has one class per subfolder, in the sorted order of their names
(their images are searched to any depth); a folder of images alone is
unlabelled. Hidden files and folders are skipped.

No folder comes with a test split, so one is held out: the files, sorted by
path, are shuffled with the fixed seed `SPLIT_SEED`, and the first
`test_split` of them are the test images. The run records the number of
files and a hash of their paths and sizes (`fingerprint`), so that a resumed
run, `evaluate` and `visualize` read the same split, or say that the folder
changed.
"""

import contextlib
import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_vae.data import transform
from keras_vae.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_SEED = 0
#: Pillow's refusal of larger pictures (decompression bombs) stays on.
MAX_PIXELS = 4096 * 4096
#: Pillow's modes that `read_image` reads as 8-bit grey levels, converted to "L".
TO_GREY = ("1", "I", "I;16", "I;16B", "I;16L", "F")
#: The modes read as they are; any other (palette, CMYK, ...) becomes "RGBA".
AS_THEY_ARE = ("L", "RGB", "LA", "RGBA")
#: The modes of grey images (an alpha channel is dropped).
GREY_MODES = ("L", "LA", *TO_GREY)


def _visible(path, root):
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_under(folder, root):
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in SUFFIXES and p.is_file() and _visible(p, root)
    )


def list_images(root):
    """`(files, labels, class names)` of a folder (see the module docstring).

    Raises:
        DataError: not a folder, no images in it, or images both beside
            class subfolders and in them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder")
    classes = [
        d for d in sorted(root.iterdir())
        if d.is_dir() and _visible(d, root) and _images_under(d, root)
    ]
    loose = [p for p in sorted(root.iterdir()) if p.suffix.lower() in SUFFIXES and p.is_file() and _visible(p, root)]
    if not classes:
        if not loose:
            anything = any(_visible(p, root) for p in root.rglob("*"))
            raise DataError(
                f"folder:{root}: {'no images in it' if anything else 'the folder is empty'} "
                f"(looked for {', '.join(SUFFIXES)})"
            )
        return loose, np.full(len(loose), -1, dtype="int64"), []
    if loose:
        raise DataError(
            f"folder:{root}: images both in the folder ({loose[0].name}) and in class subfolders "
            f"({classes[0].name}/); put every image in a class subfolder, or none"
        )
    files, labels = [], []
    for label, folder in enumerate(classes):
        found = _images_under(folder, root)
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype="int64"), [d.name for d in classes]


@contextlib.contextmanager
def open_image(path):
    """An image file opened with PIL, for reading its header or its pixels.

    Raises:
        DataError: naming the file, when it is not an image or is damaged
            (found when opened or when its pixels are read in the block).
    """
    try:
        with Image.open(path) as picture:
            yield picture
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: not a readable image ({type(error).__name__}: {str(error)[:100]})") from None


def read_image(path):
    """One image file as a uint8 array `(H, W)` or `(H, W, C)`.

    Raises:
        DataError: naming the file, when it is not an image, is damaged or
            has more than `MAX_PIXELS` pixels.
    """
    with open_image(path) as picture:
        if picture.width * picture.height > MAX_PIXELS:
            raise DataError(f"{path}: {picture.width}x{picture.height} pixels, more than {MAX_PIXELS:,}")
        picture.seek(0)
        if picture.mode in TO_GREY:
            picture = picture.convert("L")  # grey, as 8-bit levels
        elif picture.mode not in AS_THEY_ARE:
            picture = picture.convert("RGBA")  # palette, CMYK, ...: colour
        return np.asarray(picture)


class FolderSource:
    """The images of a folder (see the module docstring).

    Args:
        path: the folder.
        test_split: the share of the images held out as the test split.
    """

    #: Each image is read when asked for, so training images can stream.
    reads_lazily = True

    def __init__(self, path, test_split=0.1):
        self.root = Path(path)
        self.name = f"folder:{path}"
        files, labels, self.class_names = list_images(self.root)
        self.num_classes = len(self.class_names)
        held_out = math.ceil(len(files) * test_split)
        if not 0 < held_out < len(files):
            raise DataError(
                f"{self.name}: --test-split {test_split} of {len(files)} images leaves no "
                "test or no training image"
            )
        order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
        self._splits = {"test": order[:held_out], "train": order[held_out:]}
        self.files, self.labels = files, labels
        listing = "\n".join(f"{f.relative_to(self.root).as_posix()}\t{f.stat().st_size}" for f in files)
        self.fingerprint = f"folder:{len(files)}:{hashlib.sha256(listing.encode()).hexdigest()[:16]}"

    def sizes(self):
        return {split: len(indices) for split, indices in self._splits.items()}

    def image_shape(self, size=None, channels=None):
        """`(H, W, C)` of every image once made alike by `size` and `channels`,
        from the files' headers (colour if any image is).

        Raises:
            DataError: images of different sizes without `size`, or a file
                that is not an image.
        """
        sizes, colour = {}, False
        for path in self.files:
            with open_image(path) as picture:
                sizes.setdefault((picture.height, picture.width), path)
                colour = colour or picture.mode not in GREY_MODES
        if size is None and len(sizes) > 1:
            (first, one), (second, other) = list(sizes.items())[:2]
            raise DataError(
                f"images of different sizes ({first[0]}x{first[1]} in {one}, {second[0]}x{second[1]} "
                f"in {other}): give --image-size HxW to resize them all"
            )
        return (*(size or next(iter(sizes))), channels or (3 if colour else 1))

    def read(self, split, start, stop, size=None, channels=None):
        """Images `start:stop` of `split` (see `TfdsSource.read`)."""
        chosen = self._splits[split][start:stop]
        paths = [self.files[i] for i in chosen]
        pictures = [read_image(path) for path in paths]
        return transform.fit(pictures, [str(p) for p in paths], size, channels), self.labels[chosen]
