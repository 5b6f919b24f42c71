"""The entry point of `keras-vae` and of `scripts/*.py`: checks KERAS_BACKEND first.

Importing `keras_vae` checks `KERAS_BACKEND` and raises an `ImportError` that
names the problem (an unknown backend, or one whose package is missing).
This module stands outside the package so that it can catch that error and
answer in one line with exit status 2, like every other error a user can
cause; the commands themselves are `keras_vae.cli`.
"""

import importlib
import sys


def _cli(prog):
    """`keras_vae.cli`, or None after a one-line error for a bad backend."""
    try:
        return importlib.import_module("keras_vae.cli")
    except ImportError as error:  # an unknown or missing KERAS_BACKEND
        print(f"{prog}: error: {error}", file=sys.stderr)
        return None


def launch(command, prog, argv=None):
    """`python scripts/COMMAND.py`: runs the command; returns the exit status."""
    cli = _cli(prog)
    return 2 if cli is None else cli.launch(command, prog, argv)


def main(argv=None):
    """The `keras-vae` command."""
    cli = _cli("keras-vae")
    return 2 if cli is None else cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
