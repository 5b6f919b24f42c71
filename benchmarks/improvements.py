"""Measure what each improvement of the model buys: `python benchmarks/improvements.py`.

Trains one run per row of `RUNS` with `scripts/train.py` (dynamically
binarized MNIST, `--epochs` for every row but those that set their own; the
best epoch chosen on the held-out validation images unless a row says
`--validation-split 0`), estimates each model's test log-likelihood with
`scripts/evaluate.py` (IWAE, k importance samples, on the first N test
images: the same images for every row), records the numbers in
`benchmarks/improvements.json` and writes the table to
`benchmarks/IMPROVEMENTS.md`. Runs already finished in `--runs-dir` are not
trained again, so the script can be stopped and started; pass `--only NAME`
to run some rows (the others keep their recorded numbers).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "improvements.json"


class Run(NamedTuple):
    """One row: the backend it trains on, its train.py flags, what it changes.

    `epochs` overrides `--epochs` for this row (None: the script's `--epochs`).
    The rows with `--validation-split 0` were measured before the validation
    split existed, on all 60 000 training images; they cost too much to
    train again on this machine (see docs/results.md).
    """

    backend: str
    flags: list
    what: str
    epochs: Optional[int] = None


# TensorFlow's oneDNN convolutions are the fastest on CPU; JAX is for MLPs.
ALL_TRAINING_IMAGES = ["--validation-split", "0"]
RUNS = {
    "mlp": Run("jax", [], "the original MLP, negative ELBO"),
    "beta-0.5": Run("jax", ["--beta", "0.5"], "beta = 0.5"),
    "warmup-3": Run("jax", ["--kl-warmup-epochs", "3"], "KL warm-up over 3 epochs"),
    "free-bits-0.25": Run("jax", ["--free-bits", "0.25"], "free bits, 0.25 nats per dimension"),
    "iwae-5": Run("jax", ["--iw-samples", "5"], "IWAE bound, k = 5"),
    "conditional": Run("jax", ["--conditional"], "conditional VAE (its NLL is −log p(x\\|y))"),
    "vamp": Run("jax", ["--prior", "vamp"], "VampPrior, 500 pseudo-inputs"),
    "two-layer": Run("jax", ["--latent-layers", "2"], "two stochastic layers (z1, z2 of 20)"),
    "two-layer-vamp": Run(
        "jax", ["--latent-layers", "2", "--prior", "vamp"], "two layers, VampPrior on z2"
    ),
    "hvae-vamp-iwae": Run(
        "jax",
        ["--latent-layers", "2", "--prior", "vamp", "--iw-samples", "5", "--lr-schedule", "cosine"],
        "two layers, VampPrior, IWAE k = 5, trained longer with a cosine learning rate",
        epochs=150,
    ),
    "hvae-vamp-k20": Run(
        "jax",
        ["--latent-layers", "2", "--prior", "vamp", "--iw-samples", "20", "--lr-schedule", "cosine",
         "--learning-rate", "2e-4", "--init-from", "hvae-vamp"],
        "the pretrained hvae-vamp (the row above) fine-tuned on the IWAE bound with k = 20",
        epochs=35,
    ),
    "conv": Run("tensorflow", ["--architecture", "conv", *ALL_TRAINING_IMAGES], "conv architecture"),
    "resnet": Run(
        "tensorflow", ["--architecture", "resnet", *ALL_TRAINING_IMAGES], "resnet architecture"
    ),
    "resnet-iwae-5": Run(
        "tensorflow",
        ["--architecture", "resnet", "--iw-samples", "5", *ALL_TRAINING_IMAGES],
        "resnet + IWAE k = 5: the two that helped most",
    ),
    "best": Run(
        "tensorflow",
        ["--architecture", "resnet", "--iw-samples", "5", "--lr-schedule", "cosine", *ALL_TRAINING_IMAGES],
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


def parameters(name, row, args):
    """The row's parameter count, from its flags (nothing is built)."""
    from keras_vae.cli import flags as cli
    from keras_vae.model import ModelConfig
    from keras_vae.run.config import TrainConfig, build_model_settings

    parser = cli.ArgumentParser()
    cli.add_config_flags(parser, TrainConfig)
    config = cli.config_from_args(TrainConfig, parser.parse_args(train_command(name, row, args)[1:-4]))
    return ModelConfig(**build_model_settings(config)).parameter_count()


def measure(name, args):
    """The numbers of a finished run of row `name` in `--runs-dir`."""
    run_dir = ROOT / args.runs_dir / name
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())["config"]
    return {
        "iw_nll": round(evaluation["iw_nll"], 2),
        "neg_elbo": round(evaluation["neg_elbo"], 2),
        "active_units": evaluation["active_units"],
        "latent_dim": evaluation["latent_dim"],
        "training_minutes": round(sum(metrics["epoch_seconds"]) / 60, 1),
        "seconds_per_epoch": round(metrics["seconds_per_epoch"], 1),
        "validation_split": config["validation_split"],
    }


def table(args, results):
    lines = [
        "Dynamically binarized MNIST; IWAE NLL with "
        f"k = {args.iw_samples} on the first {args.eval_examples} test images (the "
        "same images for every row), evaluated on TensorFlow. The model is the last "
        "epoch's; rows trained with `--validation-split 0` saw all 60 000 training "
        "images (measured before the validation split existed), the others 50 000. "
        "Training time on this machine's 2 CPU cores, validation included, median "
        "s/epoch in brackets; the backend is in the command. Written by "
        "`python benchmarks/improvements.py` from `benchmarks/improvements.json`.",
        "",
        "| run | change | epochs | parameters | test IWAE NLL | test −ELBO | active units | training minutes (s/epoch) | train command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in RUNS.items():
        if name not in results:
            continue
        r = results[name]
        command = f"KERAS_BACKEND={row.backend} python " + " ".join(train_command(name, row, args)[:-4])
        lines.append(
            f"| {name} | {row.what} | {epochs(row, args)} | {parameters(name, row, args):,} | "
            f"{r['iw_nll']:.2f} | {r['neg_elbo']:.2f} | {r['active_units']}/{r['latent_dim']} | "
            f"{r['training_minutes']:.1f} ({r['seconds_per_epoch']:.1f}) | `{command}` |"
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
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results[name] = measure(name, args)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        Path(args.output).write_text(table(args, results))
    print(Path(args.output).read_text())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
