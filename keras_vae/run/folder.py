"""The folder of one training run: what is in it, and where.

`train.py` writes every run into one folder; the scripts that read a run
(`evaluate.py`, `visualize.py`) and the callbacks that write it during
training all find its files through `RunFolder`:

    model.keras          the final model
    best.keras           the model with the lowest validation loss
    config.json          the settings, backend, devices and package versions
    history.csv          per-epoch train and validation losses
    samples/epoch_NNN.png         the same 64 z decoded after each epoch
    reconstructions/epoch_NNN.png test images above their reconstructions
    metrics.json         test-set losses and timings: written last
    figures/             latent scatter and manifold, interpolations,
                         reconstructions, training curves, samples.gif
    logs/                TensorBoard logs (with `--tensorboard`)
    backup/              the resume checkpoint, while the run is unfinished
    .lock                the process writing the run, while it runs

A run is finished when `metrics.json` is written and `backup/` is gone.
"""

import contextlib
import csv
import datetime
import io
import json
import os
import shutil
import socket
from pathlib import Path

from keras_vae import files, untrusted
from keras_vae.data import DataSettings
from keras_vae.errors import DamagedFileError, UserError

# Columns of history.csv, in this order; any other logged metric follows.
HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "neg_elbo",
    "reconstruction_loss",
    "kl_loss",
    "val_loss",
    "val_neg_elbo",
    "val_reconstruction_loss",
    "val_kl_loss",
)


class RunFolder:
    """The paths of a run folder, and what its files say about the run.

    Args:
        path: the folder (it need not exist yet).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.model = self.path / "model.keras"
        self.best_model = self.path / "best.keras"
        self.config = self.path / "config.json"
        self.history = self.path / "history.csv"
        self.metrics = self.path / "metrics.json"
        self.samples = self.path / "samples"
        self.reconstructions = self.path / "reconstructions"
        self.figures = self.path / "figures"
        self.logs = self.path / "logs"
        self.backup = self.path / "backup"
        self.lock_file = self.path / ".lock"

    @classmethod
    def of_model(cls, model_path):
        """The run folder a model file was written into (its parent)."""
        return cls(Path(model_path).parent)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    def check_is_folder(self):
        """Raises `UserError` if the path exists and is not a folder."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--output-dir {self.path} exists and is not a folder")
        return self

    @contextlib.contextmanager
    def lock(self):
        """Holds the folder for this process while the block runs.

        A second training process launched into the same folder is refused,
        naming the process that holds it. A lock left by a process that no
        longer runs (killed, or its machine rebooted) is stale and is taken
        over. The lock is a file, `.lock`, created atomically (`O_EXCL`),
        holding the host name, process id and start time; it is removed when
        the block ends, however it ends.

        Raises:
            UserError: a live process holds the folder, or one on another
                host whose liveness cannot be checked from here.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        for _ in range(2):  # a second try after removing a stale lock
            try:
                descriptor = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_stale_lock()
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(owner, handle)
            break
        else:
            raise UserError(f"{self.path} is locked by another process; try again")
        try:
            yield self
        finally:
            with contextlib.suppress(OSError):
                if json.loads(self.lock_file.read_text()).get("pid") == owner["pid"]:
                    self.lock_file.unlink()

    def _check_stale_lock(self):
        """Removes a lock whose process is gone; raises `UserError` for a live one."""
        try:
            holder = json.loads(self.lock_file.read_text())
            host, pid = holder["host"], int(holder["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, host, pid = {}, None, None  # unreadable: a writer killed mid-write
        if host is not None and host != socket.gethostname():
            raise UserError(
                f"{self.path} is being written by process {pid} on host {host} (since "
                f"{holder.get('started')}); if that process is gone, delete {self.lock_file}"
            )
        if pid is not None and files.process_alive(pid):
            raise UserError(
                f"{self.path} is being written by another training process (pid {pid}, "
                f"since {holder.get('started')}); wait for it, or choose another --output-dir"
            )
        print(f"Taking over {self.lock_file}: its process ({pid}) no longer runs.", flush=True)
        with contextlib.suppress(FileNotFoundError):
            self.lock_file.unlink()

    def holds_run(self):
        """True once a run has written its settings here."""
        return self.config.is_file()

    def is_finished(self):
        """True for a run that wrote its test metrics and removed its checkpoint."""
        return self.metrics.is_file() and not self.backup.is_dir()

    def has_progress(self):
        """True once the run completed an epoch (it committed a checkpoint, or
        wrote a history row): what a new run in this folder would lose."""
        return (self.backup / "training_metadata.json").is_file() or self.history.is_file()

    def clear(self):
        """Deletes the files of an unfinished run, to start it over (`--restart`).

        Raises:
            UserError: the run is finished (its files are never deleted).
        """
        if self.is_finished():
            raise UserError(f"{self.path} holds a finished run; it is not deleted")
        for path in (self.config, self.history, self.metrics, self.model, self.best_model):
            path.unlink(missing_ok=True)
        for folder in (self.backup, self.samples, self.reconstructions, self.figures, self.logs):
            shutil.rmtree(folder, ignore_errors=True)

    def settings(self):
        """The `config` dict of `config.json` (the run's settings), or None.

        None for a folder without `config.json` (no run: a model file copied
        elsewhere). Runs written before the validation split existed held
        none out: their `validation_split` reads 0.

        Raises:
            DamagedFileError: `config.json` is there but damaged, or not a
                run's (read by `untrusted.read_json`: bounded in size and
                depth).
        """
        if not self.config.is_file():
            return None
        lost = "start the run over with --restart, or choose another --output-dir"
        try:
            settings = untrusted.read_json(self.config)
        except OSError as error:
            raise DamagedFileError(f"{self.config} cannot be read ({error.strerror}); {lost}") from None
        except DamagedFileError as error:
            raise DamagedFileError(f"{error}; {lost}") from None
        if not isinstance(settings, dict) or not isinstance(settings.get("config"), dict):
            raise DamagedFileError(f"{self.config}: not a keras-vae run's settings; {lost}")
        settings = dict(settings["config"])
        settings.setdefault("validation_split", 0)
        return settings

    def write_config(self, settings, environment):
        """Writes `config.json`: the settings, and the environment beside them."""
        files.write_json(self.config, {"config": settings, **environment})

    def data_settings(self, default_binarize):
        """The run's `data.DataSettings`, for reading its data again.

        MNIST binarized as `default_binarize`, with the validation split
        unknown (None), when the folder holds no run (a model file copied
        elsewhere, a pretrained model).
        """
        settings = self.settings()
        if settings is None:
            return DataSettings(binarize=default_binarize)
        fields = {key: settings[key] for key in DataSettings._fields if key in settings}
        return DataSettings(**fields, fingerprint=self.data_record().get("fingerprint"))

    def data_record(self):
        """What `config.json` records of the data the run read (`data`: its
        fingerprint, image shape and classes), or an empty dict."""
        if not self.config.is_file():
            return {}
        try:
            record = untrusted.read_json(self.config).get("data", {})
        except (OSError, DamagedFileError, AttributeError):
            return {}
        return record if isinstance(record, dict) else {}

    def read_history(self):
        """The rows of `history.csv` as dicts (empty if absent)."""
        return read_history(self.history)

    def sample_grids(self):
        """The per-epoch sample grids, in epoch order."""
        return sorted(self.samples.glob("epoch_*.png"))


def default_run_dir(backend, root="runs"):
    """`runs/<timestamp>-<backend>`, e.g. `runs/20261123-101500-jax`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{backend}"


def epoch_filename(epoch):
    """`epoch_001.png` for Keras's 0-based epoch 0."""
    return f"epoch_{epoch + 1:03d}.png"


def history_to_csv(rows):
    """Formats a list of per-epoch dicts as CSV text (`HISTORY_COLUMNS` first)."""
    keys = {key for row in rows for key in row}
    columns = [c for c in HISTORY_COLUMNS if c in keys]
    columns += sorted(keys.difference(columns))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_history(path):
    """Reads a `history.csv` back into a list of dicts (empty if absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
        for row in rows
    ]
