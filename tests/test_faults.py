"""Faults at the edges: a full disk, a read-only folder, a damaged `backup/`.

Each row of docs/reliability.md's fault table: the outcome is one line (exit 2
for what the user can fix, 1 for the machine's fault), and nothing already
saved is lost. The full disk and the read-only folder are a small tmpfs where
the tests may mount one (root on Linux), else a writer wrapped to fail.
"""

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import subprocess

import h5py
import pytest

from keras_vae import cli, files
from keras_vae.errors import UserError
from keras_vae.run import callbacks
from keras_vae.run.checkpoint import RunCheckpoint
from keras_vae.run.config import TrainConfig
from keras_vae.run.folder import read_history

TINY = dict(epochs=3, num_train=512, num_test=128, hidden_dim=16, latent_dim=2)
TINY_FLAGS = ["--epochs", "3", "--num-train", "512", "--num-test", "128", "--hidden-dim", "16",
              "--latent-dim", "2", "--verbose", "0"]


def launch(capsys, command, argv):
    """One command in this process: `(exit status, stdout, stderr lines)`."""
    status = cli.launch(command, f"keras-vae {command}", [str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run of 3 epochs interrupted after epoch 2: two committed checkpoints."""
    from keras_vae.run.trainer import train_and_evaluate

    folder = tmp_path_factory.mktemp("interrupted") / "run"
    original = callbacks.EpochTimer.on_epoch_begin

    def interrupt_third(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, epoch, logs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(callbacks.EpochTimer, "on_epoch_begin", interrupt_third)
        with pytest.raises(KeyboardInterrupt):
            train_and_evaluate(TrainConfig(**TINY), folder, verbose=0)
    metadata = json.loads((folder / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2 and [p["epoch"] for p in metadata["previous"]] == [1]
    return folder


@pytest.fixture
def run(interrupted_run, tmp_path):
    """A copy of the interrupted run, to damage."""
    return shutil.copytree(interrupted_run, tmp_path / "run")


def shapes():
    return TrainConfig(**TINY).model_config().weight_shapes()


def metadata(run):
    return json.loads((run / "backup" / "training_metadata.json").read_text())


def checkpoint(run, epoch):
    return run / "backup" / f"epoch_{epoch:04d}.weights.h5"


# Damaged checkpoints: the previous intact one, or one line ---------------------


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(run, capsys):
    # The engine's own load: the fallback checkpoint really restores, and the
    # run finishes with one history row per epoch.
    data = bytearray(checkpoint(run, 2).read_bytes())
    data[4096:8192] = bytes(4096)  # 4 KB zeroed: the sha256 tells
    checkpoint(run, 2).write_bytes(bytes(data))
    status, out, errors = launch(capsys, "train", ["--resume", run, "--verbose", "0"])
    assert status == 0, errors
    assert "epoch_0002.weights.h5 is damaged" in out and "resuming from epoch 1 instead" in out
    assert "after epoch 1 of 3" in out
    assert [row["epoch"] for row in read_history(run / "history.csv")] == [1, 2, 3]
    assert not (run / "backup").exists() and (run / "model.keras").is_file()


def fill_value_kernel(path):
    """Rewrites the checkpoint's first kernel as a dataset that stores nothing."""
    with h5py.File(path, "r+") as weights:
        name = "encoder/layers/dense/vars/0"
        shape, dtype = weights[name].shape, weights[name].dtype
        del weights[name]
        weights.create_dataset(name, shape=shape, dtype=dtype, chunks=True, fillvalue=0)


@pytest.mark.any_backend  # the checks run before the engine loads anything
@pytest.mark.parametrize(
    "damage, passed_over",
    [
        ("truncated", "is damaged (its sha256 differs"),
        ("missing", "epoch_0002.weights.h5 is missing"),
        ("crafted, with its sha256 rewritten", "declares"),
    ],
)
def test_each_damaged_checkpoint_is_passed_over(run, damage, passed_over):
    newest = checkpoint(run, 2)
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:1000])
    elif damage == "missing":
        newest.unlink()
    else:
        fill_value_kernel(newest)
        record = metadata(run)
        record["sha256"] = files.sha256(newest)
        files.write_json(run / "backup" / "training_metadata.json", record)
    epoch, path, note = RunCheckpoint(run / "backup").resume_point(shapes())
    assert (epoch, path) == (1, checkpoint(run, 1))
    assert passed_over in note and "resuming from epoch 1 instead" in note


@pytest.mark.any_backend  # the checks run before the engine loads anything
def test_a_checkpoint_written_before_checksums_still_resumes(run):
    record = metadata(run)
    files.write_json(run / "backup" / "training_metadata.json", {"epoch": 2, "weights": record["weights"]})
    assert RunCheckpoint(run / "backup").resume_point(shapes())[:2] == (2, checkpoint(run, 2))


@pytest.mark.any_backend  # the checks run before the engine loads anything
@pytest.mark.parametrize(
    "record, fragment",
    [
        ('{"epoch": 2, "weights": "../../../etc/passwd"}', "not a checkpoint record"),
        ('{"epoch": 2, "weights": "/etc/passwd"}', "not a checkpoint record"),
        ('{"epoch": 2, "weights": "epoch_0002.weights.h5", "previous": [{"epoch": 1, "weights": "../x"}]}', "not a checkpoint record"),
        ('{"epoch": 2, "wei', "not valid JSON"),
        ("[" * 10_000 + "]" * 10_000, "nested too deeply"),
        ("[" * 100_000, "larger than 65,536 bytes"),
    ],
    ids=["parent path", "absolute path", "previous outside", "truncated", "deep", "large"],
)
def test_a_damaged_or_escaping_metadata_file_is_one_line(run, capsys, record, fragment):
    (run / "backup" / "training_metadata.json").write_text(record)
    status, _, errors = launch(capsys, "train", ["--resume", run, "--verbose", "0"])
    assert status == 2 and len(errors) == 1, errors
    assert fragment in errors[0] and "--restart" in errors[0]


@pytest.mark.any_backend  # the checks run before the engine loads anything
@pytest.mark.slow
def test_no_intact_checkpoint_is_one_line_and_restart_starts_over(run, capsys):
    for epoch in (1, 2):
        checkpoint(run, epoch).write_bytes(b"garbage")
    status, _, errors = launch(capsys, "train", ["--resume", run, "--verbose", "0"])
    assert status == 2 and len(errors) == 1, errors
    assert "no intact checkpoint is left" in errors[0] and "--restart" in errors[0]
    status, out, errors = launch(capsys, "train", ["--resume", run, "--restart", "--verbose", "0"])
    assert status == 0, errors
    assert "Resuming" not in out
    assert [row["epoch"] for row in read_history(run / "history.csv")] == [1, 2, 3]


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.parametrize(
    "config, fragment",
    [
        ('{"config": {"epochs": 3, "foo": 1}}', "settings this keras-vae does not know (foo)"),
        ('{"config": {"epochs": "three"}}', "epochs must be a whole number"),
        ('{"config": {"hidden_dim": Infinity}}', "Infinity"),
        ('{"config": ' * 50_000, "nested too deeply"),
        ("", "not valid JSON"),
    ],
    ids=["unknown setting", "string", "Infinity", "deep", "empty"],
)
def test_a_damaged_config_json_is_one_line_on_resume(run, capsys, config, fragment):
    (run / "config.json").write_text(config)
    status, _, errors = launch(capsys, "train", ["--resume", run])
    assert status == 2 and len(errors) == 1, errors
    assert fragment in errors[0] and "config.json" in errors[0]


# A full disk and a read-only folder -------------------------------------------


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` at `path`, or None where this process may not mount one."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    ).returncode == 0 if shutil.which("mount") and os.geteuid() == 0 else False
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder):
    """Writes into `folder` until the disk is full."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as handle:
        while True:
            handle.write(bytes(1 << 16))
            handle.flush()


@pytest.fixture
def faulty_folder(tmp_path, monkeypatch):
    """`fault(code)` -> a folder whose writes fail with `code` (ENOSPC: full,
    EROFS: read-only): a small tmpfs where this process may mount one, else
    a folder where keras-vae's writes are wrapped to fail."""
    stack = contextlib.ExitStack()

    def fault(code, keep=None):
        disk = stack.enter_context(tmpfs(tmp_path / "disk", "1m"))
        folder = disk or tmp_path / "plain"
        folder.mkdir(exist_ok=True)
        for name, data in (keep or {}).items():
            (folder / name).write_bytes(data)
        if disk is None:
            def refuse(*args, **kwargs):
                raise OSError(code, os.strerror(code), str(args[0]) if args else None)

            monkeypatch.setattr(files.os, "replace", refuse)
            monkeypatch.setattr(files.os, "fsync", refuse)
        elif code == errno.ENOSPC:
            fill(disk)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        return folder

    with stack:
        yield fault


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_a_full_disk_is_one_line_and_keeps_the_previous_file(capsys, faulty_folder):
    folder = faulty_folder(errno.ENOSPC, keep={"samples.png": b"the previous grid"})
    status, _, errors = launch(
        capsys, "generate", ["--pretrained", "mlp-dynamic", "--output", folder / "samples.png"]
    )
    assert status == 1 and len(errors) == 1, errors
    assert "the disk is full" in errors[0] and "the previous samples.png is kept" in errors[0]
    assert (folder / "samples.png").read_bytes() == b"the previous grid"


@pytest.mark.any_backend  # files and run folders; the training is the tiny one
@pytest.mark.slow
def test_a_disk_that_fills_during_training_loses_nothing(tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "600k") as disk:
        if disk is None:
            pytest.skip("needs a tmpfs (root on Linux); the wrapped-writer cases cover the message")
        run = disk / "run"
        status, _, errors = launch(capsys, "train", ["--output-dir", run, *TINY_FLAGS])
        assert status == 1 and len(errors) == 1, errors
        assert "could not write" in errors[0] and "the disk is full" in errors[0]
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        status, out, errors = launch(capsys, "train", ["--output-dir", run, *TINY_FLAGS])
        assert status == 0, errors
        assert [row["epoch"] for row in read_history(run / "history.csv")] == [1, 2, 3]


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_a_read_only_folder_is_refused_before_the_work(capsys, faulty_folder):
    folder = faulty_folder(errno.EROFS)
    status, out, errors = launch(
        capsys, "evaluate", ["--pretrained", "mlp-dynamic", "--output", folder / "results.json"]
    )
    assert status == 1 and len(errors) == 1, errors
    assert "read-only" in errors[0] and "results.json" in errors[0]
    assert "iw_nll" not in out  # refused before evaluating


@pytest.mark.any_backend  # files and run folders: no engine in what it checks
def test_a_run_that_completed_no_epoch_does_not_block_its_folder(tmp_path):
    from keras_vae.run.config import check_can_continue
    from keras_vae.run.folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config({**dataclasses.asdict(TrainConfig(**TINY)), "latent_dim": 6}, {})
    assert check_can_continue(TrainConfig(**TINY), run) is run  # nothing to lose: replaced
    run.history.write_text("epoch,loss\n1,200.0\n")
    with pytest.raises(UserError, match="unfinished run with other settings"):
        check_can_continue(TrainConfig(**TINY), run)
