"""Writing the files a user keeps, atomically; which processes are alive.

Every write goes to a temporary name in the destination folder and is renamed
into place (`os.replace` is atomic on POSIX and Windows), so a crash leaves
either the old file or the new one, never half of one. Models are saved and
loaded by `keras_vae.model.saving`, through `atomic_path`.
"""

import contextlib
import json
import os
from pathlib import Path

# Temporary files are named `.tmp<writer's pid>-<destination's name>`.
_TEMPORARY_PREFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary name ends like `path` (`.keras`, `.weights.h5`, `.png`), so
    writers that pick a format from the name (Keras, PIL) behave. On an
    exception the temporary file is removed and `path` is untouched.

    Args:
        path: the destination file.

    Yields:
        A `Path` to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{_TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(folder):
    """Removes what writers killed inside `atomic_path` left in `folder`.

    A process killed between writing a temporary file and renaming it leaves
    its temporary file (named as in `atomic_path`) behind; the destination
    itself is untouched. Files of a process that is still running are kept.

    Args:
        folder: a folder, searched with its subfolders.
    """
    for path in Path(folder).rglob(f"{_TEMPORARY_PREFIX}*-*"):
        pid = path.name[len(_TEMPORARY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def process_alive(pid):
    """True if a process with this id runs on this host (this process too)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path, data):
    """Writes `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
