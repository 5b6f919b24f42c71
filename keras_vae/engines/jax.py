"""The JAX engine: its pure gradient step, `DataParallel` for --devices, and
several processes (hosts) joined by `keras.distribution.initialize`."""

import os

import jax
import keras
import numpy as np
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils

from keras_vae.engines.common import step_inputs, training_losses, update_trackers
from keras_vae.errors import UserError
from keras_vae.parallel import ALL, VIRTUAL_CPUS, Processes, Topology, cpu_cores, too_late, too_many

#: Keras's variables for JAX processes that train together (`keras.distribution.initialize`).
PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


# The step: pure functions of the variables ----------------------------------


def stateless_losses(model, trainable, non_trainable, inputs, training):
    """Pure version of the step's losses; also returns the new state.

    As `Layer.stateless_call` does, the variables take the given values in a
    `StatelessScope`, and what the step assigns (the sampling layers' seeds,
    the warm-up's counter) comes back as the new non-trainable values.
    """
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += zip(model.non_trainable_variables, non_trainable)
    with keras.StatelessScope(state_mapping=mapping) as scope:
        if training:
            losses = training_losses(model, inputs)
        else:
            losses = model.compute_losses(inputs, training=False)
    non_trainable = [scope.get_current_value(v) for v in model.non_trainable_variables]
    return losses["loss"], (losses, non_trainable)


def _update_trackers(model, metrics_variables, losses):
    """`update_trackers` on explicit metric variables; returns them updated."""
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = update_trackers(model, losses)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]


def _scaled_loss(model, trainable, non_trainable, optimizer_variables, inputs):
    """`stateless_losses` of a training step, its loss scaled as the optimizer says
    (a `LossScaleOptimizer` under mixed_float16 keeps its scale in a variable)."""
    loss, aux = stateless_losses(model, trainable, non_trainable, inputs, True)
    mapping = list(zip(model.optimizer.variables, optimizer_variables))
    with keras.StatelessScope(state_mapping=mapping):
        return model.optimizer.scale_loss(loss), aux


def train_step(model, state, data):
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    gradient_fn = jax.value_and_grad(_scaled_loss, argnums=1, has_aux=True)
    (_, (losses, non_trainable)), gradients = gradient_fn(
        model, trainable, non_trainable, optimizer_variables, step_inputs(data)
    )
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    logs, metrics_variables = _update_trackers(model, metrics_variables, losses)
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    _, (losses, non_trainable) = stateless_losses(
        model, trainable, non_trainable, step_inputs(data), False
    )
    logs, metrics_variables = _update_trackers(model, metrics_variables, losses)
    return logs, (trainable, non_trainable, metrics_variables)


# Devices and processes ------------------------------------------------------


def launch(requested, batch_size=None):
    """Nothing to start: this engine trains on its devices in this process
    (`setup`). Returns None."""
    return None


def list_devices():
    return keras.distribution.list_devices()


def one_device(network):
    """True when no Keras distribution splits batches over devices."""
    return keras.distribution.distribution() is None


class OneStepAtATime(keras.callbacks.Callback):
    """Waits for each step to finish before the next is dispatched: the
    training steps, and the validation steps `fit` runs after each epoch.

    For JAX's virtual CPU devices (`--devices N` on a machine without
    accelerators): they share one thread pool, and with many steps queued
    XLA's in-process all-reduce can wait for a participant that never gets
    a thread; its 40-second rendezvous timeout then aborts the process
    (reproduced with `benchmarks/run.py --backends jax --devices 2` on all
    60 000 images, and with `benchmarks/resume.py` in the validation steps
    while the training steps waited). Waiting for each step prevents it.
    """

    def on_train_batch_end(self, batch, logs=None):
        jax.block_until_ready(logs)

    def on_test_batch_end(self, batch, logs=None):
        jax.block_until_ready(logs)


class JaxProcesses(Processes):
    """JAX's multi-process runtime, outside the training step."""

    #: How long the other processes wait for the chief's work after training
    #: (a chief that dies is noticed sooner, by the runtime's heartbeat).
    END_TIMEOUT_S = 24 * 3600

    def broadcast_text(self, text):
        data = np.zeros(4096, dtype=np.uint8)
        encoded = text.encode()[:4096]
        data[: len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        data = np.asarray(multihost_utils.broadcast_one_to_all(data))
        return bytes(data).rstrip(b"\0").decode(errors="replace")

    def sum(self, array):
        # float64 crosses as two float32 halves: JAX computes in 32 bits by default.
        high = array.astype("float32")
        low = (array - high.astype("float64")).astype("float32")
        gathered = np.asarray(multihost_utils.process_allgather(np.stack([high, low])))
        return (gathered[:, 0].astype("float64") + gathered[:, 1].astype("float64")).sum(0)

    def finish(self):
        multihost_utils.sync_global_devices("keras_vae: training done")

    def join_at_end(self):
        """A process that returns waits for the others in JAX's shutdown
        barrier, for at most its `shutdown_timeout_seconds` (300 s), and then
        aborts both: the others wait for the chief here instead, in the
        runtime's own barrier (the one JAX's multi-process tests end with)."""
        try:
            jax_distributed.global_state.client.wait_at_barrier(
                "keras_vae: run folder written", self.END_TIMEOUT_S * 1000
            )
        except Exception as error:  # noqa: BLE001  (JaxRuntimeError: the chief left or timed out)
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise UserError(
                f"process {jax.process_index()}: the chief (process 0) did not finish the run folder ({reason})"
            ) from None


def _names(devices):
    return [f"{d.platform}:{d.id}" for d in devices]


def _setup_processes(requested):
    """Several JAX processes (hosts), joined by `keras.distribution.initialize`."""
    address = os.environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    try:
        keras.distribution.initialize()  # reads PROCESS_VARIABLES
    except Exception as error:  # noqa: BLE001  (JAX raises several kinds)
        raise UserError(f"could not join the JAX processes at {address}: {error}") from None
    devices = jax.devices()
    count = len(devices) if requested == ALL else requested
    if count != len(devices):
        raise UserError(
            f"--devices {requested}, but the {jax.process_count()} JAX processes hold "
            f"{len(devices)} devices and train on all of them: give --devices {len(devices)} (or all)"
        )
    return Topology(
        devices=count, processes=jax.process_count(), rank=jax.process_index(),
        names=_names(devices), group=JaxProcesses(), spans_devices=True,
        distribution=keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False),
    )


def setup(requested):
    """`DataParallel` over the first N devices (virtual CPU devices without accelerators)."""
    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        return _setup_processes(requested)
    started = False
    if requested != ALL and requested <= cpu_cores():
        # Only the CPU platform takes a device count; with accelerators the
        # default devices are theirs and this count is unused.
        try:
            if jax.config.jax_num_cpu_devices < requested:
                jax.config.update("jax_num_cpu_devices", requested)
        except RuntimeError:  # the CPU backend already started
            started = True
    devices = jax.devices()
    count = len(devices) if requested == ALL else requested
    if count > len(devices):
        if devices[0].platform == "cpu" and started:
            raise too_late(requested, len(devices), "JAX")
        if devices[0].platform == "cpu":
            raise too_many(requested, cpu_cores(), VIRTUAL_CPUS)
        raise too_many(requested, len(devices), f"{devices[0].platform.upper()} device")
    chosen = devices[:count]
    if count == 1:
        return Topology(names=_names(chosen))
    virtual_cpus = chosen[0].platform == "cpu"
    return Topology(
        devices=count, names=_names(chosen), spans_devices=True,
        distribution=keras.distribution.DataParallel(devices=chosen),
        callbacks=lambda: [OneStepAtATime()] if virtual_cpus else [],
    )
