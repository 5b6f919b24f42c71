"""Processes that start, end and fail together: one command per host on torch,
the end of a multi-process JAX run, killing a launcher, a resumed run that is
the uninterrupted one on two devices, and hosts that see different run folders.

On loopback processes (torch's gloo, JAX's multi-process runtime on
127.0.0.1) and virtual CPU devices; `tests/test_distribution.py` checks the
steps themselves. Apart from it so that pytest-xdist runs the two files side
by side.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, SCRIPTS, committed_epoch, kill_after_epoch, one_error_line, run_python
from keras_vae import data, evaluation
from keras_vae.model import load_model
from keras_vae.run import folder as run_folder
from test_distribution import run_jax_processes, run_on, torchrun


# JAX's shutdown barrier shortened from 300 s to 3 s, then the script: a
# process that leaves waits for the others that long, then aborts them all.
SHORT_SHUTDOWN = """
import functools, runpy, sys
import jax
jax.distributed.initialize = functools.partial(jax.distributed.initialize, shutdown_timeout_seconds=3)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_two_jax_processes_leave_together_after_the_chiefs_long_final_work(tmp_path, backend):
    if backend != "jax":
        pytest.skip("JAX's shutdown barrier")
    wrapper, folder = tmp_path / "short_shutdown.py", tmp_path / "run"
    wrapper.write_text(SHORT_SHUTDOWN)
    train = [
        SCRIPTS / "train.py", "--epochs", "1", "--num-train", "512", "--num-test", "500", "--hidden-dim", "32",
        "--latent-dim", "4", "--final-iw-samples", "5000", "--devices", "2", "--verbose", "0", "--output-dir", folder,
    ]
    ended = run_jax_processes([[wrapper, *train]] * 2)
    assert [code for code, _ in ended] == [0, 0], ended[0][1][-2000:] + ended[1][1][-2000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert np.isfinite(metrics["test_iw_nll"]) and metrics["test_iw_samples"] == 5000
    # The chief's work after training (the test loss, 5000 importance samples
    # of 500 images, the figures) outlasted the shortened shutdown timeout.
    written = [path.stat().st_mtime for path in folder.rglob("*") if path.is_file()]
    assert max(written) - (folder / "history.csv").stat().st_mtime > 3


TINY_RUN = [
    "--num-train", "2001", "--num-test", "101", "--hidden-dim", "32",
    "--latent-dim", "4", "--verbose", "0", "--devices", "2",
]


def descendants(pid):
    """`pid` and all its descendants (torchrun's workers lead sessions of
    their own), found through /proc."""
    children = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += children.get(current, [])
    return tree


def alive(pid):
    """True while `pid` runs (not gone, not a zombie)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_tree(pid):
    """SIGKILL to a process and all its descendants."""
    for member in descendants(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_on_two_devices_after(args, folder, epoch, backend):
    """Starts training `args` on two devices (torchrun's two processes on
    torch), kills it and its processes once `folder` committed `epoch`, and
    returns the epoch it had committed."""
    launcher = torchrun(2) if backend == "torch" else []
    process = subprocess.Popen(
        [sys.executable, *launcher, *map(str, args)], cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 300
    while committed_epoch(folder) < epoch and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    kill_tree(process.pid)  # torchrun and its processes
    process.wait()
    return committed_epoch(folder)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "train.py"])
def test_killing_the_launcher_alone_stops_its_workers_and_the_run_resumes(tmp_path, backend, launcher):
    if backend != "torch":
        pytest.skip("torch trains in processes of its own")
    folder = tmp_path / "run"
    args = [SCRIPTS / "train.py", "--epochs", "6", "--final-iw-samples", "20", "--output-dir", folder, *TINY_RUN]
    # torchrun's workers lead sessions of their own; train.py's (torch's
    # launcher in the command's process) are its children.
    def command():  # torchrun on a port of its own each time
        return [*torchrun(2), *map(str, args)] if launcher == "torchrun" else list(map(str, args))

    started = subprocess.Popen(
        [sys.executable, *command()], cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "torch"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 300
    while committed_epoch(folder) < 1 and started.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = descendants(started.pid)[1:]
    assert len(workers) >= 2 and committed_epoch(folder) < 6
    os.kill(started.pid, signal.SIGKILL)  # the launcher only, as `kill -9 PID` does
    started.wait()
    deadline = time.time() + 30
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers)), "the launcher's workers outlived it"
    # The same command resumes: one command (train.py starts its two processes) or torchrun.
    result = run_python(command(), backend="torch")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout
    assert result.stdout.count("test loss") == 1  # the chief's output; the other's goes to a log
    assert json.loads((folder / "config.json").read_text())["topology"]["processes"] == 2
    assert [row["epoch"] for row in run_folder.read_history(folder / "history.csv")] == [1, 2, 3, 4, 5, 6]
    # The two processes scored half the test images each: the one-process numbers.
    metrics = json.loads((folder / "metrics.json").read_text())
    test_images = data.load_dataset("mnist", num_train=2001, num_test=101).x_test
    alone = evaluation.evaluate_likelihood(load_model(folder / "model.keras"), test_images, iw_samples=20, seed=0)
    assert metrics["test_iw_nll"] == pytest.approx(alone["iw_nll"], rel=1e-9)
    assert metrics["test_neg_elbo"] == pytest.approx(alone["neg_elbo"], rel=1e-9)


@pytest.mark.slow
def test_a_two_device_run_resumed_after_a_kill_is_the_uninterrupted_run(tmp_path, backend):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    args = [SCRIPTS / "train.py", "--epochs", "4", *TINY_RUN]
    result = run_on(2, [*args, "--output-dir", whole], backend)
    assert result.returncode == 0, result.stderr[-3000:]
    killed_at = kill_on_two_devices_after([*args, "--output-dir", resumed], resumed, 2, backend)
    assert 2 <= killed_at < 4, "the run must be killed after epoch 2, before the end"
    result = run_on(2, [*args, "--output-dir", resumed], backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {killed_at} of 4" in result.stdout
    assert result.stdout.count("test loss") == 1  # one process reports
    assert json.loads((resumed / "config.json").read_text())["topology"]["devices"] == 2
    # 2001 images, cut to 2000 on two devices; global batches of 128: 16 steps an epoch.
    assert json.loads((resumed / "metrics.json").read_text())["num_train"] == 2000
    assert not (resumed / "backup").exists() and not (resumed / ".lock").exists()
    # The images come in the run's own order of (seed, epoch), and the seed
    # states are in the checkpoint: the same run. TensorFlow's logged losses
    # (its replicas' metrics, reduced by several CPU threads) differ in the
    # last bit from run to run (up to 1.0e-7 relative measured; its weights
    # were equal in 4 of 4 runs): to 1e-6 there.
    tolerance = 1e-6 if backend == "tensorflow" else 0
    rows = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in run_folder.read_history(folder / "history.csv")]
        for folder in (resumed, whole)
    ]
    for ours, theirs in zip(*rows, strict=True):
        assert ours == pytest.approx(theirs, rel=tolerance, abs=0)
    model = load_model(resumed / "model.keras")  # on one device
    assert int(model.optimizer.iterations) == 4 * 16
    ours, theirs = model.get_weights(), load_model(whole / "model.keras").get_weights()
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other, rtol=tolerance, atol=tolerance / 10)
    # The sample grid of the last epoch is a picture, not noise: ink on black.
    assert 0.02 < model.generate(64, seed=0).mean() < 0.5


@pytest.mark.slow
def test_processes_that_find_different_checkpoints_refuse_to_resume(tmp_path, backend):
    if backend != "jax":
        pytest.skip("two JAX processes whose run folders differ (torchrun gives every process the same flags)")
    shared, own = tmp_path / "shared", tmp_path / "own"
    train = [SCRIPTS / "train.py", "--epochs", "3", *TINY_RUN[:-2]]
    assert kill_after_epoch([sys.executable, *map(str, train), "--output-dir", str(shared)], shared, 1) >= 1
    # Process 1's host does not see the chief's folder: its own is empty.
    ended = run_jax_processes([[*train, "--devices", "2", "--output-dir", folder] for folder in (shared, own)])
    assert [code for code, _ in ended] == [2, 2]
    for _, error in ended:
        lines = [line for line in error.splitlines() if line.startswith("train.py: error:")]
        assert len(lines) == 1 and "storage that every host reads at the same path" in lines[0], error[-2000:]
    assert "this process 1 after epoch 0" in ended[1][1]
    assert not (own / "config.json").exists()


@pytest.mark.slow
def test_a_failing_worker_of_one_command_is_one_line(tmp_path, backend):
    if backend != "torch":
        pytest.skip("torch trains in processes of its own")
    # (One command training on two processes: the killing test above.)
    # A worker's error is its one line: no launcher traceback, nothing written.
    failed = run_python([SCRIPTS / "train.py", "--dataset", "cifar10", "--output-dir", tmp_path / "other", *TINY_RUN])
    one_error_line(failed, "cifar10", "not prepared")
    assert "Traceback" not in failed.stderr and "ChildFailedError" not in failed.stderr
    assert not (tmp_path / "other").exists()
