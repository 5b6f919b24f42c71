"""Every command's flags, and the checks that need no engine.

`parse(command, argv, prog)` parses and checks a command line before Keras
is imported, so `--help` and every flag error answer at once; the command's
module (`keras_vae.cli.<command>`) then does the work with the parsed
arguments. Each command has a parser builder here and, where flags must be
checked together, a check that fills in what the work needs.
"""

import argparse
import dataclasses
import importlib.util
import socket
import sys
from pathlib import Path

from keras_vae import files, memory
from keras_vae.backend import EXPORT_FORMATS, check_backend, check_export_format
from keras_vae.cli import flags
from keras_vae.errors import UserError
from keras_vae.run.config import TrainConfig, check_can_continue, saved_config
from keras_vae.run.folder import RunFolder, default_run_dir

ENGINE = "Set KERAS_BACKEND=tensorflow|jax|torch to choose the engine."


def train_parser(prog):
    parser = flags.ArgumentParser(
        prog=prog, description=f"Train a variational autoencoder on MNIST with Keras 3. {ENGINE}"
    )
    flags.add_config_flags(parser, TrainConfig)
    parser.add_argument("--output-dir", default=None, help="run folder (default: runs/<timestamp>-<backend>); an unfinished run there is resumed")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR with its saved settings (other flags but --data-dir, --manual-dir, --jit-compile, --steps-per-execution, --devices, --tensorboard and --final-iw-samples are ignored)")
    parser.add_argument("--restart", action="store_true", help="start the unfinished run in --output-dir (or --resume RUN_DIR) over from epoch 0: its checkpoint, history and pictures are deleted first (for a run whose checkpoint is damaged; a finished run is never deleted)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None, help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch (default: 1 in a terminal, 2 when the output goes to a file)")
    flags.add_process_flags(parser)
    flags.add_debug_flag(parser)
    return parser


def check_train(args):
    """Sets `args.config` (a checked `TrainConfig`), `args.run` and `args.verbose`."""
    flags.apply_process_flags(args)
    if args.verbose is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    if args.resume:
        args.run = RunFolder(args.resume).check_is_folder()
        # The run's own settings, but for the resumable ones given as flags
        # (where the data is, speed, logging); replace() checks them again.
        changes = {
            name: getattr(args, name)
            for name in TrainConfig.resumable_settings()
            if name in flags.given_flags(args)
        }
        args.config = dataclasses.replace(saved_config(args.run), **changes)
    else:
        args.config = flags.config_from_args(TrainConfig, args)
        args.run = RunFolder(args.output_dir or default_run_dir(check_backend())).check_is_folder()
    # A finished run, or another one: refused now.
    check_can_continue(args.config, args.run, restart=args.restart)
    config = args.config
    memory.check_fits(
        memory.training_bytes(config.model_config(), config.batch_size),
        f"training with --batch-size {config.batch_size} and {config.model_config().parameter_count():,} weights",
    )


def parse_digit(text):
    """`--digit`: `"all"` or a class number, for `argparse`."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a digit 0-9 or all, got {text!r}")


def suffix(ending):
    """An `argparse` type: a path that ends in `ending`."""

    def path(text):
        if Path(text).suffix.lower() != ending:
            raise argparse.ArgumentTypeError(f"{text} must end in {ending}")
        return text

    return path


def generate_parser(prog):
    parser = flags.ArgumentParser(prog=prog, description="Decode samples from the prior of a saved keras-vae model.")
    flags.add_model_argument(parser)
    parser.add_argument("--num", type=flags.positive_int, default=None, help="number of images (default 64), or images per digit with --digit all (default 10)")
    parser.add_argument("--digit", type=parse_digit, default=None, help="conditional models only: the digit (class) to generate, 0-9, or 'all' for one row per digit (the default for them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draw")
    parser.add_argument("--output", type=suffix(".png"), default="samples.png", help="PNG grid to write")
    parser.add_argument("--sample-pixels", action="store_true", help="draw each image's pixels from p(x|z) (seeded by --seed) instead of showing its mean (the pixel probabilities of a Bernoulli decoder)")
    parser.add_argument("--npy", type=suffix(".npy"), default=None, help="also save the images, shape (num, height, width) for grey, (num, height, width, channels) for colour, to this .npy file")
    parser.add_argument("--grid", type=flags.parse_grid, default=None, metavar="ROWSxCOLS", help="grid shape (default: near-square)")
    flags.add_debug_flag(parser)
    return parser


def check_grid(grid, num, digit):
    """Raises `UserError` if `--grid` cannot hold the images or does not apply."""
    if grid is None:
        return
    if digit == "all":
        raise UserError("--grid does not apply to --digit all (one row per digit)")
    rows, cols = grid
    if rows * cols < num:
        raise UserError(f"--grid {rows}x{cols} cannot hold --num {num} images")


def check_generate(args):
    check_grid(args.grid, args.num or 64, args.digit)
    flags.resolve_model(args)
    settings = args.settings
    count = args.num or 64
    if settings.num_classes and args.digit in (None, "all"):  # one row per class
        count = settings.num_classes * (args.num or 10)
    memory.check_fits(memory.decoding_bytes(settings, count), f"generating {count:,} images")
    files.check_writable(args.output)
    if args.npy:
        files.check_writable(args.npy)


def evaluate_parser(prog):
    parser = flags.ArgumentParser(prog=prog, description="Likelihood evaluation of a saved keras-vae model on the test (or validation) split.")
    flags.add_test_data_flags(parser, default_binarize="dynamic")
    parser.add_argument("--iw-samples", type=flags.positive_int, default=5000, help="importance samples k per image (5000: Burda et al.)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none when the output is not a terminal)")
    parser.add_argument("--max-rows", type=flags.positive_int, default=None, help="latent vectors decoded per forward pass and device (memory vs. speed; default: the fastest size measured, docs/performance.md)")
    parser.add_argument("--devices", default="1", metavar="N|all", help="split the images over N devices (as train.py --devices: on torch, N processes it starts, or torchrun's); the numbers are those of one device")
    flags.add_process_flags(parser)
    flags.add_debug_flag(parser)
    return parser


def check_evaluate(args):
    flags.apply_process_flags(args)
    flags.resolve_model(args)
    needed = memory.importance_bytes(args.settings, args.iw_samples, args.max_rows or memory.MAX_ROWS)
    memory.check_fits(needed, f"--iw-samples {args.iw_samples}")
    if args.output:  # before the evaluation, not after it
        files.check_writable(args.output)


def visualize_parser(prog):
    parser = flags.ArgumentParser(prog=prog, description="Pictures of a saved keras-vae model and of its training run.")
    flags.add_test_data_flags(parser, default_binarize="none")
    parser.add_argument("--output-dir", default=None, help="folder for the pictures (default: figures/ beside the model; runs/pretrained/NAME/figures for --pretrained)")
    parser.add_argument("--run-dir", default=None, help="training-run folder with history.csv and samples/ (default: the model's folder)")
    flags.add_debug_flag(parser)
    return parser


def check_visualize(args):
    """Sets `args.output_dir` (a folder, or one to make)."""
    if args.num_examples is not None and args.num_examples < 10:
        raise UserError(f"--num-examples must be >= 10, got {args.num_examples}")
    flags.resolve_model(args)
    args.output_dir = flags.output_folder(args.output_dir or flags.default_output(args, "figures"))


def export_parser(prog):
    parser = flags.ArgumentParser(prog=prog, description="Export the decoder and encoder of a saved keras-vae model for serving.")
    flags.add_model_argument(parser)
    parser.add_argument("--format", default="tf_saved_model", choices=EXPORT_FORMATS, help="tf_saved_model (tensorflow or jax backend) or onnx (tensorflow or torch backend)")
    parser.add_argument("--output-dir", default=None, help="folder for the two artifacts (default: export-<format>/ beside the model; runs/pretrained/NAME/export-<format> for --pretrained)")
    flags.add_debug_flag(parser)
    return parser


def check_export(args):
    """Sets `args.output_dir`; refuses a format this backend cannot export."""
    check_export_format(args.format, check_backend())
    flags.resolve_model(args)
    default = flags.default_output(args, f"export-{args.format}")
    args.output_dir = flags.output_folder(args.output_dir or default)


def explore_parser(prog):
    parser = flags.ArgumentParser(prog=prog, description="Explore a saved keras-vae model in the browser: the latent map, sliders, a drawing pad and interpolations.")
    flags.add_test_data_flags(parser, default_binarize="none")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens the app to the network)")
    parser.add_argument("--port", type=port_number, default=0, help="port to listen on (default 0: a free one, printed)")
    parser.add_argument("--cache-dir", default=None, help="folder for the latent map's cache (default: explore/ beside the model; runs/pretrained/NAME/explore for --pretrained)")
    parser.add_argument("--no-cache", action="store_true", help="compute the latent map afresh and write nothing")
    flags.add_debug_flag(parser)
    return parser


#: The addresses that only this machine reaches.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def port_number(text):
    port = flags.positive_int(text) if text != "0" else 0
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text}")
    return port


def check_explore(args):
    """Sets `args.cache` (a file, or None) and `args.socket` (listening)."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"explore needs {' and '.join(missing)}: pip install -e '.[explore]'")
    flags.resolve_model(args)
    folder = None if args.no_cache else flags.output_folder(args.cache_dir or flags.default_output(args, "explore"))
    args.cache = None if folder is None else folder / "cache.npz"
    args.socket = listen(args.host, args.port)


def listen(host, port):
    """A socket bound to `host:port`, before the model is loaded.

    Raises:
        UserError: the address cannot be had (in use, unknown, not allowed).
    """
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    server.set_inheritable(False)
    return server


#: command -> (what it does, for `keras-vae --help`; its parser; the check of its arguments).
COMMANDS = {
    "train": ("train a VAE on MNIST (writes a run folder)", train_parser, check_train),
    "generate": ("decode samples of a saved model into a PNG grid", generate_parser, check_generate),
    "evaluate": (
        "test-set ELBO and importance-weighted log-likelihood of a saved model",
        evaluate_parser, check_evaluate,
    ),
    "visualize": (
        "latent space, manifold, interpolations and training curves of a saved model",
        visualize_parser, check_visualize,
    ),
    "export": (
        "export a saved model's decoder and encoder for serving (SavedModel, ONNX)",
        export_parser, check_export,
    ),
    "explore": (
        "explore a saved model in the browser (latent map, sliders, drawing)",
        explore_parser, check_explore,
    ),
}


def parse(command, argv, prog):
    """The checked arguments of `command`'s line `argv`; no engine is loaded.

    Raises:
        SystemExit: `--help`, or a flag argparse refuses (exit status 2).
        UserError: flags that do not go together, or a path that cannot be used.
    """
    _, build, check = COMMANDS[command]
    args = build(prog).parse_args(argv)
    check(args)
    return args

