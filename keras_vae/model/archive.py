"""A `.keras` file checked before Keras reads it: is it a keras-vae model, and
does it hold the weights its settings ask for? No Keras here: the command
line refuses a file that is not a model before any engine loads.
"""

import zipfile
from pathlib import Path

from keras_vae import untrusted
from keras_vae.errors import DamagedFileError, ModelFileError
from keras_vae.model.config import ModelConfig

_VAE_REGISTERED_NAME = "keras_vae>VAE"
_WEIGHTS_FILE = "model.weights.h5"
#: What a keras-vae model file holds, and nothing else.
_MEMBERS = {"metadata.json", "config.json", _WEIGHTS_FILE}
# The fewest bytes a stored weight takes (float16 or bfloat16).
_MIN_BYTES_PER_WEIGHT = 2


def check_archive(path):
    """Raises `ModelFileError` unless `path` holds a keras-vae model that is
    safe to load.

    Nothing the file declares is believed: its members are inflated under a
    cap (`untrusted.read_member`), its settings are checked to be numbers in
    their documented ranges, the weights they ask for must fit in the bytes
    the file holds, and the weights file's arrays must have the shapes the
    settings imply, with their data stored (`untrusted.check_weights_file`).
    Memory stays within a small multiple of the file's size.

    Returns:
        `path` as a `Path`.
    """
    read_settings(path)
    return Path(path)


def read_settings(path):
    """The checked `ModelConfig` of a keras-vae model file (see `check_archive`).

    Raises:
        ModelFileError: as `check_archive`.
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
            return _check_members(path, archive)
    except ModelFileError:
        raise
    except DamagedFileError as error:
        raise ModelFileError(str(error)) from None
    except Exception as error:  # zipfile raises many types for a damaged archive
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ModelFileError(
            f"{path}: corrupt .keras archive ({type(error).__name__}: {reason})"
        ) from None


def _check_members(path, archive):
    names = archive.namelist()
    if "config.json" not in names:
        raise ModelFileError(f"{path}: a zip archive but not a Keras model (no config.json)")
    unexpected = sorted(set(names) - _MEMBERS)
    if unexpected or len(names) != len(set(names)):
        raise ModelFileError(
            f"{path}: holds members a keras-vae model does not ({', '.join(unexpected[:3]) or 'duplicates'})"
        )
    config = untrusted.parse_json(
        untrusted.read_member(archive, "config.json", path), f"{path}:config.json"
    )
    if "metadata.json" in names:
        untrusted.parse_json(
            untrusted.read_member(archive, "metadata.json", path), f"{path}:metadata.json"
        )
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if registered != _VAE_REGISTERED_NAME:
        kind = registered or (config.get("class_name") if isinstance(config, dict) else None)
        raise ModelFileError(f"{path}: a Keras model of class {kind!r}, not a keras-vae VAE")
    settings = _settings(path, config.get("config"))
    weights_bytes = (
        untrusted.check_stored_member(archive, _WEIGHTS_FILE, path) if _WEIGHTS_FILE in names else 0
    )
    _check_weights_fit(path, settings, weights_bytes)
    with archive.open(_WEIGHTS_FILE) as weights:
        untrusted.check_weights_file(
            weights, settings.weight_shapes(), f"{path}:{_WEIGHTS_FILE}", weights_bytes
        )
    return settings


def _settings(path, settings):
    """The file's `ModelConfig`, checked: types, documented ranges, coherence."""
    if not isinstance(settings, dict):
        raise ModelFileError(f"{path}: unreadable model settings (no config)")
    try:
        return ModelConfig.from_dict(settings).check()
    except ValueError as error:
        raise ModelFileError(f"{path}: unreadable model settings ({error})") from None


def _check_weights_fit(path, settings, weights_bytes):
    """Refuses settings that ask for more weights than the file holds.

    Keras builds the model from `config.json` before it reads the weights,
    so a file whose settings ask for billions of weights would allocate them
    first. The networks' size follows from the settings by arithmetic
    (`ModelConfig.parameter_count`), checked here before anything is built,
    against the bytes the file really holds (`check_stored_member`).
    """
    weights = settings.parameter_count()
    if weights * _MIN_BYTES_PER_WEIGHT > weights_bytes:
        raise ModelFileError(
            f"{path}: its settings ask for {weights:,} weights but its weights file "
            f"holds {weights_bytes:,} bytes; refused before building the model"
        )
