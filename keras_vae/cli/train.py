"""Train the VAE on MNIST: `python scripts/train.py [flags]` or `keras-vae train`.

The backend is chosen by the KERAS_BACKEND environment variable
(tensorflow by default, jax or torch). The flags are the fields of
`keras_vae.run.config.TrainConfig` (`keras_vae.cli.parsers`); see `--help`,
and `keras_vae.run.folder` for what the run writes.
"""

import sys

from keras_vae import engines
from keras_vae.cli import flags
from keras_vae.run import trainer


def main(args, prog):
    """Trains as `args.config` says into `args.run`, then prints the test numbers."""
    try:
        status = engines.launch(args.config.devices, args.config.batch_size)
        if status is not None:  # worker processes ran this command (torch --devices N)
            return status
        # Before anything runs on the backend: virtual CPU devices are set at its start.
        topology = engines.setup(args.config.devices)
        if topology.chief:
            flags.announce_backend(prog, topology.describe())
        metrics = trainer.train_and_evaluate(
            args.config, args.run.path, verbose=args.verbose, topology=topology,
            restart=args.restart,
        )
    except KeyboardInterrupt:  # the last finished epoch is committed in the folder
        print(
            f"{prog}: interrupted; continue the run with: {prog} --resume {args.run.path}",
            file=sys.stderr,
        )
        return 130
    if metrics is None:  # a process other than the chief
        return
    print(
        f"{prog}: test loss {metrics['test_loss']:.2f} nats, "
        f"-ELBO {metrics['test_neg_elbo']:.2f} "
        f"(reconstruction {metrics['test_reconstruction_loss']:.2f}, "
        f"KL {metrics['test_kl_loss']:.2f}); "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch; outputs in {args.run.path}"
    )
    if metrics["likelihood"] != "bernoulli":  # 8-bit pixels: the literature's unit
        print(f"{prog}: test -ELBO {metrics['test_neg_elbo_bits_per_dim']:.4f} bits/dim ({metrics['likelihood']} likelihood)")
    if "test_iw_nll" in metrics:
        print(
            f"{prog}: test IWAE NLL {metrics['test_iw_nll']:.2f} nats "
            f"(k={metrics['test_iw_samples']}), -ELBO {metrics['test_neg_elbo']:.2f}"
        )
