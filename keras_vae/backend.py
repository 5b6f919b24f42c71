"""Checks the Keras backend chosen by `KERAS_BACKEND` before Keras loads."""

import importlib.util
import os

from keras_vae.errors import BackendError

#: Each supported backend, with the pip requirement that installs it.
SUPPORTED_BACKENDS = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "torch": "torch==2.13.0",
}


def check_backend(environ=os.environ):
    """Fails early and clearly when `KERAS_BACKEND` cannot work.

    Args:
        environ: the environment to read `KERAS_BACKEND` from.

    Returns:
        The backend's name (`"tensorflow"` when the variable is unset).

    Raises:
        BackendError: the name is not one of `SUPPORTED_BACKENDS`, or its
            package is not installed.
    """
    name = environ.get("KERAS_BACKEND", "").strip() or "tensorflow"
    supported = ", ".join(SUPPORTED_BACKENDS)
    if name not in SUPPORTED_BACKENDS:
        raise BackendError(
            f"KERAS_BACKEND={name!r} is not supported; use one of: {supported}."
        )
    if importlib.util.find_spec(name) is None:
        raise BackendError(
            f"KERAS_BACKEND={name!r} but the {name!r} package is not "
            f"installed; install it with `pip install {SUPPORTED_BACKENDS[name]}` "
            f"or choose another of: {supported}."
        )
    return name


def list_devices():
    """The devices Keras computes on, e.g. `["cpu:0"]` or `["cuda:0"]`."""
    import keras

    if keras.backend.backend() == "torch":  # no keras.distribution support
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu:0"]
    return keras.distribution.list_devices()
