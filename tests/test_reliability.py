"""Interrupted runs resume; files are whole; untrusted files run no code."""

import json
import math
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from conftest import SCRIPTS, kill_after_epoch, one_error_line, run_script
from keras_vae.model import load_model, save_model
from keras_vae import VAE, backend as vae_backend, files
from keras_vae.run import callbacks, folder as run_folder
from keras_vae.errors import BackendError, ModelFileError, UserError

TINY_RUN = [
    "--num-train", "2048", "--num-test", "256", "--hidden-dim", "64",
    "--latent-dim", "4", "--verbose", "0",
]


# Resume ----------------------------------------------------------------------


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path):
    folder = tmp_path / "run"
    command = [sys.executable, SCRIPTS / "train.py", "--epochs", "5", "--output-dir", folder, *TINY_RUN]
    killed_at = kill_after_epoch(command, folder, 2)
    assert 2 <= killed_at < 5, "the run must be killed after epoch 2, before the end"
    assert not (folder / "model.keras").exists()

    result = run_script("train.py", "--epochs", "5", "--output-dir", folder, *TINY_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {killed_at} of 5" in result.stdout

    epochs = [row["epoch"] for row in run_folder.read_history(folder / "history.csv")]
    assert epochs == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (folder / "samples").iterdir()) == [
        f"epoch_{i:03d}.png" for i in range(1, 6)
    ]
    assert not (folder / "backup").exists()
    assert not list(folder.rglob(".tmp*"))
    model = load_model(folder / "model.keras")
    assert int(model.optimizer.iterations) == 5 * 16  # 2048 images / 128
    metrics = json.loads((folder / "metrics.json").read_text())
    assert len(metrics["epoch_seconds"]) == 5


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.slow
def test_resume_flag_and_finished_runs(tmp_path):
    folder = tmp_path / "run"
    assert run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}

    # A finished run is never written over, by either way of resuming.
    one_error_line(
        run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN),
        "already holds a finished run",
    )
    one_error_line(run_script("train.py", "--resume", folder), "already holds a finished run")
    # Other settings pointed at the finished run get the same answer, with no
    # advice to --resume it (which would be refused as above).
    message = one_error_line(
        run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN[:-2], "--latent-dim", "6", "--verbose", "0"),
        "already holds a finished run",
    )
    assert "--resume" not in message
    assert before == {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    # An unfinished run with other settings is refused, naming the difference,
    # and told how to continue it.
    (folder / "metrics.json").unlink()
    one_error_line(
        run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN[:-2], "--latent-dim", "6", "--verbose", "0"),
        "unfinished run with other settings", "latent_dim 4 -> 6", f"--resume {folder}",
    )
    one_error_line(run_script("train.py", "--resume", tmp_path), "no run to resume")


def test_history_and_best_model_skip_non_finite_epochs(tmp_path):
    model = VAE(latent_dim=2, hidden_dim=8)
    history = callbacks.HistoryCSV(tmp_path / "history.csv")
    best = callbacks.BestModelCheckpoint(tmp_path / "best.keras")
    for callback in (history, best):
        callback.set_model(model)
        callback.on_epoch_end(0, {"loss": 10.0, "val_loss": 9.0})
    saved = (tmp_path / "best.keras").stat().st_mtime_ns
    for callback in (history, best):
        callback.on_epoch_end(1, {"loss": math.nan, "val_loss": math.nan})
    assert [row["epoch"] for row in run_folder.read_history(tmp_path / "history.csv")] == [1]
    assert (tmp_path / "best.keras").stat().st_mtime_ns == saved
    assert isinstance(load_model(tmp_path / "best.keras"), VAE)


@pytest.mark.slow
def test_diverging_run_stops_with_a_clear_message(tmp_path):
    # In this process: how a UserError reaches the user is test_scripts'.
    from keras_vae.run.config import TrainConfig
    from keras_vae.run.trainer import train_and_evaluate

    config = TrainConfig(
        epochs=2, learning_rate=1e30, num_train=2048, num_test=256, hidden_dim=64, latent_dim=4
    )
    with pytest.raises(UserError, match="diverged in epoch 1.*--learning-rate"):
        train_and_evaluate(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()


# Never half-written ----------------------------------------------------------


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as temporary:
            temporary.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_temporaries_of_dead_writers_are_removed(tmp_path):
    # What a writer killed between writing and renaming leaves behind.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "samples").mkdir()
    stale = [tmp_path / f".tmp{dead.stdout.strip()}-best.keras",
             tmp_path / "samples" / f".tmp{dead.stdout.strip()}-epoch_002.png"]
    live = tmp_path / f".tmp{os.getpid()}-history.csv"
    kept = [live, tmp_path / ".tmpnotes.txt", tmp_path / "best.keras"]
    for path in stale + kept:
        path.write_text("x")
    files.remove_stale_temporaries(tmp_path)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_temporary_names_keep_the_suffix_writers_need(tmp_path):
    with files.atomic_path(tmp_path / "epoch_0001.weights.h5") as temporary:
        assert temporary.name.endswith(".weights.h5") and temporary.parent == tmp_path
        temporary.write_bytes(b"x")


# Untrusted model files -------------------------------------------------------

MARKER_PAYLOAD = "lambda x: (open({marker!r}, 'w').close(), x)[1]"


def make_lambda_model(path, marker):
    """A .keras file whose Lambda layer creates `marker` when it is built."""
    function = eval(MARKER_PAYLOAD.format(marker=str(marker)))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(function)])
    model.save(path)


def disguise_as_vae(source, target):
    """The same archive with its top-level object claiming to be a VAE."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    config.update(module="keras_vae.model", class_name="VAE", registered_name="keras_vae>VAE")
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_the_payload_is_real_when_safe_mode_is_off(tmp_path):
    marker = tmp_path / "marker"
    make_lambda_model(tmp_path / "evil.keras", marker)
    marker.unlink(missing_ok=True)
    model = keras.saving.load_model(tmp_path / "evil.keras", safe_mode=False)
    model(np.zeros((1, 2), dtype="float32"))
    assert marker.exists()


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.parametrize("disguised", [False, True])
def test_model_with_code_is_refused_and_runs_nothing(tmp_path, disguised):
    marker = tmp_path / "marker"
    make_lambda_model(tmp_path / "evil.keras", marker)
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.keras"
    if disguised:
        disguise_as_vae(tmp_path / "evil.keras", tmp_path / "vae.keras")
        path = tmp_path / "vae.keras"
    with pytest.raises(ModelFileError, match=str(path.name)):
        load_model(path)
    result = run_script("generate.py", path, "--output", tmp_path / "out.png")
    one_error_line(result, path.name)
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_truncated_model_and_foreign_model(tmp_path):
    model = VAE(latent_dim=2, hidden_dim=8)
    save_model(model, tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated.keras: not a .keras model file"):
        load_model(tmp_path / "truncated.keras")
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ModelFileError, match="not a keras-vae VAE"):
        load_model(tmp_path / "other.keras")
    (tmp_path / "good.h5").write_bytes(data)
    with pytest.raises(ModelFileError, match="wrong suffix"):
        load_model(tmp_path / "good.h5")


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_settings_that_ask_for_more_weights_than_the_file_holds_are_refused(tmp_path, monkeypatch):
    save_model(VAE(latent_dim=2, hidden_dim=8), tmp_path / "small.keras")
    with zipfile.ZipFile(tmp_path / "small.keras") as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    config["config"]["hidden_dim"] = 16_384  # the largest allowed: 25 M weights
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "huge.keras", "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    built = []
    monkeypatch.setattr(VAE, "from_config", classmethod(lambda cls, *a, **k: built.append(1)))
    with pytest.raises(ModelFileError, match=r"asks? for 25,\d{3},\d{3} weights.*refused before"):
        load_model(tmp_path / "huge.keras")
    assert not built  # nothing was built, so nothing allocated
    result = run_script("generate.py", tmp_path / "huge.keras", "--output", tmp_path / "out.png")
    one_error_line(result, "huge.keras", "refused before building the model")


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_script("generate.py", tmp_path / "missing.keras", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


# Bad input -------------------------------------------------------------------


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_backend_not_installed_names_the_install_command(monkeypatch):
    monkeypatch.setattr(vae_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match=r"pip install torch==2.13.0"):
        vae_backend.check_backend({"KERAS_BACKEND": "torch"})


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_unknown_backend_names_the_supported_ones():
    with pytest.raises(BackendError, match="tensorflow, jax, torch"):
        vae_backend.check_backend({"KERAS_BACKEND": "theano"})


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--num", "0"], "--num: must be > 0"),
        (["--grid", "2x2", "--num", "5"], "cannot hold --num 5"),
        (["--output", "samples.jpg"], "must end in .png"),
    ],
)
def test_generate_rejects_bad_flags_before_loading(tmp_path, args, message):
    # The model file does not exist: the flags must be refused first.
    one_error_line(run_script("generate.py", tmp_path / "m.keras", *args), message)


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.slow
def test_generate_rejects_a_malformed_grid(tmp_path):
    result = run_script("generate.py", tmp_path / "m.keras", "--grid", "8by8")
    assert result.returncode == 2 and "ROWSxCOLS" in result.stderr


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.slow
def test_output_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    one_error_line(run_script("train.py", "--output-dir", target), "not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.slow
def test_speed_flags_are_checked(tmp_path, backend):
    result = run_script("train.py", "--jit-compile", "maybe")
    assert result.returncode == 2 and "--jit-compile" in result.stderr
    if backend == "torch":
        one_error_line(
            run_script("train.py", "--steps-per-execution", "4", "--output-dir", tmp_path / "r", *TINY_RUN),
            "steps_per_execution must be 1 with the torch backend",
        )
    one_error_line(run_script("train.py", "--steps-per-execution", "0"), "steps_per_execution must be > 0")


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
@pytest.mark.slow
def test_resume_checks_the_settings_it_may_change(tmp_path):
    import dataclasses

    from keras_vae.run.config import TrainConfig
    from keras_vae.run.folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config(dataclasses.asdict(TrainConfig(epochs=1)), {"backend": "jax"})
    one_error_line(
        run_script("train.py", "--resume", run.path, "--steps-per-execution", "0"),
        "steps_per_execution must be > 0",
    )


@pytest.mark.any_backend  # flags: no engine in what it checks
def test_resume_takes_the_resumable_flags_given_even_at_their_defaults(tmp_path):
    import dataclasses

    from keras_vae.cli import parsers
    from keras_vae.run.config import TrainConfig
    from keras_vae.run.folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    saved = TrainConfig(epochs=1, final_iw_samples=5000, jit_compile="false", tensorboard=True)
    run.write_config(dataclasses.asdict(saved), {"backend": "jax"})
    parser = parsers.train_parser("train.py")

    def resumed(*flags):
        args = parser.parse_args(["--resume", str(run.path), *flags])
        parsers.check_train(args)
        return args.config

    # Given, a resumable setting is taken also at its default value...
    config = resumed("--final-iw-samples", "0", "--jit-compile", "auto", "--epochs", "7")
    assert (config.final_iw_samples, config.jit_compile) == (0, "auto")
    assert config.epochs == 1  # ...and a setting that is not resumable stays the run's
    # Not given, the run's own.
    assert (resumed().final_iw_samples, resumed().tensorboard) == (5000, True)


# One process per run folder --------------------------------------------------


def write_lock(folder, pid, host=None):
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    holder = {"host": host or socket.gethostname(), "pid": pid, "started": "2026-11-25T08:00:00"}
    (folder / ".lock").write_text(json.dumps(holder))


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_a_run_folder_another_live_process_writes_is_refused(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        write_lock(folder, holder.pid)
        result = run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN)
        one_error_line(result, "being written by another training process", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_a_lock_from_another_host_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "run"
    write_lock(folder, 12345, host="gpu-node-7")
    result = run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN)
    one_error_line(result, "process 12345 on host gpu-node-7", "delete")


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_a_stale_lock_of_a_killed_run_is_taken_over_and_released(tmp_path):
    folder = tmp_path / "run"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_lock(folder, gone.pid)
    result = run_script("train.py", "--epochs", "1", "--output-dir", folder, *TINY_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Taking over {folder / '.lock'}" in result.stdout
    assert (folder / "metrics.json").is_file() and not (folder / ".lock").exists()


@pytest.mark.any_backend  # files, flags and run folders: no engine in what it checks
def test_the_lock_is_released_when_the_run_fails(tmp_path):
    folder = run_folder.RunFolder(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with folder.lock():
            assert json.loads(folder.lock_file.read_text())["pid"] == os.getpid()
            raise RuntimeError("training failed")
    assert not folder.lock_file.exists()
    with folder.lock():  # and can be taken again
        pass
