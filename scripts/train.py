"""Train the VAE on MNIST: `python scripts/train.py [flags]`.

The backend is chosen by the KERAS_BACKEND environment variable
(tensorflow by default, jax or torch). See `--help` for the flags and
keras_vae/train.py for what the run writes.
"""

import argparse
import sys

try:
    from keras_vae import cli, train
except ImportError as error:  # an unknown or missing KERAS_BACKEND
    sys.exit(f"train.py: error: {error}")

PROG = "train.py"


def parse_args(argv):
    defaults = train.TrainConfig()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a variational autoencoder on MNIST with Keras 3. "
        "Set KERAS_BACKEND=tensorflow|jax|torch to choose the engine.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per gradient step")
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim, help="size of the latent vector z")
    parser.add_argument("--hidden-dim", type=int, default=defaults.hidden_dim, help="units of the hidden layers")
    parser.add_argument("--architecture", default=defaults.architecture, choices=train.ARCHITECTURES, help="mlp (the original), conv (strided convolutions) or resnet (with residual blocks)")
    parser.add_argument("--filters", type=cli.parse_int_list, default=defaults.filters, metavar="N,N", help="channels of the stride-2 convolutions, e.g. 32,64 (conv and resnet)")
    parser.add_argument("--blocks", type=int, default=defaults.blocks, help="residual blocks per resolution (resnet)")
    parser.add_argument("--conditional", action="store_true", help="train a conditional VAE: the encoder and decoder also see the digit's label")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="weight of the KL term (beta-VAE; 1 is the ELBO)")
    parser.add_argument("--kl-warmup-epochs", type=float, default=defaults.kl_warmup_epochs, help="grow the KL weight linearly from 0 to beta over this many epochs (0: off)")
    parser.add_argument("--free-bits", type=float, default=defaults.free_bits, help="floor of each latent dimension's KL, in nats (Kingma et al. 2016; 0: off)")
    parser.add_argument("--iw-samples", type=int, default=defaults.iw_samples, help="samples of z per image; K > 1 trains on the IWAE bound (Burda et al.), 1 is the VAE")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="Adam learning rate")
    parser.add_argument("--lr-schedule", default=defaults.lr_schedule, choices=train.LR_SCHEDULES, help="constant, or cosine decay to 1%% of the learning rate over the run")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (same seed and backend, same numbers)")
    parser.add_argument("--dataset", default=defaults.dataset, help="mnist, fashion_mnist or binarized_mnist (through TFDS)")
    parser.add_argument("--binarize", default=defaults.binarize, help="none (grey levels), dynamic (fresh Bernoulli sample every step; the likelihood protocol) or static (one fixed sample)")
    parser.add_argument("--final-iw-samples", type=int, default=defaults.final_iw_samples, help="at the end, estimate the test log-likelihood with K importance samples (0: skip; 5000 is the literature's standard)")
    parser.add_argument("--output-dir", default=None, help="run folder (default: runs/<timestamp>-<backend>); an unfinished run there is resumed")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR with its saved settings (other flags but --data-dir/--manual-dir are ignored)")
    parser.add_argument("--data-dir", default=None, help="prepared TFDS data directory (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    parser.add_argument("--manual-dir", default=None, help="folder with the original MNIST .gz files, to prepare the data offline")
    parser.add_argument("--num-train", type=int, default=None, help="use only the first N training images (quick runs)")
    parser.add_argument("--num-test", type=int, default=None, help="use only the first N test images (quick runs)")
    parser.add_argument("--jit-compile", default=defaults.jit_compile, choices=tuple(train.JIT_COMPILE), help="compile the training step (XLA on TensorFlow/JAX, torch.compile on PyTorch); auto: Keras's choice")
    parser.add_argument("--steps-per-execution", type=int, default=defaults.steps_per_execution, help="training steps per call into the compiled step (tensorflow and jax; torch needs 1)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")
    cli.add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.resume:
        config = train.saved_config(args.resume)
        config.data_dir = args.data_dir or config.data_dir
        config.manual_dir = args.manual_dir or config.manual_dir
        output_dir = train.check_output_dir(args.resume)
        return run(config, output_dir, args.verbose)
    config = train.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        architecture=args.architecture,
        filters=args.filters,
        blocks=args.blocks,
        conditional=args.conditional,
        beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs,
        free_bits=args.free_bits,
        iw_samples=args.iw_samples,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        dataset=args.dataset,
        binarize=args.binarize,
        final_iw_samples=args.final_iw_samples,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        num_train=args.num_train,
        num_test=args.num_test,
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
    )
    output_dir = train.check_output_dir(args.output_dir or train.default_output_dir())
    return run(config, output_dir, args.verbose)


def run(config, output_dir, verbose):
    cli.announce_backend(PROG)
    metrics = train.train_and_evaluate(config, output_dir, verbose=verbose)
    print(
        f"{PROG}: test loss {metrics['test_loss']:.2f} nats, "
        f"-ELBO {metrics['test_neg_elbo']:.2f} "
        f"(reconstruction {metrics['test_reconstruction_loss']:.2f}, "
        f"KL {metrics['test_kl_loss']:.2f}); "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch; outputs in {output_dir}"
    )
    if "test_iw_nll" in metrics:
        print(
            f"{PROG}: test IWAE NLL {metrics['test_iw_nll']:.2f} nats "
            f"(k={metrics['test_iw_samples']}), -ELBO {metrics['test_neg_elbo']:.2f}"
        )


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
