"""Files from strangers: every crafted model file ends in a one-line refusal,
through the Python API and every command, in bounded memory; a fuzzer
mutates a good file's settings, zip headers and HDF5 shapes.

The corpus is generated here (`tests/hostile.py`): nothing binary is
committed.
"""

import io
import json
import random
import zipfile

import h5py
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import hostile
from conftest import run_python
from keras_vae import VAE, cli, data, pretrained
from keras_vae.errors import DamagedFileError, ModelFileError
from keras_vae.model import load_model, save_model

#: Every command that reads a model file, as a user would run it on `path`.
COMMANDS = {
    "generate": lambda path, out: ["generate", [str(path), "--output", str(out / "samples.png")]],
    "evaluate": lambda path, out: ["evaluate", [str(path), "--iw-samples", "2", "--num-examples", "10"]],
    "visualize": lambda path, out: ["visualize", [str(path), "--output-dir", str(out / "figures")]],
    "export": lambda path, out: ["export", [str(path), "--output-dir", str(out / "export"), "--format",
                                             "onnx" if keras.backend.backend() == "torch" else "tf_saved_model"]],
    "train --init-from": lambda path, out: [
        "train", ["--init-from", str(path), "--latent-dim", "2", "--hidden-dim", "8", "--epochs", "1",
                  "--num-train", "256", "--output-dir", str(out / "run"), "--verbose", "0"],
    ],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    good = folder / "good.keras"
    save_model(VAE(latent_dim=2, hidden_dim=8), good)
    return good, hostile.make_corpus(good, folder)


def refusal(capsys, command, argv):
    """Runs one command in this process; returns its exit status and stderr lines."""
    status = cli.launch(command, f"keras-vae {command}", argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return status, lines


@pytest.mark.parametrize("name", sorted(hostile.CORPUS))
def test_a_crafted_model_file_is_refused_in_one_line_everywhere(corpus, name, tmp_path, capsys):
    _, paths = corpus
    path, fragment = paths[name], hostile.CORPUS[name][1]
    with pytest.raises(ModelFileError) as refused:
        load_model(path)
    message = str(refused.value)
    assert "\n" not in message and path.name in message and fragment in message, message
    for command, line in COMMANDS.items():
        status, lines = refusal(capsys, *line(path, tmp_path))
        assert status == 2 and len(lines) == 1, (command, lines)
        assert path.name in lines[0] and fragment in lines[0], (command, lines[0])
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


@pytest.mark.any_backend  # the checks run before any engine; peak memory of one child
@pytest.mark.slow
def test_memory_stays_bounded_for_every_crafted_file(corpus, tmp_path):
    """Peak RSS of a child that loads every corpus file through the API and
    every command stays within 300 MB of the same child's import floor."""
    _, paths = corpus
    script = tmp_path / "load_all.py"
    script.write_text(
        "import contextlib, io, json, resource, sys\n"
        "import keras_vae\nkeras_vae.start()\nimport keras\n"
        "from keras_vae import cli\nfrom keras_vae.errors import ModelFileError\n"
        "floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "refused = 0\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n        keras_vae.load_model(path)\n"
        "    except ModelFileError:\n        refused += 1\n"
        "    for command in ('generate', 'evaluate', 'visualize', 'export'):\n"
        "        with contextlib.redirect_stderr(io.StringIO()):\n"
        "            refused += cli.launch(command, command, [path, '--output-dir' if command in ('visualize', 'export') else '--seed', sys.argv[1] if command in ('visualize', 'export') else '0']) == 2\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'floor_kib': floor, 'peak_kib': peak, 'refused': refused}))\n"
    )
    result = run_python([script, tmp_path / "out", *paths.values()], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["refused"] == 5 * len(paths)
    grown_mib = (measured["peak_kib"] - measured["floor_kib"]) / 1024
    print(f"peak memory over the import floor: {grown_mib:.0f} MiB")
    assert grown_mib <= 300, f"peak memory grew by {grown_mib:.0f} MiB over the import floor"
    assert max(path.stat().st_size for path in paths.values()) < 10 << 20


# Fuzzing ------------------------------------------------------------------------


def settings_values():
    """What a stranger may write for a setting in config.json."""
    return st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=8),
        st.lists(st.integers(min_value=-5, max_value=5000), max_size=10),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


def mutate_settings(contents, data):
    config = json.loads(contents["config.json"])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(config["config"]) + ["unknown_setting"]))
        config["config"][key] = data.draw(settings_values())
    contents["config.json"] = json.dumps(config, allow_nan=True).encode()
    return hostile_bytes(contents)


def hostile_bytes(contents):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in contents.items():
            archive.writestr(name, value)
    return buffer.getvalue()


def mutate_zip_headers(contents, data):
    """Overwrites bytes of the zip's local headers and central directory only
    (the HDF5 bytes inside are the other strategy's)."""
    blob = bytearray(hostile_bytes(contents))
    headers = []
    for signature, fixed in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22)):
        start = 0
        while (start := blob.find(signature, start)) >= 0:
            headers.extend(range(start, min(start + fixed, len(blob))))
            start += 4
    for _ in range(data.draw(st.integers(1, 4))):
        offset = data.draw(st.sampled_from(headers))
        blob[offset] = data.draw(st.integers(0, 255))
    return bytes(blob)


def mutate_hdf5_shapes(contents, data):
    """Rewrites one weights dataset with another shape (small, so the file stays small)."""
    buffer = io.BytesIO(contents[hostile.WEIGHTS])
    with h5py.File(buffer, "r+") as weights:
        names = []
        weights.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        name = data.draw(st.sampled_from(sorted(names)))
        shape = tuple(data.draw(st.one_of(  # at most 810 000 numbers: the file stays small
            st.lists(st.integers(0, 900), max_size=2), st.lists(st.integers(0, 30), min_size=3, max_size=4),
        )))
        dtype = data.draw(st.sampled_from(["float32", "float16", "float64", "int64", "uint8"]))
        del weights[name]
        weights.create_dataset(name, data=np.zeros(shape, dtype))
    contents[hostile.WEIGHTS] = buffer.getvalue()
    return hostile_bytes(contents)


@pytest.mark.any_backend  # the loader's checks are the engine-free archive checks
@pytest.mark.slow
@settings(max_examples=240, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_model_files_load_or_are_refused_in_one_line(corpus, tmp_path, data):
    good, _ = corpus
    mutate = data.draw(st.sampled_from([mutate_settings, mutate_zip_headers, mutate_hdf5_shapes]))
    path = tmp_path / f"fuzzed-{random.getrandbits(32)}.keras"
    path.write_bytes(mutate(hostile.members(good), data))
    try:
        model = load_model(path)
    except ModelFileError as error:
        assert "\n" not in str(error) and path.name in str(error)
    else:
        assert isinstance(model, VAE)
    finally:
        path.unlink()


# The registry ---------------------------------------------------------------


@pytest.mark.any_backend  # no engine: the registry and its files
def test_the_registry_checks_names_files_and_hashes(tmp_path):
    entries = pretrained.registry()
    name, entry = next(iter(entries.items()))
    (tmp_path / entry["file"]).write_bytes((pretrained.PRETRAINED_DIR / entry["file"]).read_bytes())

    def with_registry(**changes):
        (tmp_path / "models.json").write_text(json.dumps({name: {**entry, **changes}}))

    with_registry()
    assert pretrained.model_path(name, tmp_path) == tmp_path / entry["file"]
    with_registry(sha256="0" * 64)
    with pytest.raises(DamagedFileError, match="sha256 differs"):
        pretrained.model_path(name, tmp_path)
    with_registry(parameters=entry["parameters"] + 1)
    with pytest.raises(DamagedFileError, match="records"):
        pretrained.model_path(name, tmp_path)
    for escape in ("../outside.keras", "/etc/passwd.keras", "sub/../../x.keras"):
        with_registry(file=escape)
        with pytest.raises(DamagedFileError, match="not a plain .keras name"):
            pretrained.model_path(name, tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"../../../x": entry}))
    with pytest.raises(DamagedFileError, match="not a plain model name"):
        pretrained.names(tmp_path)
    (tmp_path / "models.json").write_text("[" * 100_000)
    with pytest.raises(DamagedFileError, match="models.json"):
        pretrained.names(tmp_path)


@pytest.mark.any_backend  # no engine: the command line refuses before one starts
def test_a_refused_command_writes_nothing_and_names_the_file(corpus, tmp_path, capsys):
    # The flags of the sweep's size table, on an honest file.
    good, _ = corpus
    for command, argv, fragment in (
        ("generate", [str(good), "--num", "1000000000"], "generating 1,000,000,000 images needs about"),
        ("evaluate", [str(good), "--iw-samples", "1000000000"], "--iw-samples 1000000000 needs about"),
        ("train", ["--latent-dim", "1000000000"], "latent_dim must be at most 1024"),
        ("train", ["--hidden-dim", "1000000000"], "hidden_dim must be at most 16384"),
        ("train", ["--iw-samples", "1000000000"], "iw_samples must be at most 10000"),
        ("train", ["--batch-size", "60000", "--iw-samples", "10000", "--output-dir", str(tmp_path / "run")],
         "needs about"),
    ):
        status, lines = refusal(capsys, command, argv)
        assert status == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.any_backend  # the data source: no engine
def test_more_examples_than_the_split_holds_is_the_whole_split():
    images, labels = data.load_split("mnist", "test", limit=1_000_000_000)
    assert images.shape == (10_000, 28, 28, 1) and len(labels) == 10_000
