"""The engine before Keras loads: which backend, what it can do, starting it quietly.

Nothing here imports Keras: the command line parses its flags, and reports a
bad one, before any engine loads (`start`). The package and `keras_vae.model`
load their Keras-using modules on first use (`lazy_exports`).
"""

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


#: Export format -> the backends that export it (`keras_vae.export`).
EXPORT_BACKENDS = {"tf_saved_model": ("tensorflow", "jax"), "onnx": ("tensorflow", "torch")}
EXPORT_FORMATS = tuple(EXPORT_BACKENDS)
#: (format, backend) -> packages the export needs beyond the backend's own.
EXPORT_PACKAGES = {("onnx", "tensorflow"): ("onnx", "tf2onnx"), ("onnx", "torch"): ("onnx",)}


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


def check_export_format(export_format, backend):
    """Raises `BackendError` unless `backend` can export `export_format` here.

    The message names the backends that can, and the packages to install.
    """
    if export_format not in EXPORT_BACKENDS:
        raise BackendError(
            f"unknown format {export_format!r}; choose from {', '.join(EXPORT_FORMATS)}"
        )
    able = EXPORT_BACKENDS[export_format]
    if backend not in able:
        raise BackendError(
            f"--format {export_format} is not supported on the {backend} backend; run "
            f"with KERAS_BACKEND={' or '.join(able)} (the .keras file loads on every backend)"
        )
    missing = [
        name for name in EXPORT_PACKAGES.get((export_format, backend), ())
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise BackendError(
            f"--format {export_format} on the {backend} backend needs "
            f"{', '.join(missing)}: pip install {' '.join(missing)}"
        )


def start():
    """Checks `KERAS_BACKEND` and, for TensorFlow, imports it quietly, before Keras.

    Call it before the first import of Keras: every entry point does (the
    commands after parsing their flags, the package's lazy names).

    Returns:
        The backend's name.

    Raises:
        BackendError: as `check_backend`.
    """
    name = check_backend()
    # Quieten TensorFlow's C++ logging unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LOG_LEVEL)
    if name == "tensorflow":  # Keras imports it: do it quietly first
        import_tensorflow_quietly()
    return name


def lazy_exports(package, exports):
    """A module `__getattr__` (PEP 562) that imports `exports`' modules on first use.

    Args:
        package: the package's `__name__`.
        exports: name -> the module (absolute) that defines it.

    Returns:
        The `__getattr__` function: it starts the engine (`start`), imports
        the name's module, and returns the name.
    """

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        start()
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__


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
