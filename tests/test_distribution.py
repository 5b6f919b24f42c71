"""Data parallel training and evaluation: N devices do what one device does.

Two virtual CPU devices stand in for two GPUs on JAX and TensorFlow, and two
torch processes on 127.0.0.1 (gloo, started by torchrun) for two GPUs on
torch. Every check compares with one device in a fresh process.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, SCRIPTS, one_error_line, run_here, run_python
from keras_vae.model import load_model, save_model
from keras_vae import VAE

# One epoch of SGD on 512 real MNIST images in two global batches of 256, on
# N devices (argv[1]) or, with argv[3] == "keras", under the Keras convention
# a user would follow without keras-vae's flag (JAX: set_distribution first).
# The chief saves the weight update, the logged loss, the model file and 16
# images generated on the N devices.
PARITY_WORKER = """
import sys
import numpy as np
import keras_vae
from keras_vae import data, engines
from keras_vae.run.trainer import local_view

devices, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
topology = engines.setup(devices)
import keras
if mode == "keras":
    keras.distribution.set_distribution(topology.distribution)
    topology.distribution = None
keras.utils.set_random_seed(0)
x = data.load_dataset("mnist", num_train=512, num_test=16).x_train
with topology.scope():
    model = keras_vae.VAE(latent_dim=4, hidden_dim=32, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
joined = topology.callbacks()
with topology.scope():
    history = model.fit(
        topology.shard(x), batch_size=topology.check_batch_size(256), epochs=1,
        shuffle=False, verbose=0, callbacks=joined,
    )
    with local_view(topology)(model) as local:
        images = local.generate(16, seed=3)
after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
update = np.concatenate([(a - b).ravel() for a, b in zip(after, before)])
suffix = "" if topology.chief else f".{topology.rank}"
# Every process saves (for JAX processes saving is a collective).
model.save(out + suffix + ".keras")
np.savez(out + suffix + ".npz", update=update, loss=history.history["loss"][0], images=images)
topology.finish()
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(processes):
    """The command that starts `processes` torch processes on 127.0.0.1."""
    return [
        "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}",
    ]


def run_on(devices, args, backend, timeout=600, **kwargs):
    """`python ARGS` on `devices` devices: under torchrun on torch."""
    launcher = torchrun(devices) if backend == "torch" and devices > 1 else []
    return run_python([*launcher, *args], backend=backend, timeout=timeout, **kwargs)


def run_jax_processes(commands, timeout=400):
    """Runs `commands` as JAX processes 0, 1, ... of one job on 127.0.0.1.

    Returns:
        `[(returncode, stderr)]`, one per process.
    """
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, *map(str, command)], cwd=ROOT,
            env={**os.environ, "KERAS_BACKEND": "jax",
                 "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES": str(len(commands)),
                 "KERAS_DISTRIBUTION_PROCESS_ID": str(rank)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for rank, command in enumerate(commands)
    ]
    try:
        errors = [process.communicate(timeout=timeout)[1] for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [(process.returncode, error) for process, error in zip(processes, errors)]


def parity_run(tmp_path, backend, devices, mode="flag"):
    out, worker = tmp_path / f"{mode}-{devices}", tmp_path / "worker.py"
    worker.write_text(PARITY_WORKER)  # a file: torchrun runs no -c
    result = run_on(devices, [worker, str(devices), str(out), mode], backend)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(f"{out}.npz"), f"{out}.keras"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["flag", "keras"])
def test_two_devices_take_the_one_device_step(tmp_path, backend, mode):
    if mode == "keras" and backend != "jax":
        pytest.skip("the user's own strategy scope on TensorFlow: test_mirrored_strategy_...")
    one, _ = parity_run(tmp_path, backend, 1)
    two, saved = parity_run(tmp_path, backend, 2, mode)
    norm_one, norm_two = np.linalg.norm(one["update"]), np.linalg.norm(two["update"])
    if backend == "jax":
        # Keras draws the noise of the global batch: the same update.
        assert np.linalg.norm(two["update"] - one["update"]) <= 1e-4 * norm_one
        assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-5)
    else:
        # Each replica or process draws its own noise: the same update in size.
        assert norm_two / norm_one == pytest.approx(1.0, abs=0.05)
        assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=0.05)
    # Saved on two devices, loaded on one: the images the two devices made.
    images = load_model(saved).generate(16, seed=3)
    np.testing.assert_allclose(images, two["images"], atol=1e-5)


@pytest.mark.slow
def test_two_jax_processes_train_like_one_process_with_two_devices(tmp_path, backend):
    if backend != "jax":
        pytest.skip("keras.distribution.initialize: JAX's multi-process runtime")
    two_devices, _ = parity_run(tmp_path, backend, 2)
    worker, out = tmp_path / "worker.py", tmp_path / "processes"
    ended = run_jax_processes([[worker, "2", out, "flag"]] * 2, timeout=300)
    assert [code for code, _ in ended] == [0, 0], ended[0][1][-2000:] + ended[1][1][-2000:]
    chief, other = np.load(f"{out}.npz"), np.load(f"{out}.1.npz")
    # One model: both processes hold the same weights after the step ...
    np.testing.assert_array_equal(chief["update"], other["update"])
    # ... and take the step of one process with two devices (each process
    # holds half of every global batch, so the noise meets other images).
    norm = np.linalg.norm(two_devices["update"])
    assert np.linalg.norm(chief["update"]) / norm == pytest.approx(1.0, abs=0.05)
    assert float(chief["loss"]) == pytest.approx(float(two_devices["loss"]), rel=0.05)
    images = load_model(f"{out}.keras").generate(16, seed=3)
    np.testing.assert_allclose(images, chief["images"], atol=1e-5)


MIRRORED_STEP = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_vae

def update_norm(scope):
    keras.utils.set_random_seed(0)
    with scope:
        model = keras_vae.VAE(latent_dim=4, hidden_dim=32)
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
    before = [np.array(w) for w in model.trainable_weights]
    x = np.random.default_rng(0).random((256, 28, 28, 1)).astype("float32")
    history = model.fit(x, batch_size=256, epochs=1, shuffle=False, verbose=0)
    after = [np.array(w) for w in model.trainable_weights]
    delta = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    return float(delta), float(history.history["loss"][0])

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
one, one_loss = update_norm(tf.distribute.get_strategy().scope())
two, two_loss = update_norm(strategy.scope())
print(json.dumps({"one": one, "two": two, "one_loss": one_loss, "two_loss": two_loss}))
"""


REPLICA_NOISE = """
import contextlib, json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_vae.engines.tensorflow import replica_noise
from keras_vae.layers import Sampling

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer = Sampling(seed=1)
zeros = tf.zeros((5000, 2))

def drawn(own_noise):
    @tf.function
    def draw():
        def one_replica():
            with replica_noise(layer) if own_noise else contextlib.nullcontext():
                return layer((zeros, zeros))
        return strategy.run(one_replica)
    draws = [strategy.experimental_local_results(draw()) for _ in range(2)]  # 10 000 rows each
    first, second = (np.concatenate([np.asarray(d[r]) for d in draws]) for r in (0, 1))
    return len(set(map(tuple, first)) & set(map(tuple, second))), len(set(map(tuple, first)))

shared, rows = drawn(True)
shared_before, _ = drawn(False)
print(json.dumps({"shared": shared, "rows": rows, "shared_before": shared_before}))
"""


def tensorflow_numbers(script, backend):
    """The JSON that `script`, run on TensorFlow in a process of its own
    (its logical devices are made before TensorFlow starts), prints last."""
    if backend != "tensorflow":
        pytest.skip("tf.distribute is TensorFlow's")
    result = run_python(["-c", script], backend="tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_tensorflow_replicas_draw_noise_no_other_replica_draws(backend):
    found = tensorflow_numbers(REPLICA_NOISE, backend)
    assert found["rows"] == 10_000  # ten thousand different rows of noise on each replica
    assert found["shared"] == 0  # and none of one replica's is the other's
    assert found["shared_before"] == 10_000  # the mirrored seed state alone: the same rows


@pytest.mark.slow
def test_mirrored_strategy_update_equals_the_one_device_update(backend):
    # A user's own MirroredStrategy scope, without keras-vae's flag.
    numbers = tensorflow_numbers(MIRRORED_STEP, backend)
    assert numbers["two"] / numbers["one"] == pytest.approx(1.0, abs=0.05)  # was 2.0
    assert numbers["two_loss"] == pytest.approx(numbers["one_loss"], rel=0.05)


@pytest.mark.slow
def test_evaluation_on_two_devices_gives_the_one_device_numbers(tmp_path, backend):
    model_path = tmp_path / "model.keras"
    save_model(VAE(latent_dim=4, hidden_dim=32, seed=0), model_path)
    results = []
    for devices in (1, 2):
        out = tmp_path / f"eval-{devices}.json"
        # 5 images (odd: one device waits in the last pass), k = 120 in chunks of 50.
        args = [model_path, "--num-examples", "5", "--iw-samples", "120", "--max-rows", "50",
                "--devices", str(devices), "--quiet", "--output", out]
        # One device in this process; two in a command of their own (their
        # virtual devices are made at the engine's start; on torch,
        # evaluate.py starts the two processes).
        if devices == 1:
            result = run_here(SCRIPTS / "evaluate.py", *args)
        else:
            result = run_python([SCRIPTS / "evaluate.py", *args], backend=backend)
        assert result.returncode == 0, result.stderr[-3000:]
        results.append(json.loads(out.read_text()))
    one, two = results
    assert two["devices"] == 2
    for key in ("iw_nll", "neg_elbo", "reconstruction", "kl"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
    assert two["active_units"] == one["active_units"]


def test_bad_device_requests_are_one_line(tmp_path, backend):
    train = [SCRIPTS / "train.py", "--epochs", "1", "--output-dir", tmp_path / "run"]
    one_error_line(run_python([*train, "--devices", "two"]), "--devices", "'two'")
    one_error_line(run_python([*train, "--devices", "0"]), "--devices must be a positive number", "'0'")
    # On torch, checked before any worker process starts.
    too_many = str(os.cpu_count() + 1)
    one_error_line(run_python([*train, "--devices", too_many]), f"--devices {too_many}", "or fewer")
    one_error_line(
        run_python([*train, "--devices", "2", "--batch-size", "127"]),
        "--batch-size 127", "2 devices",
    )
    joining = ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"]
    if backend == "jax":
        one_error_line(run_python([*train, *joining[:2]]), "give all three of --coordinator")
        one_error_line(run_python([*train, *joining[:4], "--process-id", "2"]), "--process-id must lie in [0, 2)")
        one_error_line(run_python([*train, "--coordinator", "10.0.0.1", *joining[2:]]), "must be HOST:PORT")
        # No process 0 at the coordinator: a timeout, not a hang (nor JAX's abort).
        alone = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2", "--process-id", "1"]
        one_error_line(run_python([*train, *alone, "--join-timeout", "1"]), "could not reach the coordinator", "within 1 s")
        with socket.socket() as busy:  # process 0 cannot serve on a port in use
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = ["--coordinator", f"127.0.0.1:{busy.getsockname()[1]}", *joining[2:]]
            one_error_line(run_python([*train, *taken]), "serves the coordinator", "choose another port")
    else:
        one_error_line(run_python([*train, *joining]), "join JAX processes", "keras-team/keras/issues/20585")
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.slow
def test_torchrun_with_another_device_count_is_refused(tmp_path, backend):
    if backend != "torch":
        pytest.skip("torchrun is torch's")
    result = run_on(
        2, [SCRIPTS / "train.py", "--devices", "3", "--output-dir", tmp_path / "run"], backend
    )
    assert result.returncode != 0
    # Each process says it in one line (torchrun then reports its children).
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert lines == ["train.py: error: torchrun started 2 processes but --devices is 3; "
                     "give --devices 2 (or all)"] * 2


def test_predictions_of_any_size_under_a_data_parallel_distribution(backend):
    # Keras's JAX DataParallel splits every batch evenly; keras-vae pads.
    from keras_vae import engines, parallel

    assert parallel.pad_rows(np.arange(5), 4)[0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert parallel.pad_rows(np.arange(4), 4)[1] == 4
    topology = parallel.Topology(devices=2, processes=2, rank=1)
    assert topology.shard(np.arange(7)).tolist() == [1, 3, 5]
    assert topology.check_batch_size(128) == 64
    assert engines.common.batch_multiple() == 1  # none set in this process
    assert keras.distribution.distribution() is None


@pytest.mark.parametrize("processes", [2, 3])
def test_torch_processes_draw_seeds_no_other_process_draws(backend, processes):
    """Keras seeds PyTorch's generator with the sum of a seed state's two
    words; each process's offset must give it seeds of its own, not the
    next process's stream 7919 draws later (as a fixed offset of 7919 gave)."""
    if backend != "torch":
        pytest.skip("torch's processes")
    from keras.src.backend.torch.random import torch_seed_generator  # Keras's seeding of torch

    from keras_vae import engines

    draws = {}
    for rank in range(processes):
        model = VAE(latent_dim=2, hidden_dim=8, seed=3, dynamic_binarization=True)
        engines.current.decorrelate_noise(model, rank, processes)
        generators = [layer.seed_generator for layer in model._flatten_layers() if hasattr(layer, "seed_generator")]
        assert len(generators) == 2  # sampling and binarization
        draws[rank] = [{torch_seed_generator(g).initial_seed() for _ in range(10_000)} for g in generators]
    for layer in range(2):
        for rank in range(1, processes):
            assert len(draws[rank][layer]) == 10_000
            assert not draws[rank][layer] & draws[0][layer], (rank, layer)


def test_devices_asked_for_after_the_engine_started_are_refused_as_such(backend):
    """Virtual CPU devices are made before the engine runs; asked for later,
    the answer says so (not "use --devices 2 or fewer" to whoever asked for 2)."""
    if backend == "torch":
        pytest.skip("torch makes no virtual devices (processes under torchrun)")
    from keras_vae import UserError, engines

    keras.ops.convert_to_numpy(keras.ops.ones(1) + 1)  # the engine runs in this process
    with pytest.raises(UserError, match=r"--devices 2: .* already runs on 1 device; ask for the devices before") as refused:
        engines.setup(2)
    assert "or fewer" not in str(refused.value)


def test_devices_all_on_a_machine_without_accelerators_says_what_it_chose(backend):
    from keras_vae import engines

    if any(not name.startswith("cpu") for name in engines.list_devices()):
        pytest.skip("this machine has an accelerator: --devices all takes it")
    topology = engines.setup("all")
    assert topology.note.startswith("--devices all found no accelerator, so it trains on")
    assert topology.note in topology.describe()  # the line every command prints at its start
    assert engines.setup(1).note == ""  # a count is taken as given
