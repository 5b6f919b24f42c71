"""The command line: `keras-vae COMMAND [flags]` and `python scripts/COMMAND.py`.

    flags.py      the parser, the shared flags, one-line errors (`run_command`)
    train.py generate.py evaluate.py visualize.py export.py   the five commands

Each command module has `main(argv, prog)`. `launch` imports the one asked
for by name, so that a command's imports are paid only when it runs.
"""

import importlib
import sys

from keras_vae.cli.flags import run_command

#: command name -> what it does, for `keras-vae --help`.
COMMANDS = {
    "train": "train a VAE on MNIST (writes a run folder)",
    "generate": "decode samples of a saved model into a PNG grid",
    "evaluate": "test-set ELBO and importance-weighted log-likelihood of a saved model",
    "visualize": "latent space, manifold, interpolations and training curves of a saved model",
    "export": "export a saved model's decoder and encoder for serving (SavedModel, ONNX)",
}


def launch(command, prog, argv=None):
    """Runs `keras_vae.cli.<command>.main`; returns the exit status.

    Args:
        command: a key of `COMMANDS`.
        prog: the name to use in messages, e.g. `"train.py"`.
        argv: the command's arguments (default `sys.argv[1:]`).
    """
    module = importlib.import_module(f"keras_vae.cli.{command}")
    return run_command(lambda args: module.main(args, prog), prog, argv)


def usage():
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
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
