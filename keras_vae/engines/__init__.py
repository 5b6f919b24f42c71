"""Everything one engine knows, one file each: its gradient step, its devices,
its collectives and its own callbacks.

Keras lets a model customize `fit()` by overriding `train_step`, but how to
take a gradient differs by backend (the keras.io guides "Customizing what
happens in fit()"): TensorFlow records a `GradientTape`, PyTorch runs autograd
on the loss, and JAX needs a pure function of the variables. Each engine
module has the same interface:

    train_step(model, ...), test_step(model, ...)   called by `VAE`
    launch(requested, batch_size=None) -> status or None   start worker processes (torch)
    setup(requested) -> parallel.Topology             --devices N on this engine
    list_devices()                                    e.g. ["cpu:0"]
    one_device(network)                               no batch split over devices

`current` is the module of the backend Keras runs on (`KERAS_BACKEND`),
imported by name, so that only that engine's package is loaded.
"""

import importlib

import keras

from keras_vae.parallel import ALL, all_on_cpus, parse_devices

#: The engine modules, one per Keras backend.
ENGINES = ("tensorflow", "jax", "torch")
BACKEND = keras.backend.backend()
if BACKEND not in ENGINES:  # keras_vae.backend.check_backend refuses others first
    raise ImportError(f"keras-vae has no engine for the {BACKEND!r} backend")
#: This process's engine: only its module is imported (it imports its engine).
current = importlib.import_module(f"{__name__}.{BACKEND}")


def setup(requested=1):
    """Prepares this process to train or evaluate on `requested` devices.

    Call it before any model is built (and, for virtual CPU devices, before
    the backend has run anything). `requested=1` changes nothing.

    Args:
        requested: a device count or `"all"` (see `parallel.parse_devices`).

    Returns:
        A `parallel.Topology`.

    Raises:
        UserError: more devices than present, a count torchrun did not
            start, or parallel torch without torchrun.
    """
    requested = parse_devices(requested)
    topology = current.setup(requested)
    if requested == ALL and all(name.startswith("cpu") for name in topology.names):
        topology.note = all_on_cpus(topology)  # said, not chosen silently
    return topology


def launch(requested, batch_size=None):
    """Starts the worker processes that train on `requested` devices, where
    the engine trains in processes of its own (torch, without torchrun), and
    waits for them.

    Args:
        requested: a device count or `"all"`.
        batch_size: the global batch to check against the count, or None
            (evaluation).

    Returns:
        Their exit status, or None where this process trains itself (then
        call `setup`).

    Raises:
        UserError: a device count or batch size that cannot be run, before
            any worker starts.
    """
    return current.launch(parse_devices(requested), batch_size)


def list_devices():
    """The devices Keras computes on, e.g. `["cpu:0"]` or `["cuda:0"]`."""
    return current.list_devices()
