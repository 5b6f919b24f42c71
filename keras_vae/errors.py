"""Errors a user can cause, each reported by the scripts as one line.

Everything here is importable without Keras, so that a bad `KERAS_BACKEND`
can be reported before Keras itself fails to import.
"""


class UserError(Exception):
    """An error the user can fix: bad flags, missing data, a bad file.

    The command-line scripts print its message on one line and exit with
    status 2, without a traceback.
    """


class BackendError(UserError, ImportError):
    """`KERAS_BACKEND` names an unsupported backend, or one not installed."""


class DataUnavailableError(UserError):
    """The dataset is not prepared locally and cannot be downloaded."""


class DataError(UserError, ValueError):
    """The data is there but cannot be used as asked: an empty folder, an
    unreadable image, mixed sizes without `--image-size`, a bad array file, a
    validation split the train split cannot give."""


class ModelFileError(UserError):
    """A path that should hold a keras-vae model does not."""


class DamagedFileError(UserError):
    """A file the project reads (a run's checkpoint or settings, the
    registry) is damaged, crafted, or not one of ours."""


class FileSystemError(UserError):
    """The environment refuses a write: a full disk, a read-only folder.

    The scripts print it on one line, naming the file and what was kept, and
    exit with status 1 (a fault of the machine, not of the flags).
    """
