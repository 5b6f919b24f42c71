"""The TensorFlow engine: its gradient step, and `MirroredStrategy` for --devices."""

import contextlib

import keras

from keras_vae.backend import import_tensorflow_quietly
from keras_vae.layers import SeedStream
from keras_vae.engines.common import step_inputs, training_losses, update_trackers
from keras_vae.parallel import ALL, VIRTUAL_CPUS, Topology, cpu_cores, too_late, too_many

tf = import_tensorflow_quietly()


@contextlib.contextmanager
def replica_noise(model):
    """Each replica of a step draws its own noise.

    Under a `MirroredStrategy` the seed generators' states are mirrored: one
    value, read by every replica, so without this row i of every replica's
    shard would get the same noise. Inside the block, every seed a replica
    draws has the replica's index added to its first word (`SeedStream`):
    the seeds (first + r, draw) of replica r are seeds no other replica
    draws, and TensorFlow's stateless generators scramble a seed into an
    unrelated stream. With one replica nothing changes.

    Args:
        model: the model (or layer) whose seed generators to move.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        yield
        return
    streams = [
        layer.seed_generator for layer in model._flatten_layers()
        if isinstance(getattr(layer, "seed_generator", None), SeedStream)
    ]
    replica = tf.cast(context.replica_id_in_sync_group, "int64")
    for stream in streams:
        stream.offset = tf.stack([replica, tf.constant(0, "int64")])
    try:
        yield
    finally:  # the offset belongs to this trace of the step only
        for stream in streams:
            stream.offset = None


def train_step(model, data):
    inputs = step_inputs(data)
    # Under tf.distribute (a MirroredStrategy scope) each replica computes the
    # loss of its share of the batch and the optimizer sums the replicas'
    # gradients, so each replica's loss is divided by their number, as Keras's
    # own train_step does; with one replica this divides by 1. The loss is
    # scaled as the optimizer says (a no-op but under mixed_float16).
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape, replica_noise(model):
        losses = training_losses(model, inputs)
        loss = model.optimizer.scale_loss(losses["loss"] / replicas)
    gradients = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply(gradients, model.trainable_weights)
    return update_trackers(model, losses)


def test_step(model, data):
    with replica_noise(model):
        losses = model.compute_losses(step_inputs(data), training=False)
    return update_trackers(model, losses)


def launch(requested, batch_size=None):
    """Nothing to start: this engine trains on its devices in this process
    (`setup`). Returns None."""
    return None


def list_devices():
    return keras.distribution.list_devices()


def one_device(network):
    """True when `network` runs on one device (no `tf.distribute` strategy of
    several replicas, which `predict` splits each batch over)."""
    return network.distribute_strategy.num_replicas_in_sync == 1


def _cpu_devices(requested):
    """Names of `requested` logical CPU devices, made if the runtime has not started."""
    count = 1 if requested == ALL else requested
    cpu = tf.config.list_physical_devices("CPU")[0]
    started = False
    try:
        configured = tf.config.get_logical_device_configuration(cpu) or [None]
        if len(configured) < count <= cpu_cores():
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
    except RuntimeError:  # TensorFlow's runtime already started
        started = True
    present = len(tf.config.list_logical_devices("CPU"))
    if count > present:
        if started and count <= cpu_cores():
            raise too_late(requested, present, "TensorFlow")
        raise too_many(requested, min(present, cpu_cores()) if present > 1 else cpu_cores(), VIRTUAL_CPUS)
    return [f"/cpu:{i}" for i in range(count)]


def setup(requested):
    """`MirroredStrategy` over the first N GPUs, or N logical CPU devices."""
    if requested == 1:
        return Topology(names=list_devices()[:1])
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        count = len(gpus) if requested == ALL else requested
        if count > len(gpus):
            raise too_many(requested, len(gpus), "GPU")
        names = [f"/gpu:{i}" for i in range(count)]
    else:
        names = _cpu_devices(requested)
    if len(names) == 1:
        return Topology(names=[names[0].lstrip("/")])
    return Topology(
        devices=len(names),
        names=[name.lstrip("/") for name in names],
        distribution=tf.distribute.MirroredStrategy(names),
    )
