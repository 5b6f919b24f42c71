"""The PyTorch engine: its autograd step with Keras's Adam fused into one
kernel, and the processes of a torchrun for --devices."""

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import keras
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException, Std
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from keras_vae.engines.common import step_inputs, training_losses, update_trackers
from keras_vae.errors import UserError
from keras_vae.parallel import ALL, Processes, Topology, cpu_cores, too_many


def train_step(model, data):
    inputs = step_inputs(data)
    model.zero_grad()
    losses = training_losses(model, inputs)
    model.optimizer.scale_loss(losses["loss"]).backward()
    variables = model.trainable_weights
    gradients = [variable.value.grad for variable in variables]
    with torch.no_grad():
        # Data parallel (torchrun): each process's loss is the mean over its
        # share of the global batch, so the mean of their gradients is the
        # global batch's gradient, and the mean of their losses its loss.
        mean_over_processes(gradients)
        losses = _averaged(losses)
        if fused_adam_applies(model.optimizer, gradients, variables):
            fused_adam(model.optimizer, gradients, variables)
        else:
            model.optimizer.apply(gradients, variables)
    return update_trackers(model, losses)


def test_step(model, data):
    losses = model.compute_losses(step_inputs(data), training=False)
    return update_trackers(model, _averaged(losses))


def _processes():
    """The number of `torch.distributed` processes training together (1 alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def mean_over_processes(tensors):
    """Replaces each tensor by its mean over the `torch.distributed` processes.

    One all-reduce of the tensors flattened together; nothing happens
    without a process group (one process). Tensors that are None are left.
    """
    if _processes() == 1:
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


def _averaged(losses):
    """A dict of scalar losses, each averaged over the processes (detached);
    `losses` itself for one process."""
    if _processes() == 1:
        return losses
    names = list(losses)
    values = torch.stack([losses[name].detach().float() for name in names])
    mean_over_processes([values])
    return dict(zip(names, values))


def fused_adam_applies(optimizer, gradients, variables):
    """True when `fused_adam` computes exactly `optimizer.apply`.

    That is a built Keras `Adam` (not a subclass) with none of the options
    the fused kernel leaves out: AMSGrad, weight decay, clipping, EMA, loss
    scaling, gradient accumulation; a gradient for every variable, and no
    variable with a constraint or overwritten by its gradient. Not inside
    `torch.compile` (`jit_compile=True`), which fuses Keras's own update and
    cannot trace the kernel's host-side step count.
    """
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


def fused_adam(optimizer, gradients, variables):
    """Keras's Adam update, in one call of PyTorch's fused Adam kernel.

    Keras's Adam on the torch backend chains a dozen `torch._foreach_*` ops
    with temporaries, a third of the default VAE's step on a CPU;
    `torch._fused_adam_` does the same update in one pass (the timings are
    in docs/performance.md). The two place epsilon differently: Keras
    divides by `sqrt(v) + eps` and scales the step by `sqrt(1 - beta_2^t)`,
    PyTorch divides by `sqrt(v) / sqrt(1 - beta_2^t) + eps`; giving PyTorch
    `eps / sqrt(1 - beta_2^t)` makes them the same update.
    """
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


# Devices and processes ------------------------------------------------------


def list_devices():
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu:0"]


def one_device(network):
    """Always: each torchrun process computes on its own device."""
    return True


def decorrelate_noise(model, rank, processes):
    """Gives this process's sampling layers a noise stream of their own.

    Every process builds the model from the same seed (the same weights);
    without this, process r would draw the same sampling and binarization
    noise as process 0 for its different images. Keras seeds PyTorch's
    generator with the sum of a seed state's two words (the second counts
    the draws), so the streams are the seeds `first + draw`, modulo 2^32:
    an offset of r * 2^32 / processes on the first word gives each process
    its own 2^32 / processes seeds, which no other process reaches before
    that many draws (2^31 training steps on two processes).

    Args:
        model: the model whose layers' `seed_generator`s to offset.
        rank: this process's rank.
        processes: how many processes train together.
    """
    if not rank:
        return
    offset = rank * (2**32 // processes)
    for layer in model._flatten_layers():
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state = keras.ops.convert_to_numpy(generator.state.value).astype("int64")
            state[0] = (state[0] + offset + 2**31) % 2**32 - 2**31  # wraps as int32 does
            generator.state.assign(state.astype(generator.state.dtype))


class JoinProcesses(keras.callbacks.Callback):
    """Starts the processes of a parallel torch run from one state.

    At the start of training (after the checkpoint of a resumed run was
    restored) every process takes the chief's weights, optimizer state and
    seed states (one broadcast), then gives its own seed states a range of
    seeds no other process draws (`decorrelate_noise`).

    Args:
        rank: this process's rank.
    """

    def __init__(self, rank):
        super().__init__()
        self.rank = rank

    def on_train_begin(self, logs=None):
        variables = list(self.model.variables)
        if self.model.optimizer is not None and self.model.optimizer.built:
            variables += self.model.optimizer.variables
        with torch.no_grad():
            for variable in variables:
                dist.broadcast(variable.value.data, src=0)
        decorrelate_noise(self.model, self.rank, dist.get_world_size())


class TorchProcesses(Processes):
    """`torch.distributed`, outside the training step."""

    def broadcast_text(self, text):
        box = [text]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, array):
        tensor = torch.from_numpy(array.copy())
        dist.all_reduce(tensor)
        return tensor.numpy()

    def finish(self):
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


#: Linux's prctl option: the signal a process gets when its parent exits.
PR_SET_PDEATHSIG = 1


def exit_with_launcher():
    """Ends this process when the launcher that started it (torchrun) dies.

    torchrun starts each worker as the leader of a session of its own, so
    a `kill -9` of torchrun alone would leave its workers training to the
    end, holding the run folder. On Linux the kernel sends the worker
    SIGKILL when its parent exits (`PR_SET_PDEATHSIG`; the checkpoint is
    committed atomically, so the run resumes from its last epoch); a worker
    whose parent is already gone leaves at once. Elsewhere, nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before the call
        os.kill(os.getpid(), signal.SIGKILL)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(requested, batch_size=None):
    """Starts one worker process per device on this host, running this
    command again, and waits for them: `--devices N` without torchrun
    (`train.py`, `evaluate.py`).

    Checked here first, before any worker starts (one line, exit 2): the
    device count against the GPUs (or, without any, the CPU cores) and the
    batch size, where there is one, against the count. The workers are
    started by torch's own launcher (`torch.distributed.launcher`, what
    torchrun runs) on 127.0.0.1;
    the chief's standard output is the command's, the workers' errors go to
    log files: a failure is told in one line (the chief's error, else
    another worker's), the chief's warnings are repeated at the end. For
    several hosts, use torchrun.

    Args:
        requested: the device count, or `"all"`.
        batch_size: the global batch (training), or None.

    Returns:
        The workers' exit status (0, or the first failure's), or None where
        this process trains itself (one device, or under torchrun).
    """
    if "WORLD_SIZE" in os.environ:  # under torchrun, or a worker of ours
        return None
    present = torch.cuda.device_count() or cpu_cores()
    count = present if requested == ALL and torch.cuda.is_available() else (1 if requested == ALL else requested)
    if count == 1:
        return None
    if count > present:
        raise too_many(requested, present, "GPU" if torch.cuda.is_available() else "CPU core")
    if batch_size is not None:
        Topology(devices=count).check_batch_size(batch_size)
    logs = tempfile.mkdtemp(prefix="keras-vae-workers-")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=count, rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0, run_id=f"keras-vae-{os.getpid()}",
        # The chief's standard output is the command's; every worker's
        # error output is kept, so that a failure is told in one line.
        logs_specs=DefaultLogsSpecs(log_dir=logs, redirects={0: Std.ERR, **{r: Std.ALL for r in range(1, count)}}),
    )
    # The launcher logs each worker's end in lines of its own: the chief's
    # error line (or the note below) says what failed.
    for name in [*logging.root.manager.loggerDict, "torch.distributed.elastic"]:
        if name.startswith("torch.distributed.elastic"):  # each has a level of its own
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, entrypoint=sys.executable)(*sys.orig_argv[1:])
    except SignalException:  # Ctrl-C (or a kill) of this command: the workers were stopped
        raise KeyboardInterrupt from None
    except ChildFailedError as error:
        statuses = sorted(f.exitcode for f in error.failures.values() if f.exitcode > 0)
        told = [_worker_errors(logs, rank) for rank in range(count)]
        line = next((lines[-1] for lines in told if lines), None)  # the chief's first
        print(line or f"a worker process failed; the workers' output is in {logs}", file=sys.stderr)
        return statuses[0] if statuses else 1
    for path in Path(logs).rglob("stderr.log"):  # the chief's warnings, now it is done
        if path.parent.name == "0":
            sys.stderr.write(path.read_text(errors="replace"))
    shutil.rmtree(logs, ignore_errors=True)
    return 0


def _worker_errors(logs, rank):
    """The error lines (`PROG: error: ...`) worker `rank` wrote to its log."""
    for path in Path(logs).rglob("stderr.log"):
        if path.parent.name == str(rank):
            return [line for line in path.read_text(errors="replace").splitlines() if ": error: " in line]
    return []


def setup(requested):
    """The processes torchrun (or `launch`) started, one per device (Keras 3
    has no managed data parallelism for `fit` on torch)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    count = world if requested == ALL else requested
    if world == 1 and count > 1:
        raise UserError(
            f"--devices {count} on the torch backend needs one process per device: "
            f"start them with keras_vae.engines.launch({count}) (what --devices {count} does), "
            f"or run the script under `torchrun --nproc-per-node {count}`"
        )
    if count != world:
        raise UserError(
            f"torchrun started {world} processes but --devices is {count}; "
            f"give --devices {world} (or all)"
        )
    if world == 1:
        return Topology(names=list_devices()[:1])
    exit_with_launcher()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise too_many(world, torch.cuda.device_count(), "GPU")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    names = [f"cuda:{i}" if cuda else f"cpu (process {i})" for i in range(world)]
    return Topology(
        devices=world, processes=world, rank=rank, names=names, group=TorchProcesses(),
        callbacks=lambda: [JoinProcesses(rank)],
    )
