"""The `keras-vae` command, and the launcher behind `scripts/*.py`.

    keras-vae train [flags]       = python scripts/train.py [flags]
    keras-vae generate MODEL      = python scripts/generate.py MODEL
    keras-vae evaluate MODEL      = python scripts/evaluate.py MODEL
    keras-vae visualize MODEL     = python scripts/visualize.py MODEL
    keras-vae export MODEL        = python scripts/export.py MODEL

The commands live in `keras_vae.commands`. Importing `keras_vae` checks
`KERAS_BACKEND` first and raises an `ImportError` that names the problem (an
unknown backend, or one whose package is missing). This module stands
outside the package so that it can catch that error and answer in one line
with exit status 2, like every other error a user can cause.
"""

import importlib
import sys

#: command name -> what it does, for `keras-vae --help`.
COMMANDS = {
    "train": "train a VAE on MNIST (writes a run folder)",
    "generate": "decode samples of a saved model into a PNG grid",
    "evaluate": "test-set ELBO and importance-weighted log-likelihood of a saved model",
    "visualize": "latent space, manifold, interpolations and training curves of a saved model",
    "export": "export a saved model's decoder and encoder for serving (SavedModel, ONNX)",
}


def launch(command, prog, argv=None):
    """Runs `keras_vae.commands.<command>.main`; returns the exit status.

    Args:
        command: a key of `COMMANDS`.
        prog: the name to use in messages, e.g. `"train.py"`.
        argv: the command's arguments (default `sys.argv[1:]`).
    """
    try:
        module = importlib.import_module(f"keras_vae.commands.{command}")
        from keras_vae import cli
    except ImportError as error:  # an unknown or missing KERAS_BACKEND
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return cli.run(lambda args: module.main(args, prog), prog, argv)


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


if __name__ == "__main__":
    sys.exit(main())
