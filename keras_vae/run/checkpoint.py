"""The resume checkpoint of a run (`backup/`), committed once per epoch by a rename."""

import json
from pathlib import Path

import keras

from keras_vae import files
from keras_vae.run.callbacks import finite


class RunCheckpoint(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose checkpoint survives a kill at any moment.

    At the end of every good epoch it writes the weights, optimizer state and
    the sampling layer's seed state to `epoch_NNNN.weights.h5` (atomically),
    then atomically rewrites `training_metadata.json` to point at it: that
    rename is the commit. A run killed at any point restarts from the last
    committed epoch, repeating at most the one in progress. Keras's own
    version writes both files in place and can be left half-written.

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

    def completed_epochs(self):
        """Epochs committed by an earlier, interrupted run (0 if none)."""
        if not self.metadata_path.is_file():
            return 0
        return int(json.loads(self.metadata_path.read_text())["epoch"])

    def _load_model(self):
        epochs = self.completed_epochs()
        if not epochs:
            return
        metadata = json.loads(self.metadata_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.directory / metadata["weights"])
        self.model._initial_epoch = epochs

    def on_epoch_end(self, epoch, logs=None):
        if finite(logs):
            self._current_epoch = epoch + 1
            if self.write:
                self._save_model()

    def _save_model(self):
        name = f"epoch_{self._current_epoch:04d}.weights.h5"
        self.save_dir.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(self.save_dir / name) as temporary:
            self.model.save_weights(temporary)
        files.write_json(
            self.save_dir / self.metadata_path.name, {"epoch": self._current_epoch, "weights": name}
        )
        for old in self.save_dir.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def delete(self):
        """Removes the checkpoint folder once the run is complete."""
        for path in self.directory.glob("*"):
            path.unlink(missing_ok=True)
        self.directory.rmdir()
