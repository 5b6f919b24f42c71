"""Arrays the explorer computes once per model and data, kept in a file.

The file is an `.npz` (read without pickles) holding the arrays and the
key they were computed for (the model file's hash, the data, the
protocol). A file whose key differs, or that cannot be read, is computed
again; a folder that cannot be written costs the cache, not the app.
"""

import json

import numpy as np

from keras_vae import files
from keras_vae.errors import FileSystemError

#: The key's entry in the file.
_KEY = "key"


def cached_arrays(path, key, compute, shapes=None):
    """The arrays `compute()` returns, from `path` when it holds them for `key`.

    Args:
        path: the cache file (`.npz`), or None for no cache.
        key: a JSON-able dict that names what the arrays depend on.
        compute: a function returning a dict of NumPy arrays.
        shapes: name -> the shape a stored array must have to be used
            (a file that says the right key but holds other arrays is
            computed again).

    Returns:
        A pair: the dict of arrays, and a line saying where they came from.
    """
    text = json.dumps(key, sort_keys=True)
    if path is not None:
        arrays = _read(path, text)
        if arrays is not None and all(
            name in arrays and arrays[name].shape == tuple(shape) for name, shape in (shapes or {}).items()
        ):
            return arrays, f"read from {path}"
    arrays = compute()
    if path is None:
        return arrays, "computed (no cache)"
    try:
        with files.atomic_path(path) as temporary:
            with open(temporary, "wb") as file:
                np.savez(file, **arrays, **{_KEY: np.array(text)})
    except (FileSystemError, OSError) as error:
        return arrays, f"computed; not cached ({error})"
    return arrays, f"computed and cached in {path}"


def _read(path, text):
    """The arrays of `path` if it holds them for the key `text`, else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored[_KEY]) != text:
                return None
            return {name: stored[name] for name in stored.files if name != _KEY}
    except (OSError, ValueError, KeyError, EOFError, MemoryError):
        return None
