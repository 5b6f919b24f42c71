"""Shared fixtures: the data directory, a small real MNIST subset, subprocesses.

The suite runs under whatever `KERAS_BACKEND` is set; the README's test
command runs it once per backend.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SHARED = ROOT.parent / "shared"
BACKENDS = ("tensorflow", "jax", "torch")

# Use the prepared TFDS directory beside the checkout when no other is set.
if "TFDS_DATA_DIR" not in os.environ and (SHARED / "tfds").is_dir():
    os.environ["TFDS_DATA_DIR"] = str(SHARED / "tfds")

import keras_vae  # noqa: E402

keras_vae.start()  # before Keras: checks the backend, imports TensorFlow quietly
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from keras_vae import cli, data  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Leaves out the tests marked `any_backend` when `KERAS_VAE_ONCE_DONE` is set.

    Their result does not depend on `KERAS_BACKEND` (they prepare data from
    files, or run a benchmark that picks its own backend): `tests/run.sh`
    runs them with the first backend only.
    """
    if not os.environ.get("KERAS_VAE_ONCE_DONE"):
        return
    once = [item for item in items if item.get_closest_marker("any_backend")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("any_backend")]


# Child processes this pass started: count and seconds, printed at the end.
# Under pytest-xdist (`tests/run.sh` runs two workers) each worker counts its
# own and hands them to the controller, which prints the sum.
CHILDREN = {"count": 0, "seconds": 0.0}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["children"] = dict(CHILDREN)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # the xdist controller: a worker finished
    counted = getattr(node, "workeroutput", {}).get("children", {})
    CHILDREN["count"] += counted.get("count", 0)
    CHILDREN["seconds"] += counted.get("seconds", 0.0)


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"child processes: {CHILDREN['count']}, {CHILDREN['seconds']:.0f} s"
    )


@pytest.fixture(scope="session")
def backend():
    return keras.backend.backend()


@pytest.fixture(scope="session")
def mnist_subset():
    """2000 training and 500 test images of real MNIST."""
    return data.load_dataset("mnist", num_train=2000, num_test=500)


def child_environment(backend=None, env=None):
    """The environment of a child process (see `run_python`)."""
    child_env = dict(os.environ)
    # A user's shell: no log level that this process's imports (JAX sets one)
    # chose for themselves.
    child_env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    child_env["KERAS_BACKEND"] = backend or keras.backend.backend()
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    return child_env


def run_python_together(jobs, timeout=900):
    """Runs `python ARGS` for each `(args, backend)` of `jobs` at the same time.

    Returns:
        The `(returncode, stderr)` of each, in order.
    """
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, *map(str, args)], env=child_environment(backend),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        for args, backend in jobs
    ]
    try:
        errors = [process.communicate(timeout=timeout)[1] for process in processes]
        return [(process.returncode, stderr) for process, stderr in zip(processes, errors)]
    finally:
        for process in processes:
            process.kill()
        CHILDREN["count"] += len(jobs)
        CHILDREN["seconds"] += time.perf_counter() - start


def run_python(args, backend=None, env=None, timeout=600, cwd=None):
    """Runs `python ARGS` in a fresh process; returns the CompletedProcess.

    Args:
        args: arguments after `python`.
        backend: `KERAS_BACKEND` for the child (default: this process's).
        env: extra environment variables (a value of None removes one).
    """
    child_env = child_environment(backend, env)
    start = time.perf_counter()
    try:
        return subprocess.run(
            [sys.executable, *map(str, args)],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or ROOT,
        )
    finally:
        CHILDREN["count"] += 1
        CHILDREN["seconds"] += time.perf_counter() - start


def run_here(script, *args, cwd=None):
    """Runs `python scripts/SCRIPT ARGS` in this process (`cli.launch`).

    For a test that checks what a command prints and writes rather than its
    process (`run_script` starts one): the same code from the parsed line
    on, without starting Python and the engine again.

    Returns:
        A `CompletedProcess` with the exit status, stdout and stderr.
    """
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.launch(Path(script).stem, script, [str(arg) for arg in args])
            except SystemExit as exit:  # argparse's own errors
                code = exit.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def run_script(name, *args, **kwargs):
    """Runs `python scripts/NAME ARGS` (see `run_python`)."""
    return run_python([SCRIPTS / name, *args], **kwargs)


def error_lines(result):
    """The stderr lines a user sees, without TensorFlow/absl log noise."""
    noise = ("WARNING: All log messages", "I0000", "W0000", "E0000")
    return [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(noise)
    ]


def one_error_line(result, *fragments):
    """Asserts a user error: exit 2, one line on stderr naming the fragments."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = error_lines(result)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def gradient(function, value):
    """d sum(function(x)) / dx at `value` (a NumPy array), with the backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: ops.sum(function(t)))(value))
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(value)
        with tf.GradientTape() as tape:
            total = ops.sum(function(variable))
        return tape.gradient(total, variable).numpy()
    import torch

    tensor = torch.tensor(value, requires_grad=True)
    ops.sum(function(tensor)).backward()
    return tensor.grad.numpy()


def committed_epoch(folder):
    """The last epoch a run folder's checkpoint committed (0: none)."""
    try:
        return json.loads((Path(folder) / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def kill_after_epoch(command, folder, epoch, timeout=300):
    """Starts `command` (a training run into `folder`), kills it with SIGKILL
    once it committed `epoch`, and returns the epoch it had committed."""
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while committed_epoch(folder) < epoch and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return committed_epoch(folder)
