"""What the engines share: the steps' inputs, losses and trackers, and Keras's
global distribution (one device, or batches split over a mesh).

The loss itself comes from `VAE.compute_losses` (`losses.objective`) on every
engine; only the gradient step differs, and lives in each engine's file.
"""

import contextlib

import keras
import numpy as np


def step_inputs(data):
    """The model's inputs in a batch given to `fit`/`evaluate` as `x` or `(x,)`:
    images, or `(images, labels)` for a conditional VAE."""
    return keras.utils.unpack_x_y_sample_weight(data)[0]


def training_losses(model, inputs):
    """The losses of one training step; then the KL warm-up counts the step."""
    losses = model.compute_losses(inputs, training=True)
    model.advance_warmup()
    return losses


def update_trackers(model, losses):
    """Adds a batch's losses to the model's mean trackers; returns the logs."""
    for tracker in model.metrics:
        tracker.update_state(losses[tracker.name])
    return {tracker.name: tracker.result() for tracker in model.metrics}


@contextlib.contextmanager
def keras_global(get, put, value):
    """A block in which one of Keras's global settings (`get()`) is `value`."""
    previous = get()
    put(value)
    try:
        yield
    finally:
        put(previous)


def one_device():
    """A block without Keras's global distribution: models built in it live on one device."""
    return keras_global(keras.distribution.distribution, keras.distribution.set_distribution, None)


def dtype_policy(name):
    """A block in which Keras's global dtype policy is `name` (the layers built in it)."""
    return keras_global(keras.config.dtype_policy, keras.config.set_dtype_policy, name)


def batch_multiple():
    """The number of rows every batch given to a model must divide by.

    Keras's `DataParallel` (JAX) splits each batch evenly over its devices;
    TensorFlow's strategies and one device take any batch.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    return int(np.prod(distribution.device_mesh.shape))
