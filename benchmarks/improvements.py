"""Measure what each improvement of the model buys: `python benchmarks/improvements.py`.

Trains one run per row of `RUNS` with `scripts/train.py` (dynamically
binarized MNIST, `--epochs` for every row but those that set their own),
estimates each model's test log-likelihood with `scripts/evaluate.py` (IWAE,
k importance samples, on the first N test images: the same images for every
row), and writes the table to `benchmarks/IMPROVEMENTS.md`. Runs already
finished in `--runs-dir` are not trained again, so the script can be stopped
and started; pass `--only NAME` to run some rows.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]


class Run(NamedTuple):
    """One row: the backend it trains on, its train.py flags, what it changes.

    `epochs` overrides `--epochs` for this row (None: the script's `--epochs`).
    """

    backend: str
    flags: list
    what: str
    epochs: Optional[int] = None


# TensorFlow's oneDNN convolutions are the fastest on CPU; JAX is for MLPs.
RUNS = {
    "mlp": Run("jax", [], "the original MLP, negative ELBO"),
    "beta-0.5": Run("jax", ["--beta", "0.5"], "beta = 0.5"),
    "warmup-3": Run("jax", ["--kl-warmup-epochs", "3"], "KL warm-up over 3 epochs"),
    "free-bits-0.25": Run("jax", ["--free-bits", "0.25"], "free bits, 0.25 nats per dimension"),
    "iwae-5": Run("jax", ["--iw-samples", "5"], "IWAE bound, k = 5"),
    "conditional": Run("jax", ["--conditional"], "conditional VAE (its NLL is −log p(x\\|y))"),
    "conv": Run("tensorflow", ["--architecture", "conv"], "conv architecture"),
    "resnet": Run("tensorflow", ["--architecture", "resnet"], "resnet architecture"),
    "resnet-iwae-5": Run(
        "tensorflow",
        ["--architecture", "resnet", "--iw-samples", "5"],
        "resnet + IWAE k = 5: the two that helped most",
    ),
    "best": Run(
        "tensorflow",
        ["--architecture", "resnet", "--iw-samples", "5", "--lr-schedule", "cosine"],
        "resnet + IWAE k = 5, trained longer with a cosine learning rate",
        epochs=25,
    ),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run that sets none")
    parser.add_argument("--eval-examples", type=int, default=500, help="test images for the IWAE estimate")
    parser.add_argument("--iw-samples", type=int, default=5000, help="importance samples k")
    parser.add_argument("--runs-dir", default="runs/improvements", help="where the runs go")
    parser.add_argument("--only", nargs="*", default=None, choices=tuple(RUNS), help="rows to run")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "IMPROVEMENTS.md"))
    return parser.parse_args(argv)


def run(command, backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    print("$ KERAS_BACKEND=" + backend + " " + " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=ROOT, env=env, check=True)


def epochs(row, args):
    return row.epochs or args.epochs


def train_command(name, row, args):
    return [
        "scripts/train.py", "--binarize", "dynamic", "--epochs", str(epochs(row, args)),
        *row.flags, "--output-dir", str(Path(args.runs_dir) / name), "--verbose", "2",
    ]


def evaluate_command(name, args):
    run_dir = Path(args.runs_dir) / name
    return [
        "scripts/evaluate.py", str(run_dir / "model.keras"), "--num-examples",
        str(args.eval_examples), "--iw-samples", str(args.iw_samples), "--quiet",
        "--output", str(run_dir / "evaluation.json"),
    ]


def table(args):
    lines = [
        "Dynamically binarized MNIST; IWAE NLL with "
        f"k = {args.iw_samples} on the first {args.eval_examples} test images (the "
        "same images for every row), evaluated on TensorFlow. Training time on "
        "this machine's 2 CPU cores, validation included, median s/epoch in brackets; "
        "the backend is in the command. Written by `python benchmarks/improvements.py`.",
        "",
        "| run | change | epochs | test IWAE NLL | test −ELBO | active units | training minutes (s/epoch) | train command |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in RUNS.items():
        run_dir = ROOT / args.runs_dir / name
        try:
            evaluation = json.loads((run_dir / "evaluation.json").read_text())
            metrics = json.loads((run_dir / "metrics.json").read_text())
        except OSError:
            continue
        command = f"KERAS_BACKEND={row.backend} python " + " ".join(train_command(name, row, args)[:-4])
        lines.append(
            f"| {name} | {row.what} | {epochs(row, args)} | {evaluation['iw_nll']:.2f} | {evaluation['neg_elbo']:.2f} | "
            f"{evaluation['active_units']}/{evaluation['latent_dim']} | "
            f"{sum(metrics['epoch_seconds']) / 60:.1f} ({metrics['seconds_per_epoch']:.1f}) | `{command}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    args = parse_args(argv)
    for name in args.only or RUNS:
        row = RUNS[name]
        run_dir = ROOT / args.runs_dir / name
        if not (run_dir / "metrics.json").is_file():
            run(train_command(name, row, args), row.backend)
        if not (run_dir / "evaluation.json").is_file():
            run(evaluate_command(name, args), "tensorflow")
        Path(args.output).write_text(table(args))
    print(Path(args.output).read_text())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
