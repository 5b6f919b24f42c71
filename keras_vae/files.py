"""Writing the files a user keeps, atomically; which processes are alive.

Every write goes to a temporary name in the destination folder and is renamed
into place (`os.replace` is atomic on POSIX and Windows), so a crash leaves
either the old file or the new one, never half of one. Models are saved and
loaded by `keras_vae.model.saving`, through `atomic_path`.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

from keras_vae.errors import FileSystemError

# Temporary files are named `.tmp<writer's pid>-<destination's name>`.
_TEMPORARY_PREFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path, expected_bytes=0):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary name ends like `path` (`.keras`, `.weights.h5`, `.png`), so
    writers that pick a format from the name (Keras, PIL) behave. On an
    exception the temporary file is removed and `path` is untouched.

    A disk that cannot hold the new file (`expected_bytes`, or the size of
    the file it replaces or of a sibling of the same kind, whichever is
    largest) is refused before the write, with the `FileSystemError` that a
    write failing on a full disk raises too: a writer that fails midway
    (h5py) reports the fault again on stderr for each of its objects.

    Args:
        path: the destination file.
        expected_bytes: about how large the new file will be.

    Yields:
        A `Path` to write to.

    Raises:
        FileSystemError: a full disk, a read-only folder, no permission.
    """
    path = Path(path)
    temporary = path.with_name(f"{_TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_room(path, expected_bytes)
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        if error.errno not in FILE_SYSTEM_ERRNOS:
            raise
        raise write_error(path, error) from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _check_room(path, expected_bytes):
    """Raises `OSError(ENOSPC)` if `path`'s disk cannot hold the new file."""
    suffix = "".join(path.suffixes)
    similar = (
        sibling.stat().st_size
        for sibling in path.parent.glob(f"*{suffix}")
        if suffix and sibling.is_file()
    )
    needed = max(expected_bytes, *similar, 0)
    if needed and shutil.disk_usage(path.parent).free < needed:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


#: The faults of the file system rather than of the program: a full disk
#: (or quota), a read-only folder, a folder the user may not write.
FILE_SYSTEM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(path, error):
    """The `FileSystemError` of a write to `path` that failed with `error`:
    one line naming the file, the fault and what was kept."""
    path = Path(path)
    fault = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
    }.get(error.errno, "permission denied")
    kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written there"
    return FileSystemError(f"could not write {path}: {fault}; {kept}")


def check_writable(path):
    """Raises `FileSystemError` unless a file can be written at `path`.

    Called before long work whose result goes to `path` (an evaluation's
    `--output`), so that a read-only folder or a full disk is reported
    before the work rather than after it. Creates `path`'s folder, and
    writes and removes a 4 KiB probe beside `path`.
    """
    path = Path(path)
    probe = path.with_name(f"{_TEMPORARY_PREFIX}{os.getpid()}-probe-{path.name}")
    try:
        with atomic_path(probe) as temporary, open(temporary, "wb") as handle:
            handle.write(bytes(4096))
            handle.flush()
            os.fsync(handle.fileno())
    except FileSystemError as error:  # say it of `path`, not of the probe
        raise write_error(path, error.__cause__) from error.__cause__
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


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


def sha256(path):
    """The file's sha256 (hex), read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
