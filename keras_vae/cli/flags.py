"""What the commands share: the parser, the flags, and one way to fail.

The commands parse flags and call the package; errors a user can cause are
reported one way: one line, exit status 2, no traceback (`--debug` shows it).
Nothing here loads an engine: flags are parsed and checked before Keras is
imported (the model file is loaded through `keras_vae.model`'s lazy names).
"""

import argparse
import collections
import dataclasses
import importlib.metadata
import os
import sys
import types
from pathlib import Path

from keras_vae import data, files, model, parallel, pretrained
from keras_vae.backend import check_backend
from keras_vae.errors import FileSystemError, UserError
from keras_vae.model.archive import read_settings
from keras_vae.run.config import DEFAULT_VALIDATION_SPLIT, flag_name
from keras_vae.run.folder import RunFolder


class ArgumentParser(argparse.ArgumentParser):
    """`argparse`'s parser, whose errors are one line and exit status 2.

    argparse prints the whole usage above a bad flag's message; here the
    message alone names the flag and the values it takes (`--help` shows the
    usage). `--help` shows each flag's default (`HelpFormatter`).
    """

    def __init__(self, *args, formatter_class=None, **kwargs):
        super().__init__(*args, formatter_class=formatter_class or HelpFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says it or it has none."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if action.default is None or action.default is False or "default" in help_text:
            return help_text
        return super()._get_help_string(action)


def run_command(main, prog, argv=None):
    """Runs `main(argv)` and turns a `UserError` or a file-system fault into
    a one-line message.

    Args:
        main: the script's main function; returns an exit status or None.
        prog: the script's name, e.g. `"train.py"`, for messages.
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The exit status: 0, 2 for a user error, 1 for a fault of the file
        system (a full disk, a read-only folder), 130 when interrupted.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        return main(argv) or 0
    except FileSystemError as error:  # the machine's fault, not the flags'
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except UserError as error:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a write outside files.atomic_path (a lock, a log)
        if "--debug" in argv or error.errno not in files.FILE_SYSTEM_ERRNOS:
            raise
        print(f"{prog}: error: {files.write_error(error.filename or '?', error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_debug_flag(parser):
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )


def parse_grid(text):
    """Parses `ROWSxCOLS` (e.g. `8x8`) for `argparse`."""
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS like 8x8, got {text!r}")
    if rows <= 0 or cols <= 0:
        raise argparse.ArgumentTypeError(f"rows and columns must be > 0, got {text!r}")
    return rows, cols


def positive_int(text):
    """A whole number > 0, for `argparse`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_int_list(text):
    """Parses `N,N,...` (e.g. `32,64`) of positive ints for `argparse`."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 32,64, got {text!r}")
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"numbers must be > 0, got {text!r}")
    return values


def _flag_type(field):
    """The `argparse` type of a config field: its annotation, `int | None` -> int."""
    kind = field.type
    if isinstance(kind, types.UnionType):
        kind = next(arg for arg in kind.__args__ if arg is not type(None))
    return parse_int_list if kind is tuple else kind


class _Given(argparse.Action):
    """Stores a flag's value and notes that the command line gave it, in
    `namespace.given` (`given_flags`): a resumed run takes the resumable
    settings given, also where they equal the default."""

    def __init__(self, *args, switch=False, **kwargs):
        self.switch = switch
        if switch:
            kwargs.update(nargs=0, default=False)
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True if self.switch else values)
        given_flags(namespace).add(self.dest)


def given_flags(args):
    """The names of the config fields the command line gave (`add_config_flags`)."""
    if not hasattr(args, "given"):
        args.given = set()
    return args.given


def add_config_flags(parser, config_class):
    """Adds one flag per field of a settings dataclass (e.g. `TrainConfig`).

    The field `latent_dim` becomes `--latent-dim`, with the field's default,
    and the help text and choices of its metadata (`run.config.setting`); a bool
    field becomes a switch. Which flags were given is kept (`given_flags`).
    """
    for field in dataclasses.fields(config_class):
        flag = flag_name(field.name)
        meta = field.metadata
        if field.type is bool:
            parser.add_argument(flag, action=_Given, switch=True, help=meta["help"])
            continue
        parser.add_argument(
            flag, action=_Given, type=_flag_type(field), default=field.default, choices=meta["choices"],
            metavar=meta["metavar"], help=meta["help"],
        )


def add_process_flags(parser):
    """Flags that join several JAX processes (hosts) into one data-parallel run.

    Each sets one of Keras's variables for `keras.distribution.initialize`
    (`engines.jax.PROCESS_VARIABLES`), which may be set instead. torch's
    processes are started and joined by torchrun.
    """
    group = parser.add_argument_group("several JAX processes (multi-host)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="the address of process 0, the same in every process (or $KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="how many processes train together (or $KERAS_DISTRIBUTION_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index, 0 to N - 1; 0 writes the run (or $KERAS_DISTRIBUTION_PROCESS_ID)")
    group.add_argument("--join-timeout", type=float, default=parallel.JOIN_TIMEOUT_S, metavar="SECONDS", help="how long a process waits to reach process 0 at --coordinator before it gives up in one line (default %(default)g)")


def apply_process_flags(args):
    """Puts the flags of `add_process_flags` into Keras's environment variables.

    A process checks first that the processes can meet (`parallel.reach_coordinator`).

    Raises:
        UserError: the flags on another backend than JAX, incomplete, or a
            coordinator that cannot be reached (or served).
    """
    given = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": args.coordinator,
        "KERAS_DISTRIBUTION_NUM_PROCESSES": args.num_processes,
        "KERAS_DISTRIBUTION_PROCESS_ID": args.process_id,
    }
    if all(value is None for value in given.values()):
        return
    if check_backend() != "jax":
        raise UserError(
            "--coordinator, --num-processes and --process-id join JAX processes; on torch, "
            "start the processes with torchrun (--nnodes); TensorFlow trains on one host "
            f"(Keras 3's fit fails under MultiWorkerMirroredStrategy: {parallel.KERAS_MULTI_WORKER_BUG})"
        )
    if any(value is None for value in given.values()):
        raise UserError("give all three of --coordinator, --num-processes and --process-id")
    if not 0 <= args.process_id < args.num_processes:
        raise UserError(
            f"--process-id must lie in [0, {args.num_processes}), got {args.process_id}"
        )
    if not args.join_timeout > 0:
        raise UserError(f"--join-timeout must be a positive number of seconds, got {args.join_timeout:g}")
    parallel.reach_coordinator(args.coordinator, args.process_id, args.join_timeout)
    os.environ.update({name: str(value) for name, value in given.items()})


def config_from_args(config_class, args):
    """The settings dataclass filled from the flags of `add_config_flags`."""
    return config_class(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)}
    )


def announce_backend(prog, where):
    """Prints the engine a command runs on, e.g. at the start of training.

    Args:
        prog: the command's name.
        where: the devices, e.g. `"cpu:0"` or `"data parallel over 2 devices"`.
    """
    keras_version = importlib.metadata.version("keras")
    print(f"{prog}: Keras {keras_version}, backend {check_backend()} ({where})", flush=True)


def check_data_settings(dataset, binarize, image_size=None):
    """Raises `UserError` for an unknown dataset or binarization, or a bad image size."""
    problems = data.setting_problems(dataset, binarize)
    if image_size is not None:
        try:
            data.parse_image_size(image_size)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise UserError("; ".join(problems))


def add_model_argument(parser):
    """The model a script works on: a `.keras` path, or `--pretrained NAME`."""
    parser.add_argument("model", nargs="?", default=None, help="a .keras file written by train.py")
    parser.add_argument("--pretrained", default=None, metavar="NAME", help=f"use a pretrained model instead of a file: {', '.join(pretrained.names()) or 'none in this copy'}")


def resolve_model(args):
    """Sets `args.model` to the file of `--pretrained NAME`, if given; returns it.

    The file is checked as the safe loader checks it (`model.archive`), so
    a file that is not a keras-vae model is refused before an engine loads;
    its checked settings go to `args.settings`.

    Raises:
        UserError: neither or both of a model path and `--pretrained`, or
            not a keras-vae model file.
    """
    if args.pretrained is None:
        if args.model is None:
            raise UserError("give a model file or --pretrained NAME (one of them)")
    else:
        path = str(pretrained.model_path(args.pretrained))
        if args.model not in (None, path):
            raise UserError("give a model file or --pretrained NAME (one of them)")
        args.model = path
    args.settings = read_settings(args.model)  # the safe loader's checks
    return args.model


def default_output(args, leaf):
    """Where a script writes by default: `leaf` beside the model file, or for a
    pretrained model (whose folder belongs to the repository) in
    `runs/pretrained/NAME/leaf`."""
    if args.pretrained is not None:
        return Path("runs") / "pretrained" / args.pretrained / leaf
    return Path(args.model).parent / leaf


def output_folder(path):
    """`path` as a `Path`, if it is a folder or is not there yet (made), and
    can be written.

    Raises:
        UserError: it exists and is not a folder.
        FileSystemError: it cannot be written (read-only, a full disk).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} exists and is not a folder")
    files.check_writable(path / "output")  # a read-only folder: refused before the work
    return path


def add_test_data_flags(parser, default_binarize):
    """Flags of the scripts that take a model and the images of one split."""
    add_model_argument(parser)
    parser.add_argument("--dataset", default=None, help="dataset to use: a TFDS name, folder:PATH or npz:PATH (default: the run's, from config.json beside the model, else mnist)")
    parser.add_argument("--binarize", default=None, choices=data.BINARIZATIONS, help=f"default: the run's, else {default_binarize}")
    parser.add_argument("--split", default="test", choices=("test", "validation"), help="the test split (default), or the validation images the run held out of the training set (its --validation-split; 10000 for a model without a run folder)")
    parser.add_argument("--num-examples", type=positive_int, default=None, help="use only the first N images of the split (default: all)")
    parser.add_argument("--image-size", default=None, metavar="HxW", help="resize the images (default: the run's --image-size)")
    parser.add_argument("--channels", type=int, default=None, choices=data.CHANNELS, help="convert the images to 1 (grey) or 3 (colour) channels (default: the run's)")
    parser.add_argument("--data-dir", default=None, help="prepared TFDS data directory (default: the run's --data-dir where it exists, else $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    parser.add_argument("--manual-dir", default=None, help="folder with the dataset's original files (default: the run's where it exists)")


ModelAndData = collections.namedtuple(
    "ModelAndData", "model images labels dataset binarize split settings"
)


def load_model_and_test_split(args, default_binarize):
    """The model of `args.model` and the images of the split `args.split`.

    `args` are as the command's check left them: `args.model` resolved and
    its archive checked (`resolve_model`). The dataset, binarization and
    validation split are the model's run's (from `config.json` beside it, or
    the pretrained registry), unless the flags say otherwise.

    Returns:
        A `ModelAndData`: `(model, images, labels, dataset, binarize, split,
        settings)`, the last the `data.DataSettings` the images were read with.

    Raises:
        UserError: bad flags, a bad model file, or data that cannot be had.
    """
    if args.settings.likelihood != "bernoulli":  # 8-bit pixels: never binarized
        default_binarize = "none"
    settings = pretrained.data_settings(args.model) or RunFolder.of_model(args.model).data_settings(default_binarize)
    if args.dataset and args.dataset != settings.dataset:  # other data than the run's
        settings = settings._replace(dataset=args.dataset, fingerprint=None)
    settings = settings._replace(
        binarize=args.binarize or settings.binarize,
        image_size=args.image_size or settings.image_size,
        channels=args.channels or settings.channels,
    )
    dataset, binarize, validation_split = settings.dataset, settings.binarize, settings.validation_split
    check_data_settings(dataset, binarize, settings.image_size)
    if args.split == "validation" and not validation_split:
        if validation_split == 0:
            raise UserError(
                f"{args.model}'s run held out no validation images (--validation-split 0): "
                "its validation curve is the test split"
            )
        settings = settings._replace(validation_split=DEFAULT_VALIDATION_SPLIT)
    vae = model.load_model(args.model)
    try:
        images, labels = settings.load_split(args.split, args.data_dir, args.manual_dir, args.num_examples)
    except ValueError as error:
        raise UserError(str(error)) from None
    if images.shape[1:] != tuple(vae.image_shape):
        have, want = ("x".join(map(str, shape)) for shape in (images.shape[1:], vae.image_shape))
        raise UserError(
            f"the {dataset} images are {have} (height x width x channels), the model's {want}: "
            "give --image-size and --channels to match the model"
        )
    return ModelAndData(vae, images, labels, dataset, binarize, args.split, settings)
