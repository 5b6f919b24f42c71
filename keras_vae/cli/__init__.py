"""The command line: `keras-vae COMMAND [flags]` and `python scripts/COMMAND.py`.

    flags.py      the parser, the shared flags, one-line errors (`run_command`)
    parsers.py    every command's flags and checks: no engine needed
    train.py generate.py evaluate.py visualize.py export.py explore.py   the six commands

A command line is parsed and checked first (`--help` and flag errors answer
at once), then the engine starts (`backend.start`: a bad `KERAS_BACKEND` is
one line too), then the command's module is imported by name and runs.
"""

import importlib
import sys

from keras_vae.backend import start
from keras_vae.cli.flags import run_command
from keras_vae.cli.parsers import COMMANDS, parse


def launch(command, prog, argv=None):
    """Runs `command` on the line `argv`; returns the exit status.

    Args:
        command: a key of `COMMANDS`.
        prog: the name to use in messages, e.g. `"train.py"`.
        argv: the command's arguments (default `sys.argv[1:]`).
    """

    def run(argv):
        args = parse(command, argv, prog)
        start()  # the engine, once the flags are known to be good
        return importlib.import_module(f"keras_vae.cli.{command}").main(args, prog)

    return run_command(run, prog, argv)


def usage():
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (text, *_) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: keras-vae COMMAND [flags]   (keras-vae COMMAND --help for its flags)",
            "",
            "A variational autoencoder on MNIST in Keras 3. Set KERAS_BACKEND to",
            "tensorflow (the default), jax or torch to choose the engine.",
            "",
            "commands:",
            *lines,
        ]
    )


def main(argv=None):
    """The `keras-vae` command: `keras-vae COMMAND [flags]`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"keras-vae: error: {given}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return launch(argv[0], f"keras-vae {argv[0]}", argv[1:])
