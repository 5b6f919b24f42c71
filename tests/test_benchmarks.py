"""The table of "Improving the model" comes from the runs' own files."""

import importlib.util
import json
import os
import sys

import keras
import pytest
from conftest import ROOT, run_python


def load_improvements():
    spec = importlib.util.spec_from_file_location("improvements", ROOT / "benchmarks" / "improvements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(run_dir, iw_nll, seconds, validation_split=10000):
    run_dir.mkdir(parents=True)
    evaluation = {"iw_nll": iw_nll, "neg_elbo": iw_nll + 6.0, "active_units": 17, "latent_dim": 20}
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    metrics = {"epoch_seconds": seconds, "seconds_per_epoch": sorted(seconds)[len(seconds) // 2]}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.json").write_text(json.dumps({"config": {"validation_split": validation_split}}))


def test_table_rows_come_from_the_recorded_numbers_and_name_each_rows_epochs(tmp_path):
    improvements = load_improvements()
    write_run(tmp_path / "mlp", 96.84, [3.0] * 10)
    write_run(tmp_path / "best", 83.5, [240.0] * 25, validation_split=0)
    args = improvements.parse_args(["--runs-dir", str(tmp_path), "--epochs", "10"])
    results = {name: improvements.measure(name, args) for name in ("mlp", "best")}
    assert results["best"]["validation_split"] == 0

    rows = {line.split(" | ")[0].lstrip("| "): line for line in improvements.table(args, results).splitlines()}

    assert set(rows) >= {"mlp", "best"} and "conv" not in rows  # unmeasured rows are left out
    assert "| 10 | 835,384 | 96.84 | 102.84 | 17/20 | 0.5 (3.0) |" in rows["mlp"]
    assert "| 25 | 3,477,705 | 83.50 | 89.50 | 17/20 | 100.0 (240.0) |" in rows["best"]
    assert "--epochs 10 --lr-schedule" not in rows["best"]
    assert (
        "train.py --binarize dynamic --epochs 25 --architecture resnet --iw-samples 5 "
        "--lr-schedule cosine --validation-split 0`"
    ) in rows["best"]
    assert "--output-dir" not in rows["best"]


def test_the_recorded_numbers_are_the_table_in_the_repository():
    improvements = load_improvements()
    args = improvements.parse_args([])
    results = json.loads(improvements.RESULTS.read_text())
    assert (ROOT / "benchmarks" / "IMPROVEMENTS.md").read_text() == improvements.table(args, results)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_children_find_the_package_and_a_failing_one_stops_with_its_message(tmp_path):
    run = load_benchmark()
    printed = run.run_checked([sys.executable, "-c", "import os; print(os.environ['PYTHONPATH'])"])
    assert str(ROOT) in printed.strip().split(os.pathsep)  # keras_vae without an installed package

    with pytest.raises(SystemExit) as stop:  # generate.py fails: its own message, no traceback
        run.time_generate(keras.backend.backend(), tmp_path / "missing.keras", tmp_path)
    message = str(stop.value)
    assert message.startswith("benchmark: ") and "generate.py: error:" in message
    assert "missing.keras" in message


def test_rounds_combine_into_medians_and_same_round_ratios():
    run = load_benchmark()

    def result(name, seconds, **extra):
        return {"name": name, "seconds_per_epoch": seconds, **extra}

    rounds = [  # the machine is twice as slow in round 2: ratios stay put
        [result("pytorch-loop", 4.0), result("jax", 2.0, iwae_seconds=30.0)],
        [result("pytorch-loop", 8.0), result("jax", 4.4)],
        [result("pytorch-loop", 4.2), result("jax", 2.2)],
    ]
    loop, jax = run.combine(rounds)
    assert loop["ratio"] == 1.0 and loop["seconds_per_epoch"] == 4.2
    assert jax["seconds_per_epoch"] == 2.2 and jax["round_seconds"] == [2.0, 4.4, 2.2]
    assert abs(jax["ratio"] - 2.2 / 4.2) < 1e-12  # median of 0.5, 0.55, 0.524
    assert jax["iwae_seconds"] == 30.0  # measured in the first round only


@pytest.mark.any_backend  # the script sets its own backend
def test_torch_step_breakdown_prints_every_part():
    result = run_python([str(ROOT / "benchmarks" / "torch_step.py"), "--repeats", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| forward + losses", "| forward: encoder", "| forward: sampling", "| forward: decoder",
        "| forward: losses", "| forward + backward", "| matrix products in forward + backward",
        "| Adam: Keras's optimizer.apply", "| Adam: fused (what the step uses)", "| loss trackers",
        "| whole train_step",
    ]
    loop_cells = [row.split(" | ")[2] for row in rows[1:]]
    assert sum(cell.startswith("–") for cell in loop_cells) == 2  # Keras's Adam, the trackers
    for row, loop_cell in zip(rows[1:], loop_cells):
        assert float(row.split(" | ")[1]) > 0
        assert loop_cell.startswith("–") or float(loop_cell.split(" (")[0]) > 0
    # Five layers forward; backward, each kernel's gradient and the input's
    # gradient of all but the first layer: 14 products in both models.
    assert "matrix products per forward + backward: 14 in keras_vae, 14 in the loop" in result.stdout


@pytest.mark.any_backend  # the script sets its own backend
def test_jax_step_breakdown_prints_every_part():
    result = run_python([str(ROOT / "benchmarks" / "jax_step.py"), "--repeats", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| fit(), per step", "| compiled train step", "| forward + losses", "| forward + backward",
        "| Adam: optimizer.stateless_apply", "| data: Keras's array iterator, per batch",
        "| x @ W (128x784 . 784x512), forward", "| xᵀ @ g (784x128 . 128x512), kernel gradient",
        "| xᵀ @ g, xᵀ copied to row-major first",
    ]
    for row in rows[1:]:
        assert float(row.split(" | ")[1]) > 0
    assert all(float(row.split(" | ")[2].rstrip(" |")) > 0 for row in rows[-3:])  # NumPy's products


@pytest.mark.slow
def test_the_worker_trains_on_two_devices_and_reports_once(tmp_path, backend, mnist_subset, monkeypatch):
    import numpy as np

    run = load_benchmark()
    arrays = tmp_path / "mnist.npz"
    np.savez(arrays, x_train=mnist_subset.x_train[:512], x_test=mnist_subset.x_test[:64],
             y_test=mnist_subset.y_test[:64])
    command = [*run.launcher(backend, 2), run.HERE / "keras_worker.py", arrays, "--epochs", "2",
               "--batch-size", "128", "--callback-dir", tmp_path / "callbacks", "--devices", "2"]
    printed = run.run_checked(command, backend)
    reports = [line for line in printed.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # the chief's
    result = json.loads(reports[0])
    assert result["devices"] == 2 and len(result["epoch_seconds"]) == 2
    assert "iwae_seconds" not in result  # measured on one device only
    monkeypatch.setattr(sys, "argv", ["run.py", "--devices", "1,2", "--epochs", "2"])
    assert run.parse_args().devices == [1, 2]  # the benchmark's flag


@pytest.mark.any_backend  # the table is arithmetic on recorded numbers
def test_the_resume_table_compares_each_run_with_the_one_it_replaces():
    spec = importlib.util.spec_from_file_location("benchmark_resume", ROOT / "benchmarks" / "resume.py")
    resume = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resume)
    losses = dict(zip(resume.RUNS, (100.0, 100.5, 99.0, 101.0)))
    found = {"jax": {"losses": losses, "killed_at": 3, "weight_difference": 0.05, "seed_weight_difference": 1.5}}
    table = resume.report(resume.parse_args([]), found)
    row = next(line for line in table.splitlines() if line.startswith("| jax"))
    assert row == (
        "| jax | 100.000 | 100.500 | 99.000 | 101.000 | +1.000 (+1.01%) | +0.500 (+0.50%) | +2.000 "
        "| 5.0e-02 | 1.5e+00 |"
    )
    assert "`python benchmarks/resume.py --backends tensorflow,jax,torch --num-train 10000 --epochs 6 --kill-after 3`" in table
