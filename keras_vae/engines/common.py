"""What the engines' training and test steps share: inputs, losses, trackers.

The loss itself comes from `VAE.compute_losses` (`losses.objective`) on every
engine; only the gradient step differs, and lives in each engine's file.
"""

import keras


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
