"""Benchmark: keras_vae on each backend against a plain PyTorch loop.

    python benchmarks/run.py [--backends tensorflow,jax,torch] [--epochs 4]
                             [--batch-size 128] [--jit-compile auto|true|false]
                             [--steps-per-execution 1] [--iwae-images 1000]
                             [--rounds 1]

Trains the original model (784-512-20, batch 128, Adam 1e-3) on MNIST held in
memory, each backend in its own process, and the identical model with the
plain PyTorch loop of benchmarks/torch_loop.py in the same invocation. Reports
seconds per epoch (median of the epochs after the first, warm-up, epoch; the
warm-up's extra time is the compile time), images per second, peak resident
memory and its growth over the timed epochs, the ratio to the PyTorch loop,
the training callbacks' time per epoch, the importance-weighted evaluation
(k = 5000) per 1000 test images, and `generate.py` for 64 images including
starting Python and loading the model. Writes a Markdown table
(benchmarks/RESULTS.md) and a bar chart (benchmarks/results.png).

Ratios from one invocation are what count: machines are noisy, and every
number of a table comes from the same run on the same machine. With
`--rounds N` the PyTorch loop and every backend are trained N times,
interleaved (loop, backends, loop, backends, ...), so that a slow spell of the
machine hits all of them: seconds per epoch are then the median over the
rounds, and each ratio the median of the N ratios to the loop of the same
round. Memory, callbacks, evaluation and generation are measured in the
first round.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = ("tensorflow", "jax", "torch")
BASELINE = "pytorch-loop"


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per backend, the first one a warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--steps-per-execution", type=int, default=1, help="tensorflow and jax only; torch needs 1")
    parser.add_argument("--num-train", type=int, default=None, help="training images; all 60 000 when not given")
    parser.add_argument("--iwae-images", type=int, default=1000, help="test images for the IWAE timing (0: skip)")
    parser.add_argument("--skip-generate", action="store_true", help="do not time generate.py")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats of every training run")
    parser.add_argument("--devices", default="1", help="comma-separated device counts for each backend, e.g. 1,2: data parallel (virtual CPU devices without accelerators; torch through torchrun)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--chart", default=str(HERE / "results.png"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (one warm-up, then timed epochs)")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    try:
        args.devices = [int(d) for d in args.devices.split(",")]
    except ValueError:
        parser.error(f"--devices takes counts like 1,2, got {args.devices!r}")
    if any(d < 1 or args.batch_size % d for d in args.devices):
        parser.error(f"every --devices count must be >= 1 and divide --batch-size {args.batch_size}")
    return args


def run_checked(command, backend=None):
    """Runs one child process of the benchmark and returns its standard output.

    The child finds `keras_vae` and the benchmarks' modules without an
    installed package (the repository root and this folder go first on its
    `PYTHONPATH`), and runs with `KERAS_BACKEND=backend` when one is given.

    Raises:
        SystemExit: the child failed; the message names the command and
            ends with the end of its standard error.
    """
    path = [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    if backend:
        env["KERAS_BACKEND"] = backend
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def launcher(backend, devices):
    """How to start a worker on `devices` devices: torch starts one process
    per device with torchrun (on 127.0.0.1), the others one process."""
    if backend != "torch" or devices == 1:
        return [sys.executable]
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}",
            "--master-addr=127.0.0.1", f"--master-port={port}"]


def run_json(command, backend=None):
    return json.loads(run_checked(command, backend).strip().splitlines()[-1])


def summarize(name, raw):
    timed = raw["epoch_seconds"][1:]
    median = statistics.median(timed)
    return {
        "name": name,
        "seconds_per_epoch": median,
        "compile_seconds": raw["epoch_seconds"][0] - median,
        "peak_rss_mb": raw["peak_rss_mb"],
        "rss_growth_mb": raw["rss_mb"][-1] - raw["rss_mb"][1],
        "final_loss": raw["losses"][-1],
        **{k: raw[k] for k in ("callback_seconds_per_epoch", "validation_seconds", "iwae_seconds") if k in raw},
    }


def time_generate(backend, model_path, folder):
    command = [sys.executable, ROOT / "scripts" / "generate.py", model_path, "--num", "64",
               "--output", Path(folder) / f"{backend}.png"]
    start = time.perf_counter()
    run_checked(command, backend)
    return time.perf_counter() - start


def main():
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from keras_vae import VAE, data, save_model
    from keras_vae.errors import UserError

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    try:
        dataset = data.load_dataset("mnist", num_train=args.num_train)
    except UserError as error:  # e.g. MNIST not prepared and no network
        raise SystemExit(f"benchmark: {error}") from None
    num_train = len(dataset.x_train)
    with tempfile.TemporaryDirectory() as folder:
        arrays = Path(folder) / "mnist.npz"
        np_save(arrays, dataset)
        model_path = Path(folder) / "model.keras"
        save_model(VAE(), model_path)
        rounds = []
        for round_index in range(args.rounds):
            first = round_index == 0
            raw = run_json([sys.executable, HERE / "torch_loop.py", Path(folder) / "x_train.npy",
                            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)])
            runs = [summarize(BASELINE, raw)]
            report(round_index, runs[-1])
            for backend in backends:
                for devices in args.devices:
                    spe = 1 if backend == "torch" else args.steps_per_execution
                    one = devices == 1  # evaluation, callbacks and generate: one device
                    command = [*launcher(backend, devices), HERE / "keras_worker.py", arrays,
                               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                               "--jit-compile", args.jit_compile,
                               "--steps-per-execution", str(spe),
                               "--iwae-images", str(args.iwae_images if first and one else 0),
                               "--callback-dir", Path(folder) / f"callbacks-{backend}",
                               "--devices", str(devices)]
                    name = backend if one else f"{backend} ×{devices} devices"
                    runs.append(summarize(name, run_json(command, backend)))
                    if first and one and not args.skip_generate:
                        runs[-1]["generate_seconds"] = time_generate(backend, model_path, folder)
                    report(round_index, runs[-1])
            rounds.append(runs)
        results = combine(rounds)
    table = markdown(results, args, num_train)
    Path(args.output).write_text(table)
    chart(results, args.chart)
    print(table)


def report(round_index, result):
    print(f"benchmark: round {round_index + 1}: {result['name']}: "
          f"{result['seconds_per_epoch']:.2f} s/epoch", flush=True)


def combine(rounds):
    """One result per engine from the rounds (lists of results, loop first).

    Seconds per epoch: the median over the rounds;
    `ratio`: the median of each round's ratio to that round's PyTorch loop;
    everything else: the first round's.
    """
    results = []
    for position, first in enumerate(rounds[0]):
        runs = [round_results[position] for round_results in rounds]
        seconds = statistics.median(r["seconds_per_epoch"] for r in runs)
        ratio = statistics.median(
            run["seconds_per_epoch"] / loop["seconds_per_epoch"]
            for run, (loop, *_) in zip(runs, rounds)
        )
        results.append({
            **first,
            "seconds_per_epoch": seconds,
            "ratio": ratio,
            "round_seconds": [r["seconds_per_epoch"] for r in runs],
        })
    return results


def np_save(path, dataset):
    import numpy as np

    np.savez(path, x_train=dataset.x_train, x_test=dataset.x_test, y_test=dataset.y_test)
    np.save(path.parent / "x_train.npy", dataset.x_train)


def machine():
    import keras

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, Keras {keras.__version__}"


def markdown(results, args, num_train):
    rounds = len(results[0]["round_seconds"])
    lines = [
        "# Benchmark results",
        "",
        f"Made by `python benchmarks/run.py --epochs {args.epochs} --batch-size {args.batch_size} "
        f"--jit-compile {args.jit_compile} --steps-per-execution {args.steps_per_execution} "
        f"--rounds {rounds}{devices_flag(args)}` on {datetime.date.today()}, on {machine()}. "
        f"{num_train} training images; seconds per epoch are the median of {args.epochs - 1} "
        "epochs after a warm-up epoch, training only (no validation)"
        + (f", then the median over {rounds} interleaved rounds; each ratio is the median of the "
           "rounds' ratios to the PyTorch loop of the same round (seconds of each round in the "
           "last column)." if rounds > 1 else "."),
        "",
        "| engine | s/epoch | × PyTorch loop | images/s | compile s | peak RSS MB | RSS growth MB | callbacks s/epoch | validation s | IWAE k=5000 s per 1000 images | generate.py s | s/epoch by round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    def cell(result, key, fmt):
        return format(result[key], fmt) if key in result else "–"
    for r in results:
        lines.append(
            f"| {r['name']} | {r['seconds_per_epoch']:.2f} | {r['ratio']:.2f} "
            f"| {num_train / r['seconds_per_epoch']:,.0f} | {r['compile_seconds']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['rss_growth_mb']:+.0f} | {cell(r, 'callback_seconds_per_epoch', '.2f')} "
            f"| {cell(r, 'validation_seconds', '.2f')} "
            f"| {format(r['iwae_seconds'] * 1000 / args.iwae_images, '.1f') if 'iwae_seconds' in r else '–'} "
            f"| {cell(r, 'generate_seconds', '.1f')} "
            f"| {', '.join(format(x, '.2f') for x in r['round_seconds'])} |"
        )
    lines += ["", "RSS growth is measured from the end of the first timed epoch to the end of the last. Compile s is the warm-up epoch minus the median epoch; it is negative when the run's noise exceeds the compile time.", ""]
    if args.devices != [1]:
        lines += [
            "Rows named ×N devices train data parallel with `--devices N` (the same global batch): "
            "JAX's DataParallel and TensorFlow's MirroredStrategy over N devices, torch over N "
            "processes started by torchrun (gloo on CPU; the memory is the chief process's). On a "
            "machine without accelerators the devices are virtual CPU devices sharing the same "
            "cores, so these rows measure the machinery's overhead, not a speed-up.",
            "",
        ]
    return "\n".join(lines)


def devices_flag(args):
    if args.devices == [1]:
        return ""
    return " --devices " + ",".join(map(str, args.devices))


def chart(results, path):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5))
    ax = figure.subplots()
    names = [r["name"] for r in results]
    values = [r["seconds_per_epoch"] for r in results]
    bars = ax.bar(names, values, color=["#888888"] + ["#1f77b4"] * (len(results) - 1))
    ax.bar_label(bars, fmt="%.2f s")
    if len(results) > 4:  # long names side by side overlap
        ax.tick_params(axis="x", labelrotation=25)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_ylabel("seconds per epoch (median)")
    ax.set_title("Training one MNIST epoch: keras_vae backends vs. a plain PyTorch loop")
    figure.savefig(path, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
