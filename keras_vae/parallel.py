"""Data parallelism, engine-neutral: `--devices`, where a run trains, and rows.

One flag, `--devices N`, and each engine's own machinery behind it (the
engine files in `keras_vae.engines` set it up and return a `Topology`):

- **JAX**: `keras.distribution.DataParallel` over the first N devices (the
  variables replicated, each batch split along its first axis).
- **TensorFlow**: `tf.distribute.MirroredStrategy` over the first N devices;
  the training step divides each replica's loss by the number of replicas.
- **PyTorch**: N processes started by `torchrun` each train on their shard
  with `batch_size / N` images per step; the training step averages their
  gradients with an all-reduce (gloo on CPUs, NCCL on GPUs).

On a machine without accelerators, JAX and TensorFlow split the CPU into N
virtual devices, which is how the tests check that N devices train like one;
it is not faster.

The global batch (`--batch-size`) is split evenly: it must divide by N, and
the training and validation images are cut to a multiple of N. One process
(the chief) writes the run folder. Nothing here imports Keras: the engines
build a `Topology` with their own machinery inside.
"""

import contextlib
import dataclasses
import os
import socket
import time

import numpy as np

from keras_vae.errors import UserError

ALL = "all"
#: How long a process waits to reach the coordinator of a multi-host run (JAX's own wait).
JOIN_TIMEOUT_S = 300
#: Why TensorFlow trains on one host: Keras 3's `fit` under `MultiWorkerMirroredStrategy`.
KERAS_MULTI_WORKER_BUG = "https://github.com/keras-team/keras/issues/20585"
#: On a machine without accelerators: one virtual device per CPU core at most.
VIRTUAL_CPUS = "CPU core and no accelerator (one virtual device per core at most)"


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


def cpu_cores():
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def too_many(requested, present, kind):
    """The `UserError` for `--devices` beyond what this machine has."""
    noun, _, rest = kind.partition(" and ")
    plural = "s" if present != 1 else ""
    detail = f" and {rest}" if rest else ""
    return UserError(
        f"--devices {requested} but this machine has {present} {noun}{plural}{detail}; "
        f"use --devices {max(present, 1)} or fewer"
    )


def all_on_cpus(topology):
    """What `--devices all` chose on a machine without accelerators, in a line."""
    plural = "s" if topology.devices != 1 else ""
    return (
        f"--devices all found no accelerator, so it trains on {topology.devices} CPU device{plural}; "
        "--devices N gives N virtual CPU devices (TensorFlow, JAX) or takes the N processes "
        "torchrun started (torch), to try a parallel run"
    )


def too_late(requested, present, engine):
    """The `UserError` for a device count asked for after the engine started
    with fewer devices (virtual CPU devices are made before anything runs)."""
    plural = "s" if present != 1 else ""
    return UserError(
        f"--devices {requested}: {engine} already runs on {present} device{plural}; "
        f"ask for the devices before anything runs on it (keras_vae.engines.setup({requested}) "
        "first, before building a model or loading data)"
    )


def reach_coordinator(address, process_id, timeout=JOIN_TIMEOUT_S):
    """Checks that the processes of a multi-host run can meet at `address`.

    Process 0 serves the coordinator: its port must be free on this host.
    Any other process waits until the coordinator's port answers, for at
    most `timeout` seconds. (JAX would otherwise abort the process with a
    gRPC status after its own 300 s, or at once for a port in use.)

    Args:
        address: `HOST:PORT` of process 0.
        process_id: this process's index.
        timeout: seconds to wait for process 0.

    Raises:
        UserError: a malformed address, a port in use, or no coordinator in time.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}")
    if process_id == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", int(port)))
            except OSError as error:
                raise UserError(
                    f"--coordinator {address}: process 0 serves the coordinator on port {port}, "
                    f"which this host cannot open ({error.strerror or error}); choose another port"
                ) from None
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"process {process_id} could not reach the coordinator at {address} within "
                    f"{timeout:g} s ({error.strerror or error}): start process 0 with the same "
                    "--coordinator, and check that this host reaches it"
                ) from None
            time.sleep(0.5)


class Processes:
    """How the processes of one run talk outside the training step.

    An engine that trains with several processes implements it (torch's
    `torch.distributed`, JAX's multi-process runtime); one process needs none.
    """

    def broadcast_text(self, text):
        """The chief's `text`, on every process."""
        raise NotImplementedError

    def sum(self, array):
        """The float64 sum of a NumPy array over the processes, on every process."""
        raise NotImplementedError

    def finish(self):
        """Ends the group after training; the chief goes on alone."""
        raise NotImplementedError

    def join_at_end(self):
        """Every process waits here until the chief, which writes the run
        folder after training (the test numbers, `--final-iw-samples`, the
        figures), arrives too: for an engine whose departing processes would
        otherwise wait for the others only so long (JAX). Nothing to wait
        for by default."""


@dataclasses.dataclass
class Topology:
    """Where training runs: devices, processes, and this process's place.

    Attributes:
        devices: the devices the global batch is split over (N).
        processes: the processes training together (torch: one per device).
        rank: this process's index, 0 for the chief that writes the run.
        names: the devices, e.g. `["cpu:0", "cpu:1"]`.
        distribution: the engine's scope for building and training on the
            devices (TensorFlow's strategy, Keras's `DataParallel`), or None.
        group: the `Processes` of a multi-process run, or None.
        callbacks: function returning the callbacks `fit` needs on this
            topology, after any that restores a checkpoint.
        spans_devices: True when the trained model only runs on batches
            split over all devices (Keras's `DataParallel`): pictures and
            saving use a one-device copy.
    """

    devices: int = 1
    processes: int = 1
    rank: int = 0
    names: list = dataclasses.field(default_factory=list)
    distribution: object = None
    group: Processes = None
    callbacks: object = list
    spans_devices: bool = False
    note: str = ""  # a word on how the devices were chosen, for the log

    @property
    def chief(self):
        """True for the process that writes the run folder and the reports."""
        return self.rank == 0

    @property
    def parallel(self):
        """True when the batch is split over more than one device."""
        return self.devices > 1

    def describe(self):
        """Where it computes, for the log: `cpu:0`, or `data parallel over 2
        devices (cpu:0, cpu:1)`."""
        note = f"; {self.note}" if self.note else ""
        if not self.parallel:
            return (", ".join(self.names) or "one device") + note
        processes = f", {self.processes} processes" if self.processes > 1 else ""
        return f"data parallel over {self.devices} devices ({', '.join(self.names)}){processes}{note}"

    def as_dict(self):
        """The topology for `config.json`."""
        return {"devices": self.devices, "processes": self.processes, "names": self.names}

    def scope(self):
        """The block in which models are built, compiled and trained in parallel."""
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()

    def check_batch_size(self, batch_size, flag="--batch-size"):
        """This process's share of the global batch, `batch_size / processes`.

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
        if self.group is None:
            return work()
        result, message = None, ""
        if self.chief:
            try:
                result = work()
            except UserError as error:
                message = str(error)
        message = self.group.broadcast_text(message)
        if message:
            raise UserError(message)
        return result

    def from_chief(self, text):
        """The chief's `text`, on every process."""
        return text if self.group is None else self.group.broadcast_text(text)

    def sum_over_processes(self, array):
        """The sum of a NumPy array over the processes (float64), on every process."""
        array = np.asarray(array, dtype="float64")
        return array if self.group is None else self.group.sum(array)

    def finish(self):
        """Ends the process group after training; the chief goes on alone."""
        if self.group is not None:
            self.group.finish()

    def join_at_end(self):
        """The processes leave together, once the chief wrote the run folder
        (`Processes.join_at_end`)."""
        if self.group is not None:
            self.group.join_at_end()


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
