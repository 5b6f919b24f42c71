"""The table of "Improving the model" comes from the runs' own files."""

import importlib.util
import json

from conftest import ROOT


def load_improvements():
    spec = importlib.util.spec_from_file_location("improvements", ROOT / "benchmarks" / "improvements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(run_dir, iw_nll, seconds):
    run_dir.mkdir(parents=True)
    evaluation = {"iw_nll": iw_nll, "neg_elbo": iw_nll + 6.0, "active_units": 17, "latent_dim": 20}
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    metrics = {"epoch_seconds": seconds, "seconds_per_epoch": sorted(seconds)[len(seconds) // 2]}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_table_rows_read_the_runs_and_name_each_rows_epochs(tmp_path):
    improvements = load_improvements()
    write_run(tmp_path / "mlp", 96.84, [3.0] * 10)
    write_run(tmp_path / "best", 83.5, [240.0] * 25)
    args = improvements.parse_args(["--runs-dir", str(tmp_path), "--epochs", "10"])

    rows = {line.split(" | ")[0].lstrip("| "): line for line in improvements.table(args).splitlines()}

    assert set(rows) >= {"mlp", "best"} and "conv" not in rows  # unfinished rows are left out
    assert "| 10 | 96.84 | 102.84 | 17/20 | 0.5 (3.0) |" in rows["mlp"]
    assert "| 25 | 83.50 | 89.50 | 17/20 | 100.0 (240.0) |" in rows["best"]
    assert "--epochs 10 --lr-schedule" not in rows["best"]
    assert "train.py --binarize dynamic --epochs 25 --architecture resnet --iw-samples 5 --lr-schedule cosine`" in rows["best"]
    assert "--output-dir" not in rows["best"]
