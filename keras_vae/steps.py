"""The training and test steps of `VAE`, one gradient step per backend.

Keras lets a model customize `fit()` by overriding `train_step`, but how to
take a gradient differs by backend (see the keras.io guides "Customizing what
happens in fit()"): TensorFlow records a `GradientTape`, PyTorch runs autograd
on the loss, and JAX needs a pure function of the variables, so its steps take
and return the model's `state`. Only that part is written per backend; the
loss comes from `VAE.compute_losses` / `losses.objective` in every case, and
each step scales it with `optimizer.scale_loss` before the gradient, as
Keras's own steps do (a no-op but under the `mixed_float16` policy, whose
`LossScaleOptimizer` unscales the gradients again).
"""

import keras


def _inputs(data):
    """The model's inputs in a batch given to `fit`/`evaluate` as `x` or `(x,)`:
    images, or `(images, labels)` for a conditional VAE."""
    return keras.utils.unpack_x_y_sample_weight(data)[0]


def _training_losses(model, inputs):
    """The losses of one training step; then the KL warm-up counts the step."""
    losses = model.compute_losses(inputs, training=True)
    model.advance_warmup()
    return losses


def _update_trackers(model, losses):
    """Adds a batch's losses to the model's mean trackers; returns the logs."""
    for tracker in model.metrics:
        tracker.update_state(losses[tracker.name])
    return {tracker.name: tracker.result() for tracker in model.metrics}


# TensorFlow -----------------------------------------------------------------


def tensorflow_train_step(model, data):
    import tensorflow as tf

    inputs = _inputs(data)
    # Under tf.distribute (a MirroredStrategy scope) each replica computes the
    # loss of its share of the batch and the optimizer sums the replicas'
    # gradients, so each replica's loss is divided by their number, as Keras's
    # own train_step does; with one replica this divides by 1.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
        losses = _training_losses(model, inputs)
        loss = model.optimizer.scale_loss(losses["loss"] / replicas)
    gradients = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply(gradients, model.trainable_weights)
    return _update_trackers(model, losses)


# PyTorch --------------------------------------------------------------------


def torch_train_step(model, data):
    import torch

    inputs = _inputs(data)
    model.zero_grad()
    losses = _training_losses(model, inputs)
    model.optimizer.scale_loss(losses["loss"]).backward()
    variables = model.trainable_weights
    gradients = [variable.value.grad for variable in variables]
    with torch.no_grad():
        # Data parallel (torchrun): each process's loss is the mean over its
        # share of the global batch, so the mean of their gradients is the
        # global batch's gradient, and the mean of their losses its loss.
        torch_mean_over_processes(gradients)
        losses = _torch_averaged(losses)
        if fused_adam_applies(model.optimizer, gradients, variables):
            torch_fused_adam(model.optimizer, gradients, variables)
        else:
            model.optimizer.apply(gradients, variables)
    return _update_trackers(model, losses)


def _torch_processes():
    """The number of `torch.distributed` processes training together (1 alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def torch_mean_over_processes(tensors):
    """Replaces each tensor by its mean over the `torch.distributed` processes.

    One all-reduce of the tensors flattened together; nothing happens
    without a process group (one process). Tensors that are None are left.
    """
    import torch
    import torch.distributed as dist

    if _torch_processes() == 1:
        return tensors
    present = [tensor for tensor in tensors if tensor is not None]
    flat = torch.cat([tensor.reshape(-1) for tensor in present])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for tensor in present:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()
    return tensors


def _torch_averaged(losses):
    """A dict of scalar losses, each averaged over the processes (detached);
    `losses` itself for one process."""
    import torch

    if _torch_processes() == 1:
        return losses
    names = list(losses)
    values = torch.stack([losses[name].detach().float() for name in names])
    torch_mean_over_processes([values])
    return dict(zip(names, values))


def fused_adam_applies(optimizer, gradients, variables):
    """True when `torch_fused_adam` computes exactly `optimizer.apply`.

    That is a built Keras `Adam` (not a subclass) with none of the options
    the fused kernel leaves out: AMSGrad, weight decay, clipping, EMA, loss
    scaling, gradient accumulation; a gradient for every variable, and no
    variable with a constraint or overwritten by its gradient. Not
    inside `torch.compile` (`jit_compile=True`), which fuses Keras's own
    update and cannot trace the kernel's host-side step count.
    """
    import torch

    return (
        not torch.compiler.is_compiling()
        and isinstance(optimizer, keras.optimizers.Adam)
        and type(optimizer).__module__.startswith("keras.")
        and optimizer.built
        and not optimizer.amsgrad
        and not optimizer.weight_decay
        and optimizer.clipnorm is None
        and optimizer.clipvalue is None
        and optimizer.global_clipnorm is None
        and not optimizer.use_ema
        and optimizer.loss_scale_factor is None
        and not optimizer.gradient_accumulation_steps
        and all(gradient is not None for gradient in gradients)
        and all(
            variable.constraint is None
            and not getattr(variable, "overwrite_with_gradient", False)
            for variable in variables
        )
    )


def torch_fused_adam(optimizer, gradients, variables):
    """Keras's Adam update, in one call of PyTorch's fused Adam kernel.

    Keras's Adam on the torch backend chains a dozen `torch._foreach_*` ops
    with temporaries, a third of the default VAE's step on a CPU;
    `torch._fused_adam_` does the same update in one pass (the timings are
    in docs/performance.md).
    The two place epsilon differently: Keras divides by `sqrt(v) + eps` and
    scales the step by `sqrt(1 - beta_2^t)`, PyTorch divides by
    `sqrt(v) / sqrt(1 - beta_2^t) + eps`; giving PyTorch
    `eps / sqrt(1 - beta_2^t)` makes them the same update.
    """
    import torch

    step = int(optimizer.iterations.value) + 1
    index = optimizer._get_variable_index
    torch._fused_adam_(
        [variable.value for variable in variables],
        gradients,
        [optimizer._momentums[index(variable)].value for variable in variables],
        [optimizer._velocities[index(variable)].value for variable in variables],
        [],
        [torch.tensor(float(step))] * len(variables),
        lr=float(optimizer.learning_rate),
        beta1=optimizer.beta_1,
        beta2=optimizer.beta_2,
        weight_decay=0.0,
        eps=optimizer.epsilon / (1.0 - optimizer.beta_2**step) ** 0.5,
        amsgrad=False,
        maximize=False,
    )
    optimizer.iterations.assign_add(1)


def stateful_test_step(model, data):
    """The test step of TensorFlow and PyTorch: no gradient, same losses."""
    losses = model.compute_losses(_inputs(data), training=False)
    if keras.backend.backend() == "torch":
        losses = _torch_averaged(losses)
    return _update_trackers(model, losses)


# JAX ------------------------------------------------------------------------


def _jax_losses(model, trainable, non_trainable, inputs, training):
    """Pure version of the step's losses; also returns the new state.

    As `Layer.stateless_call` does, the variables take the given values in a
    `StatelessScope`, and what the step assigns (the sampling layers' seeds,
    the warm-up's counter) comes back as the new non-trainable values.
    """
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += zip(model.non_trainable_variables, non_trainable)
    with keras.StatelessScope(state_mapping=mapping) as scope:
        if training:
            losses = _training_losses(model, inputs)
        else:
            losses = model.compute_losses(inputs, training=False)
    non_trainable = [scope.get_current_value(v) for v in model.non_trainable_variables]
    return losses["loss"], (losses, non_trainable)


def _jax_update_trackers(model, metrics_variables, losses):
    """`_update_trackers` on explicit metric variables; returns them updated."""
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = _update_trackers(model, losses)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]


def _jax_scaled_loss(model, trainable, non_trainable, optimizer_variables, inputs):
    """`_jax_losses` of a training step, its loss scaled as the optimizer says.

    A `LossScaleOptimizer` (which `compile` wraps around the optimizer under
    the `mixed_float16` policy) multiplies the loss by its current scale, an
    optimizer variable, and divides the gradients back in `stateless_apply`;
    any other optimizer leaves the loss as it is.
    """
    loss, aux = _jax_losses(model, trainable, non_trainable, inputs, True)
    mapping = list(zip(model.optimizer.variables, optimizer_variables))
    with keras.StatelessScope(state_mapping=mapping):
        return model.optimizer.scale_loss(loss), aux


def jax_train_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    gradient_fn = jax.value_and_grad(_jax_scaled_loss, argnums=1, has_aux=True)
    (_, (losses, non_trainable)), gradients = gradient_fn(
        model, trainable, non_trainable, optimizer_variables, _inputs(data)
    )
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    logs, metrics_variables = _jax_update_trackers(
        model, metrics_variables, losses
    )
    return logs, (
        trainable,
        non_trainable,
        optimizer_variables,
        metrics_variables,
    )


def jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    _, (losses, non_trainable) = _jax_losses(
        model, trainable, non_trainable, _inputs(data), False
    )
    logs, metrics_variables = _jax_update_trackers(
        model, metrics_variables, losses
    )
    return logs, (trainable, non_trainable, metrics_variables)


#: backend name -> (train_step, test_step), each taking the model first.
STEPS = {
    "tensorflow": (tensorflow_train_step, stateful_test_step),
    "torch": (torch_train_step, stateful_test_step),
    "jax": (jax_train_step, jax_test_step),
}
