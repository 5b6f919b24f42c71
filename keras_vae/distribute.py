"""Data parallelism on every backend: one flag, `--devices`, and the engines' own machinery.

Each backend splits the global batch over devices its own way; this module
picks the way and hides the difference from `train` and `evaluation`:

- **JAX**: `keras.distribution.DataParallel` over the first N devices (the
  model's variables replicated, each batch split along its first axis). Keras
  compiles the training step for the device mesh; the step itself is
  unchanged.
- **TensorFlow**: `tf.distribute.MirroredStrategy` over the first N GPUs;
  the training step divides each replica's loss by the number of replicas
  (`steps.tensorflow_train_step`), as Keras's own step does.
- **PyTorch**: Keras 3 has no managed data parallelism for `fit` on torch,
  so N processes started by `torchrun` each train on their shard of the data
  with `batch_size / N` images per step, and the training step averages
  their gradients with `torch.distributed.all_reduce` before the optimizer
  step (`steps.torch_train_step`): gloo on CPUs, NCCL on GPUs.

On a machine without accelerators, JAX and TensorFlow split the CPU into N
virtual devices (`jax_num_cpu_devices`, logical CPU devices), which is how
the tests check that N devices train like one; it is not faster.

The global batch (`--batch-size`) is split evenly: it must divide by N, and
the training and validation images are cut to a multiple of N (at most N - 1
images fewer), so that every batch, the last partial one included, divides
too. One process (the chief) writes the run folder; every model use outside
`fit` (pictures, saving, test numbers) runs on one device.
"""

import contextlib
import os
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_vae.errors import UserError

ALL = "all"


def parse_devices(value):
    """`--devices`: a positive device count, or `"all"`.

    Returns:
        An int >= 1, or `"all"`.

    Raises:
        UserError: anything else.
    """
    text = str(value).strip().lower()
    if text == ALL:
        return ALL
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1 or str(count) != text:
        raise UserError(f"--devices must be a positive number or 'all', got {value!r}")
    return count


@dataclass
class Topology:
    """Where training runs: devices, processes, and this process's place.

    Attributes:
        devices: the devices the global batch is split over (N).
        processes: the processes training together (torch: one per device).
        rank: this process's index, 0 for the chief that writes the run.
        names: the devices, e.g. `["cpu:0", "cpu:1"]`.
        strategy: TensorFlow's `MirroredStrategy` (None elsewhere).
        distribution: Keras's `DataParallel` (JAX; None elsewhere).
        collectives: how the processes talk outside the training step:
            `"torch"` (torch.distributed), `"jax"` (JAX's multi-process
            runtime), or None for one process.
        virtual_cpus: True for JAX's virtual CPU devices in one process.
    """

    devices: int = 1
    processes: int = 1
    rank: int = 0
    names: list = field(default_factory=list)
    strategy: object = None
    distribution: object = None
    collectives: str = None
    virtual_cpus: bool = False

    def fit_callbacks(self):
        """The callbacks `fit` needs on this topology (after any restoring one).

        torch's processes start from the chief's state (`JoinProcesses`);
        JAX's virtual CPU devices take one step at a time (`OneStepAtATime`).
        """
        from keras_vae import callbacks

        if self.collectives == "torch":
            return [callbacks.JoinProcesses(self.rank)]
        if self.virtual_cpus:
            return [callbacks.OneStepAtATime()]
        return []

    @property
    def chief(self):
        """True for the process that writes the run folder and the reports."""
        return self.rank == 0

    @property
    def parallel(self):
        """True when the batch is split over more than one device."""
        return self.devices > 1

    def describe(self):
        """One line for the log, e.g. `2 devices (cpu:0, cpu:1)`."""
        names = f" ({', '.join(self.names)})" if self.names else ""
        processes = f", {self.processes} processes" if self.processes > 1 else ""
        return f"{self.devices} device{'s' if self.devices > 1 else ''}{names}{processes}"

    def as_dict(self):
        """The topology for `config.json`."""
        return {"devices": self.devices, "processes": self.processes, "names": self.names}

    @contextlib.contextmanager
    def scope(self):
        """The block in which models are built, compiled and trained in parallel."""
        if self.strategy is not None:
            with self.strategy.scope():
                yield
        elif self.distribution is not None:
            with self.distribution.scope():
                yield
        else:
            yield

    def evaluation_scope(self):
        """The block in which models are loaded and run for `evaluation`.

        One process: its devices (`scope`). Several processes: each evaluates
        its own share of the images on its own device, alone.
        """
        if self.processes == 1:
            return self.scope()
        return one_device()

    def check_batch_size(self, batch_size, flag="--batch-size"):
        """This process's share of the global batch.

        Returns:
            `batch_size / processes`: the batch `fit` gets in this process.

        Raises:
            UserError: the global batch does not split evenly over the devices.
        """
        if batch_size % self.devices:
            raise UserError(
                f"{flag} {batch_size} does not divide by the {self.devices} devices; "
                f"choose a multiple of {self.devices}"
            )
        return batch_size // self.processes

    def even(self, array):
        """The first rows of `array`, as many as a multiple of the devices."""
        if array is None:
            return None
        return array[: len(array) - len(array) % self.devices]

    def shard(self, array):
        """This process's share of `array` (cut with `even` first): every
        `processes`-th row, starting at `rank`; the whole array for one process."""
        array = self.even(array)
        if array is None or self.processes == 1:
            return array
        return array[self.rank :: self.processes]

    def agree(self, work):
        """Runs `work()` on the chief; every process raises the `UserError` it raised.

        The chief's checks (the run folder, its lock) decide for all: the
        other processes would otherwise wait for it in the first collective.
        Returns `work()`'s result on the chief, None elsewhere.
        """
        if self.processes == 1:
            return work()
        result, message = None, ""
        if self.chief:
            try:
                result = work()
            except UserError as error:
                message = str(error)
        message = self._broadcast_text(message)
        if message:
            raise UserError(message)
        return result

    def _broadcast_text(self, text):
        """The chief's `text`, on every process."""
        if self.collectives == "torch":
            import torch.distributed as dist

            box = [text]
            dist.broadcast_object_list(box, src=0)
            return box[0]
        from jax.experimental import multihost_utils

        data = np.zeros(4096, dtype=np.uint8)
        encoded = text.encode()[:4096]
        data[: len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        data = np.asarray(multihost_utils.broadcast_one_to_all(data))
        return bytes(data).rstrip(b"\0").decode(errors="replace")

    def sum_over_processes(self, array):
        """The sum of a NumPy array over the processes (float64), on every process."""
        array = np.asarray(array, dtype="float64")
        if self.processes == 1:
            return array
        if self.collectives == "torch":
            import torch
            import torch.distributed as dist

            tensor = torch.from_numpy(array.copy())
            dist.all_reduce(tensor)
            return tensor.numpy()
        from jax.experimental import multihost_utils

        # float64 crosses as two float32 halves: JAX computes in 32 bits by default.
        high = array.astype("float32")
        low = (array - high.astype("float64")).astype("float32")
        gathered = np.asarray(multihost_utils.process_allgather(np.stack([high, low])))
        return (gathered[:, 0].astype("float64") + gathered[:, 1].astype("float64")).sum(0)

    @contextlib.contextmanager
    def local_view(self, model):
        """A block in which `model` (or a one-device copy of it, where only all
        processes together can run it: JAX over several processes) is used
        by one process alone, e.g. for the chief's pictures."""
        if self.collectives != "jax":
            yield model
            return
        from keras_vae.model import fresh_copy

        with one_device():
            yield fresh_copy(model)

    def finish(self):
        """Ends the process group after training (torch); the chief goes on alone."""
        if self.collectives == "torch":
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
        elif self.collectives == "jax":
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("keras_vae: training done")


@contextlib.contextmanager
def one_device():
    """A block without Keras's global distribution: models built in it live on one device."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def setup(requested=1):
    """Prepares this process for training or evaluating on `requested` devices.

    Call it before any model is built (and, for virtual CPU devices, before
    the backend has run anything). `requested=1` changes nothing.

    Args:
        requested: a device count or `"all"` (see `parse_devices`).

    Returns:
        A `Topology`.

    Raises:
        UserError: more devices than present, a count torchrun did not
            start, or parallel torch without torchrun.
    """
    requested = parse_devices(requested)
    backend = keras.backend.backend()
    if backend == "torch":
        return _setup_torch(requested)
    if requested == 1:
        return Topology(names=_names_of_default_devices())
    if backend == "jax":
        return _setup_jax(requested)
    return _setup_tensorflow(requested)


def _names_of_default_devices():
    from keras_vae.backend import list_devices

    return list_devices()[:1]


#: On a machine without accelerators: one virtual device per CPU core at most.
_VIRTUAL_CPUS = "CPU core and no accelerator (one virtual device per core at most)"


def _cpu_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _too_many(requested, present, kind):
    noun, _, rest = kind.partition(" and ")
    plural = "s" if present != 1 else ""
    detail = f" and {rest}" if rest else ""
    return UserError(
        f"--devices {requested} but this machine has {present} {noun}{plural}{detail}; "
        f"use --devices {max(present, 1)} or fewer"
    )


#: Keras's variables for JAX processes that train together (`keras.distribution.initialize`).
JAX_PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def _setup_jax_processes(requested):
    """Several JAX processes (hosts), joined by `keras.distribution.initialize`."""
    import jax

    address = os.environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    try:
        keras.distribution.initialize()  # reads JAX_PROCESS_VARIABLES
    except Exception as error:  # noqa: BLE001  (JAX raises several kinds)
        raise UserError(f"could not join the JAX processes at {address}: {error}") from None
    devices = jax.devices()
    count = len(devices) if requested == ALL else requested
    if count != len(devices):
        raise UserError(
            f"--devices {requested}, but the {jax.process_count()} JAX processes hold "
            f"{len(devices)} devices and train on all of them: give --devices {len(devices)} (or all)"
        )
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Topology(
        devices=count, processes=jax.process_count(), rank=jax.process_index(),
        names=[f"{d.platform}:{d.id}" for d in devices], distribution=distribution,
        collectives="jax",
    )


def _setup_jax(requested):
    import jax

    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        return _setup_jax_processes(requested)
    if requested != ALL and requested <= _cpu_cores():
        # Only the CPU platform takes a device count; with accelerators the
        # default devices are theirs and this count is unused.
        with contextlib.suppress(RuntimeError):  # the CPU backend already started
            if jax.config.jax_num_cpu_devices < requested:
                jax.config.update("jax_num_cpu_devices", requested)
    devices = jax.devices()
    count = len(devices) if requested == ALL else requested
    if count > len(devices):
        if devices[0].platform == "cpu":
            raise _too_many(requested, _cpu_cores(), _VIRTUAL_CPUS)
        raise _too_many(requested, len(devices), f"{devices[0].platform.upper()} device")
    chosen = devices[:count]
    if count == 1:
        return Topology(names=[f"{d.platform}:{d.id}" for d in chosen])
    distribution = keras.distribution.DataParallel(devices=chosen)
    return Topology(
        devices=count,
        names=[f"{d.platform}:{d.id}" for d in chosen],
        distribution=distribution,
        virtual_cpus=chosen[0].platform == "cpu",
    )


def _setup_tensorflow(requested):
    from keras_vae.backend import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        count = len(gpus) if requested == ALL else requested
        if count > len(gpus):
            raise _too_many(requested, len(gpus), "GPU")
        names = [f"/gpu:{i}" for i in range(count)]
    else:
        count = 1 if requested == ALL else requested
        cpu = tf.config.list_physical_devices("CPU")[0]
        wanted = [tf.config.LogicalDeviceConfiguration()] * count
        try:
            configured = tf.config.get_logical_device_configuration(cpu) or [None]
            if len(configured) < count <= _cpu_cores():
                tf.config.set_logical_device_configuration(cpu, wanted)
        except RuntimeError:  # TensorFlow's runtime already started
            pass
        present = len(tf.config.list_logical_devices("CPU"))
        if count > present:
            raise _too_many(requested, min(present, _cpu_cores()) if present > 1 else _cpu_cores(), _VIRTUAL_CPUS)
        names = [f"/cpu:{i}" for i in range(count)]
    if count == 1:
        return Topology(names=[names[0].lstrip("/")])
    strategy = tf.distribute.MirroredStrategy(names)
    return Topology(
        devices=count, names=[name.lstrip("/") for name in names], strategy=strategy
    )


def _setup_torch(requested):
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    count = world if requested == ALL else requested
    if world == 1 and count > 1:
        raise UserError(
            f"--devices {count} on the torch backend needs one process per device: "
            f"launch with `torchrun --nproc-per-node {count} scripts/train.py ...` "
            f"(or `python -m torch.distributed.run ...`)"
        )
    if count != world:
        raise UserError(
            f"torchrun started {world} processes but --devices is {count}; "
            f"give --devices {world} (or all)"
        )
    cuda = torch.cuda.is_available()
    if world == 1:
        return Topology(names=_names_of_default_devices())
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise _too_many(world, torch.cuda.device_count(), "GPU")
        torch.cuda.set_device(local_rank)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    names = [f"cuda:{i}" if cuda else f"cpu (process {i})" for i in range(world)]
    return Topology(devices=world, processes=world, rank=rank, names=names, collectives="torch")


def batch_multiple():
    """The number of rows every batch given to a model must divide by.

    Keras's JAX `DataParallel` splits each batch evenly over its devices;
    TensorFlow's strategies and one device take any batch.
    """
    if keras.backend.backend() != "jax":
        return 1
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    return int(np.prod(distribution.device_mesh.shape))


def predict(network, inputs, batch_size):
    """`network.predict(inputs)` for any number of rows, on one device or many.

    Under a JAX `DataParallel` the rows are padded to a multiple of the
    devices (and the batch size rounded to one) and the padding's outputs
    dropped; elsewhere this is `predict` itself.

    Args:
        network: a Keras model.
        inputs: an array, or a list of arrays with the same number of rows.
        batch_size: rows per forward pass.
    """
    multiple = batch_multiple()
    if multiple == 1:
        return network.predict(inputs, batch_size=batch_size, verbose=0)
    arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    padded = [pad_rows(np.asarray(array), multiple)[0] for array in arrays]
    rows = len(arrays[0])
    batch_size = max(multiple, batch_size - batch_size % multiple)
    outputs = network.predict(
        padded if isinstance(inputs, (list, tuple)) else padded[0], batch_size=batch_size, verbose=0
    )
    if isinstance(outputs, (list, tuple)):
        return [output[:rows] for output in outputs]
    return outputs[:rows]


def pad_rows(array, multiple):
    """`array` with its last row repeated until its length divides by `multiple`.

    Returns:
        `(padded, n)`: the padded array and the original number of rows, so
        that `outputs[:n]` drops what the padding produced.
    """
    n = len(array)
    extra = -n % multiple
    if not extra:
        return array, n
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)]), n


def decorrelate_noise(model, rank):
    """Gives this process's sampling layers a noise stream of their own.

    Every process builds the model from the same seed (the same weights);
    without this, process r would draw the same sampling and binarization
    noise as process 0 for its different images.
    """
    if not rank:
        return
    for layer in model._flatten_layers():
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state = keras.ops.convert_to_numpy(generator.state.value)
            generator.state.assign(state + np.array([rank * 7919, 0], dtype=state.dtype))
