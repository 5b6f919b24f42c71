"""Train the VAE on MNIST: `python scripts/train.py [flags]` or `keras-vae train`.

The backend is chosen by the KERAS_BACKEND environment variable
(tensorflow by default, jax or torch). The flags are the fields of
`keras_vae.TrainConfig`; see `--help`, and `keras_vae.run.folder` for
what the run writes.
"""

import dataclasses
import sys

from keras_vae import engines
from keras_vae.cli import flags as cli
from keras_vae.run import trainer
from keras_vae.run.config import TrainConfig, saved_config
from keras_vae.run.folder import RunFolder

PROG = "train.py"


def parse_args(argv, prog=PROG):
    parser = cli.ArgumentParser(
        prog=prog,
        description="Train a variational autoencoder on MNIST with Keras 3. "
        "Set KERAS_BACKEND=tensorflow|jax|torch to choose the engine.",
    )
    cli.add_config_flags(parser, TrainConfig)
    parser.add_argument("--output-dir", default=None, help="run folder (default: runs/<timestamp>-<backend>); an unfinished run there is resumed")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR with its saved settings (other flags but --data-dir, --manual-dir, --jit-compile, --steps-per-execution, --devices and --tensorboard are ignored)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None, help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch (default: 1 in a terminal, 2 when the output goes to a file)")
    cli.add_process_flags(parser)
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv, prog=PROG):
    args = parse_args(argv, prog)
    cli.apply_process_flags(args)
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    if args.resume:
        run = RunFolder(args.resume).check_is_folder()
        # The run's own settings, but for the resumable ones given as flags
        # (where the data is, speed, logging); replace() checks them again.
        defaults = TrainConfig()
        changes = {
            name: getattr(args, name)
            for name in TrainConfig.resumable_settings()
            if getattr(args, name) != getattr(defaults, name)
        }
        config = dataclasses.replace(saved_config(run), **changes)
        return report(prog, config, run, verbose)
    config = cli.config_from_args(TrainConfig, args)
    run = RunFolder(args.output_dir or trainer.default_output_dir()).check_is_folder()
    return report(prog, config, run, verbose)


def report(prog, config, run, verbose):
    """Trains, then prints the test numbers in two lines."""
    # Before anything runs on the backend: virtual CPU devices are set at its start.
    topology = engines.setup(config.devices)
    if topology.chief:
        cli.announce_backend(prog, topology)
    metrics = trainer.train_and_evaluate(config, run.path, verbose=verbose, topology=topology)
    if metrics is None:  # a torch process other than the chief
        return
    print(
        f"{prog}: test loss {metrics['test_loss']:.2f} nats, "
        f"-ELBO {metrics['test_neg_elbo']:.2f} "
        f"(reconstruction {metrics['test_reconstruction_loss']:.2f}, "
        f"KL {metrics['test_kl_loss']:.2f}); "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch; outputs in {run.path}"
    )
    if "test_iw_nll" in metrics:
        print(
            f"{prog}: test IWAE NLL {metrics['test_iw_nll']:.2f} nats "
            f"(k={metrics['test_iw_samples']}), -ELBO {metrics['test_neg_elbo']:.2f}"
        )
