"""Benchmark: a run resumed on another device count, against the run it replaces.

    python benchmarks/resume.py [--backends tensorflow,jax,torch] [--num-train 10000]
                                [--epochs 6] [--kill-after 3]

On each backend, four training runs of the original model (`scripts/train.py`,
each in its own processes) on `--num-train` MNIST images:

- **2 devices**, uninterrupted (JAX and TensorFlow: two virtual CPU devices;
  torch: two processes that `train.py` starts);
- the same command **killed** (SIGKILL) once it committed epoch
  `--kill-after`, then **resumed on 1 device** (`--devices 1`, the only
  setting changed);
- **1 device**, uninterrupted, the same seed;
- **1 device with another seed** (`--seed 1`): how far two runs that are
  equally good lie apart, the scale to read the other differences on.

Reports each run's test loss (the -ELBO of the test images, `metrics.json`)
and the largest weight difference of the resumed run against the
uninterrupted 2-device one (and of the two seeds' runs against each other),
relative to the weights' largest magnitude.
Writes benchmarks/RESUME.md.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_vae.model import load_model
from keras_vae.run.checkpoint import RunCheckpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = ("tensorflow", "jax", "torch")
RUNS = ("2 devices", "2 → 1 (resumed)", "1 device", "1 device, seed 1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--num-train", type=int, default=10_000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of every run")
    parser.add_argument("--kill-after", type=int, default=3, help="the epoch after which the 2-device run is killed")
    parser.add_argument("--output", default=str(HERE / "RESUME.md"))
    return parser.parse_args(argv)


def train_command(args, folder, devices, seed=0):
    return [
        sys.executable, "scripts/train.py", "--epochs", str(args.epochs), "--num-train", str(args.num_train),
        "--devices", str(devices), "--seed", str(seed), "--verbose", "0", "--output-dir", str(folder),
    ]


def environment(backend):
    return {**os.environ, "KERAS_BACKEND": backend}


def train(backend, command):
    result = subprocess.run(command, cwd=ROOT, env=environment(backend), capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"{backend}: {' '.join(command)}: {result.stderr[-2000:]}")


def committed_epoch(folder):
    """The last epoch the run in `folder` committed (0: none yet)."""
    committed = RunCheckpoint(Path(folder) / "backup", write=False).committed()
    return committed[0][0] if committed else 0


def kill_after(backend, command, folder, epoch):
    """Starts `command`, kills its processes once `folder` committed `epoch`;
    returns the epoch committed."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment(backend), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=errors, text=True,
        )
        while committed_epoch(folder) < epoch and process.poll() is None:
            time.sleep(0.02)
        if process.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"{backend}: {' '.join(command)} ended before it was killed: {errors.read()[-2000:]}")
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and torch's workers
        process.wait()
    return committed_epoch(folder)


def weights(folder):
    return load_model(Path(folder) / "model.keras").get_weights()


def measure(backend, args, scratch):
    """The four runs on `backend`: test losses, the resumed run's epoch and weight difference."""
    folders = {name: Path(scratch) / f"{backend}-{index}" for index, name in enumerate(RUNS)}
    train(backend, train_command(args, folders["2 devices"], 2))
    folder = folders["2 → 1 (resumed)"]
    killed_at = kill_after(backend, train_command(args, folder, 2), folder, args.kill_after)
    if not 0 < killed_at < args.epochs:
        raise RuntimeError(f"{backend}: the run was killed after epoch {killed_at}, not during training")
    train(backend, train_command(args, folder, 1))  # the same command on one device
    train(backend, train_command(args, folders["1 device"], 1))
    train(backend, train_command(args, folders["1 device, seed 1"], 1, seed=1))
    losses = {
        name: json.loads((folder / "metrics.json").read_text())["test_loss"] for name, folder in folders.items()
    }
    return {
        "losses": losses, "killed_at": killed_at,
        "weight_difference": weight_difference(folders["2 → 1 (resumed)"], folders["2 devices"]),
        "seed_weight_difference": weight_difference(folders["1 device, seed 1"], folders["1 device"]),
    }


def weight_difference(folder, reference):
    """The largest difference of two runs' weights, relative to the reference's largest magnitude."""
    ours, theirs = weights(folder), weights(reference)
    scale = max(float(np.abs(w).max()) for w in theirs)
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True)) / scale


def main(argv=None):
    args = parse_args(argv)
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        for backend in args.backends.split(","):
            found[backend] = measure(backend, args, scratch)
            print(backend, json.dumps(found[backend]), flush=True)
    Path(args.output).write_text(report(args, found))
    print(f"wrote {args.output}")


def report(args, found):
    command = "python benchmarks/resume.py " + " ".join(
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("backends", "num_train", "epochs", "kill_after")
    )
    lines = [
        "# A run resumed on another device count",
        "",
        f"`{command}`, {datetime.date.today()}, {platform.machine()} with {os.cpu_count()} CPU cores, "
        "no accelerator (2 devices: virtual CPU devices on JAX and TensorFlow, two processes on torch).",
        "",
        f"The original model on {args.num_train:,} MNIST images for {args.epochs} epochs. "
        f"The resumed run was killed after epoch {args.kill_after} on 2 devices and finished on 1. "
        "Test loss: the -ELBO of the 10 000 test images in nats (`metrics.json`). "
        "Weights: the largest difference of the resumed run's weights from the uninterrupted "
        "2-device run's (and of the two seeds' runs), relative to the largest magnitude.",
        "",
        "| backend | " + " | ".join(f"test loss, {name}" for name in RUNS)
        + " | 2 devices − 1 | resumed − uninterrupted | seed 1 − seed 0"
        " | weights: resumed vs uninterrupted | weights: seed 1 vs seed 0 |",
        "|---|" + "---:|" * (len(RUNS) + 5),
    ]
    for backend, result in found.items():
        losses = result["losses"]
        resumed = losses["2 → 1 (resumed)"] - losses["2 devices"]
        seeds = losses["1 device, seed 1"] - losses["1 device"]
        devices = losses["2 devices"] - losses["1 device"]
        lines.append(
            f"| {backend} | " + " | ".join(f"{losses[name]:.3f}" for name in RUNS)
            + f" | {devices:+.3f} ({devices / losses['1 device']:+.2%})"
            + f" | {resumed:+.3f} ({resumed / losses['2 devices']:+.2%}) | {seeds:+.3f} "
            f"| {result['weight_difference']:.1e} | {result['seed_weight_difference']:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
