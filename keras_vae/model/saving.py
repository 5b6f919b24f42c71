"""Saving and loading models: the one safe loader.

Every model load goes through `load_model`, which checks the archive before
Keras reads it (`archive.check_archive`: a keras-vae model, and no more
weights asked for than the file holds) and lets Keras load it with
`safe_mode=True`. Saves are atomic.
"""


import keras

from keras_vae.backend import import_tensorflow_quietly
from keras_vae.errors import ModelFileError
from keras_vae.files import atomic_path
from keras_vae.model.archive import check_archive
from keras_vae.model.vae import VAE  # registers keras_vae>VAE for Keras's loader

def save_model(model, path):
    """Saves `model` as a `.keras` file, atomically.

    Args:
        model: a `keras.Model`.
        path: destination; must end in `.keras`.
    """
    # Keras's saving loads TensorFlow (for its file helpers) when installed.
    import_tensorflow_quietly()
    with atomic_path(path, expected_bytes=file_bytes(model)) as temporary:
        model.save(temporary)


def file_bytes(model):
    """About the most a saved `model` takes on disk: float32 weights and
    Adam's two moments, and room for the archive's other members."""
    return 12 * model.count_params() + (1 << 16)


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
    path = check_archive(path)
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
