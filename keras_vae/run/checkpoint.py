"""The resume checkpoint of a run (`backup/`), committed once per epoch by a
rename, checked before it is trusted."""

import re
from pathlib import Path

import keras

from keras_vae import files, untrusted
from keras_vae.errors import DamagedFileError
from keras_vae.model.saving import file_bytes
from keras_vae.run.callbacks import finite

_NAME = re.compile(r"epoch_\d{4,7}\.weights\.h5")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_METADATA_BYTES = 1 << 16
#: The committed checkpoints kept: the newest, and the one before it to fall
#: back on if the newest is damaged.
KEEP = 2


class RunCheckpoint(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose checkpoint survives a kill at any moment, and
    a damaged or crafted file.

    At the end of every good epoch it writes the weights, optimizer state and
    the sampling layer's seed state to `epoch_NNNN.weights.h5` (atomically),
    then atomically rewrites `training_metadata.json` to name it, with its
    sha256 and the previous checkpoint's: that rename is the commit. A run
    killed at any point restarts from the last committed epoch, repeating at
    most the one in progress. Keras's own version writes both files in place
    and can be left half-written.

    Before resuming, a checkpoint must be a plain file inside `backup/`
    with its recorded sha256, and pass `untrusted.check_weights_file`
    against the model's settings; a damaged newest checkpoint falls back to
    the one before it (`KEEP`), and with none intact the resume is refused in
    one line that says how to start over.

    Place it last in the callback list, so an epoch is committed only after
    every other file of that epoch is written.

    Args:
        backup_dir: folder for the checkpoint; kept after training (remove it
            with `delete()`).
        write: False for the processes of a parallel torch run but the
            chief: they restore the checkpoint and never write it.
        save_dir: where to write instead of `backup_dir` (the other
            processes of a JAX run, for which Keras's saving is a collective
            of all processes: they save alongside the chief, into a scratch
            folder).
    """

    def __init__(self, backup_dir, write=True, save_dir=None):
        super().__init__(str(backup_dir), delete_checkpoint=False)
        self.directory = Path(backup_dir)
        self.metadata_path = self.directory / "training_metadata.json"
        self.write = write
        self.save_dir = Path(save_dir) if save_dir else self.directory
        self._committed = []  # [(epoch, name, sha256)], newest first

    def committed(self):
        """The committed checkpoints, newest first: `[(epoch, file name, sha256)]`.

        Raises:
            DamagedFileError: `training_metadata.json` is unreadable or names
                something other than a checkpoint file of this folder.
        """
        if not self.metadata_path.is_file():
            return []
        try:
            metadata = untrusted.read_json(self.metadata_path, _MAX_METADATA_BYTES)
        except OSError as error:
            raise self._lost(f"{self.metadata_path} cannot be read ({error.strerror})") from None
        except DamagedFileError as error:
            raise self._lost(str(error)) from None
        entries = [metadata, *(metadata.get("previous") or [])] if isinstance(metadata, dict) else []
        checkpoints = [_entry(item) for item in entries]
        if not checkpoints or None in checkpoints:
            raise self._lost(f"{self.metadata_path} is damaged (not a checkpoint record)")
        return checkpoints

    def resume_point(self, weight_shapes):
        """The newest intact checkpoint: `(epoch, path)`, or `(0, None)` if none
        was committed.

        Args:
            weight_shapes: the model's (`ModelConfig.weight_shapes()`), which
                the checkpoint's arrays must have.

        Returns:
            `(epoch, path, note)`: `note` says which damaged checkpoint was
            passed over (None if none was).

        Raises:
            DamagedFileError: checkpoints were committed but none is intact.
        """
        damaged = []
        for epoch, name, digest in self.committed():
            path = self.directory / name
            problem = _problem(path, digest, weight_shapes)
            if problem is None:
                note = f"{damaged[0]}; resuming from epoch {epoch} instead" if damaged else None
                return epoch, path, note
            damaged.append(problem)
        if damaged:
            raise self._lost(damaged[0])
        return 0, None, None

    def _lost(self, reason):
        run = self.directory.parent
        return DamagedFileError(
            f"{reason}; no intact checkpoint is left to resume {run} from. Start the run "
            f"over with --restart (its completed epochs are lost), or choose another --output-dir"
        )

    def _load_model(self):
        epoch, path, _ = self.resume_point(self.model.settings.weight_shapes())
        if not epoch:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(path)
        self.model._initial_epoch = epoch
        # A newer, damaged checkpoint is dropped at the next commit.
        self._committed = [entry for entry in self.committed() if entry[0] == epoch]

    def on_epoch_end(self, epoch, logs=None):
        if finite(logs):
            self._current_epoch = epoch + 1
            if self.write:
                self._save_model()

    def _save_model(self):
        name = f"epoch_{self._current_epoch:04d}.weights.h5"
        self.save_dir.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(self.save_dir / name, file_bytes(self.model)) as temporary:
            self.model.save_weights(temporary)
            digest = files.sha256(temporary)
        previous = [
            {"epoch": epoch, "weights": old, "sha256": old_digest}
            for epoch, old, old_digest in self._committed[: KEEP - 1]
        ]
        files.write_json(
            self.save_dir / self.metadata_path.name,
            {"epoch": self._current_epoch, "weights": name, "sha256": digest, "previous": previous},
        )
        self._committed = [(self._current_epoch, name, digest)] + self._committed[: KEEP - 1]
        kept = {entry[1] for entry in self._committed}
        for old in self.save_dir.glob("epoch_*.weights.h5"):
            if old.name not in kept:
                old.unlink(missing_ok=True)

    def delete(self):
        """Removes the checkpoint folder once the run is complete."""
        for path in self.directory.glob("*"):
            path.unlink(missing_ok=True)
        self.directory.rmdir()


def _entry(item):
    """`(epoch, name, sha256 or None)` of one metadata record, or None if it
    is not one (a name outside `backup/`, a path, a wrong type)."""
    if not isinstance(item, dict):
        return None
    epoch, name, digest = item.get("epoch"), item.get("weights"), item.get("sha256")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 < epoch < 10**7:
        return None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    if digest is not None and not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        return None
    return epoch, name, digest  # runs written before checksums have none


def _problem(path, digest, weight_shapes):
    """Why the checkpoint at `path` cannot be trusted, or None."""
    if path.is_symlink() or not path.is_file():
        return f"{path} is missing"
    if digest is not None and files.sha256(path) != digest:
        return f"{path} is damaged (its sha256 differs from the one recorded when it was written)"
    try:
        untrusted.check_weights_file(path, weight_shapes, path, path.stat().st_size)
    except DamagedFileError as error:
        return str(error)
    return None
