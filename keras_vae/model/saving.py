"""Saving and loading models: the one safe loader.

Every model load goes through `load_model`, which checks the archive before
Keras reads it (a keras-vae model, and no more weights asked for than the
file holds) and lets Keras load it with `safe_mode=True`. Saves are atomic.
"""

import json
import zipfile
from pathlib import Path

import keras

from keras_vae.backend import import_tensorflow_quietly
from keras_vae.errors import ModelFileError
from keras_vae.files import atomic_path
from keras_vae.model.config import ModelConfig
from keras_vae.model.vae import VAE  # registers keras_vae>VAE for Keras's loader

_VAE_REGISTERED_NAME = "keras_vae>VAE"
_WEIGHTS_FILE = "model.weights.h5"
# The fewest bytes a stored weight takes (float16 or bfloat16).
_MIN_BYTES_PER_WEIGHT = 2


def save_model(model, path):
    """Saves `model` as a `.keras` file, atomically.

    Args:
        model: a `keras.Model`.
        path: destination; must end in `.keras`.
    """
    # Keras's saving loads TensorFlow (for its file helpers) when installed.
    import_tensorflow_quietly()
    with atomic_path(path) as temporary:
        model.save(temporary)


def _check_archive(path):
    """Raises `ModelFileError` unless `path` looks like a keras-vae model."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: not a .keras model file (wrong suffix)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path}: not a .keras model file (not a zip archive: "
            "another format, or a truncated file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelFileError(
                    f"{path}: a zip archive but not a Keras model (no config.json)"
                )
            config = json.loads(archive.read("config.json"))
            if archive.testzip() is not None:
                raise ModelFileError(f"{path}: corrupt archive (bad checksum)")
            weights_bytes = (
                archive.getinfo(_WEIGHTS_FILE).file_size if _WEIGHTS_FILE in names else 0
            )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ModelFileError(f"{path}: corrupt .keras archive ({error})") from error
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if registered != _VAE_REGISTERED_NAME:
        kind = registered or (config.get("class_name") if isinstance(config, dict) else None)
        raise ModelFileError(
            f"{path}: a Keras model of class {kind!r}, not a keras-vae VAE"
        )
    _check_weights_fit(path, config.get("config"), weights_bytes)


def _check_weights_fit(path, settings, weights_bytes):
    """Refuses settings that ask for more weights than the file holds.

    Keras builds the model from `config.json` before it reads the weights,
    so a file whose settings ask for billions of weights would allocate them
    first. The networks' size follows from the settings by arithmetic
    (`ModelConfig.parameter_count`), checked here before anything is built.
    """
    try:
        weights = ModelConfig.from_dict(settings).parameter_count()
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        raise ModelFileError(f"{path}: unreadable model settings ({error})") from error
    if weights * _MIN_BYTES_PER_WEIGHT > weights_bytes:
        raise ModelFileError(
            f"{path}: its settings ask for {weights:,} weights but its weights file "
            f"holds {weights_bytes:,} bytes; refused before building the model"
        )


def load_model(path):
    """Loads a `VAE` saved by this package, refusing anything else.

    The archive is checked before Keras reads it, and Keras loads it with
    `safe_mode=True`, so a file that would run code (a `Lambda` layer, a
    pickled function) is refused and none of its code runs.

    Args:
        path: a `.keras` file written by `VAE.save` or `save_model`.

    Returns:
        The `VAE`, compiled if it was saved compiled.

    Raises:
        ModelFileError: with a one-line reason naming the file.
    """
    path = Path(path)
    _check_archive(path)
    try:
        loaded = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types; report one line.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(
            f"{path}: could not be loaded as a keras-vae model "
            f"({type(error).__name__}: {reason})"
        ) from error
    if not isinstance(loaded, VAE):  # the archive check makes this unreachable
        raise ModelFileError(f"{path}: a {type(loaded).__name__}, not a keras-vae VAE")
    return loaded
