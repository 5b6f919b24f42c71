"""A `.keras` file checked before Keras reads it: is it a keras-vae model, and
does it hold the weights its settings ask for? No Keras here: the command
line refuses a file that is not a model before any engine loads.
"""

import json
import zipfile
from pathlib import Path

from keras_vae.errors import ModelFileError
from keras_vae.model.config import ModelConfig

_VAE_REGISTERED_NAME = "keras_vae>VAE"
_WEIGHTS_FILE = "model.weights.h5"
# The fewest bytes a stored weight takes (float16 or bfloat16).
_MIN_BYTES_PER_WEIGHT = 2


def check_archive(path):
    """Raises `ModelFileError` unless `path` looks like a keras-vae model file.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
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
    return path


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
