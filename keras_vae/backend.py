"""Checks the Keras backend chosen by `KERAS_BACKEND` before Keras loads."""

import contextlib
import importlib
import importlib.util
import logging
import os
import sys

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


#: TensorFlow's C++ log level that keras-vae sets unless the user set one:
#: errors that matter reach Python as exceptions; the lines it hides are the
#: CUDA probe's on a machine without a GPU, which read like failures.
QUIET_TF_LOG_LEVEL = "3"


@contextlib.contextmanager
def _stderr_to_devnull():
    """Sends file descriptor 2 to /dev/null: C++ code writes there directly."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow without the lines it prints while loading.

    TensorFlow writes its start-up notes (oneDNN, "Could not find cuda
    drivers") to stderr before its log level applies. Unless the user asked
    for TensorFlow's logs (`TF_CPP_MIN_LOG_LEVEL` below 3), the import runs
    with stderr closed; an import that fails still raises as usual.

    Returns:
        The `tensorflow` module.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != QUIET_TF_LOG_LEVEL:
        return importlib.import_module("tensorflow")
    with _stderr_to_devnull():
        tensorflow = importlib.import_module("tensorflow")
    logging.getLogger("tensorflow").addFilter(_not_retracing_notes)
    return tensorflow


def _not_retracing_notes(record):
    """False for TensorFlow's notes that a function was traced again.

    Keras's `predict` traces once per batch shape, and the pictures of a run
    decode batches of several sizes (64 samples, 10 reconstructions, the
    manifold's grid): a handful of traces that TensorFlow reports as a
    warning about "excessive" retracing.
    """
    return "triggered tf.function retracing" not in record.getMessage()
