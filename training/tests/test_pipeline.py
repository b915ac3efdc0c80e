"""The command line end to end on tiny fleets: train, evaluate, export, fixture, fine-tune."""

from __future__ import annotations

import json

import numpy as np

from training import export as ex
from training.train import main
from training.tests.synth import make_frame

TINY_FLAGS = ["--context", "48", "--horizon", "8", "--step-seconds", "3600", "--patch", "4", "--epochs", "2",
              "--windows-per-epoch", "64", "--batch-size", "32", "--eval-windows", "40", "--calib-windows", "40",
              "--val-windows", "64", "--quiet", "--seed", "3", "--real-traces", "", "--bench-seconds", "0.05",
              "--real-every", "8"]


def test_train_command_end_to_end(tmp_path):
    """`python -m training train` writes a loadable model dir, card and golden fixture."""
    train = tmp_path / "train.parquet"
    evald = tmp_path / "eval.parquet"
    make_frame(servers=3, steps=300, seed=1, step_seconds=3600).to_parquet(train)
    make_frame(servers=2, steps=120, seed=2, start="2026-03-01T00:00:00Z", step_seconds=3600).to_parquet(evald)
    out = tmp_path / "models" / "tiny"
    golden = tmp_path / "model_golden.json"
    assert main(["train", "--data", str(train), "--eval-data", str(evald), *TINY_FLAGS, "--hidden", "8", "--heads", "2",
                 "--out", str(out), "--golden", str(golden), "--data-dir", str(tmp_path)]) == 0
    meta, _ = ex.load_model_dir(out)
    assert meta["training"]["seed"] == 3 and meta["training"]["command"].startswith("python -m training train")
    assert set(meta["evaluation"]["simulator"]["methods"]) == {"model", "persistence", "median_1h", "median_2h",
                                                               "seasonal_naive", "heuristic"}
    assert meta["architecture"]["loc_method"] == "median12"  # the command line's default location
    subsets = meta["evaluation"]["simulator"]["subsets"]
    assert all(r["max_abs_diff_vs_all_14"] == 0.0 for r in subsets.values())
    assert meta["throughput"]["rows_per_cpu_second"] > 0
    assert "## Evaluation" in (out / "MODEL_CARD.md").read_text()
    cases = json.loads(golden.read_text())["cases"]
    assert len(cases) >= 5 and np.array(cases[0]["quantiles"]).shape == (8, 3)


def test_fine_tune_on_partial_metrics_holds_out_the_tail(tmp_path):
    """A user's file with only some metrics (NaN allowed) and no --eval-data: the last 25 % of
    every series is held out automatically, the model is scored before and after fine-tuning."""
    base = tmp_path / "base"
    frame = make_frame(servers=3, steps=300, seed=1, step_seconds=3600)
    frame.to_parquet(tmp_path / "t.parquet")
    make_frame(servers=2, steps=120, seed=2, step_seconds=3600).to_parquet(tmp_path / "e.parquet")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), "--eval-data", str(tmp_path / "e.parquet"), *TINY_FLAGS,
                 "--hidden", "8", "--heads", "2", "--out", str(base), "--golden", "", "--data-dir", str(tmp_path)]) == 0
    mine = make_frame(servers=2, steps=300, seed=5, step_seconds=3600)[["timestamp", "server", "cpu_user_pct", "mem_used_pct"]]
    mine.loc[mine.index[::17], "cpu_user_pct"] = np.nan
    mine.to_parquet(tmp_path / "mine.parquet")
    tuned = tmp_path / "tuned"
    assert main(["train", "--data", str(tmp_path / "mine.parquet"), "--init-from", str(base), *TINY_FLAGS,
                 "--epochs", "1", "--out", str(tuned), "--data-dir", str(tmp_path)]) == 0
    meta, _ = ex.load_model_dir(tuned)
    e = meta["evaluation"]
    assert meta["training"]["init_from"] == str(base)
    assert set(e["user"]["per_series"]) == set(e["user_before"]["per_series"]) == {
        f"srv00{k}/{m}" for k in range(2) for m in ("cpu_user_pct", "mem_used_pct")}
    assert not (tmp_path / "tests").exists()  # no golden fixture for a model outside models/tft-v3


def test_default_data_comes_from_the_exporter(tmp_path):
    """Without --data the pipeline calls `fleetcast export` with the documented arguments and caches the file."""
    import sys
    from pathlib import Path

    from training import train as tr

    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake-fleetcast"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from training.tests.synth import make_frame\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "make_frame(servers=2, steps=50).to_parquet(sys.argv[sys.argv.index('--out') + 1])\n"
    )
    fake.chmod(0o755)
    out = tmp_path / "data" / "x.parquet"
    assert tr.export_fleet(out, hours=5, servers=2, seed=7, start="2026-01-05T00:00:00Z", binary=str(fake)) == out
    tr.export_fleet(out, hours=5, servers=2, seed=7, start="2026-01-05T00:00:00Z", binary=str(fake))  # cached
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    assert calls[0].startswith("export --hours 5 --servers 2 --seed 7 --start 2026-01-05T00:00:00Z --out ")


def test_leaveout_command_scores_every_fold_with_a_model_that_never_saw_it(tmp_path):
    """`python -m training leaveout`: one fit per fold of real series, each without the fold's
    series (--exclude-real), scored on the fold's held-out tails; the merged JSON goes into a
    model's card with `train --leaveout`."""
    from training.series import DEFAULT_REAL_TRACES, REPO_ROOT

    if not (REPO_ROOT / DEFAULT_REAL_TRACES).is_dir():
        import pytest

        pytest.skip("no real traces")
    train = tmp_path / "train.parquet"
    make_frame(servers=2, steps=800, seed=1).to_parquet(train)
    make_frame(servers=2, steps=500, seed=2, start="2026-03-01T00:00:00Z").to_parquet(tmp_path / "eval.parquet")
    flags = ["--horizon", "24", "--epochs", "1", "--windows-per-epoch", "64",
             "--batch-size", "32", "--val-windows", "64", "--quiet", "--seed", "3", "--hidden", "8", "--heads", "2",
             "--real-every", "96", "--data", str(train), "--eval-data", str(tmp_path / "eval.parquet"),
             "--data-dir", str(tmp_path)]
    out = tmp_path / "lo.json"
    assert main(["leaveout", *flags, "--folds", "cpu,grok_asg_anomaly+ec2_network_in_257a54", "--jobs", "2",
                 "--leaveout-out", str(out)]) == 0
    result = json.loads(out.read_text())
    folds = {f["fold"]: f for f in result["folds"]}
    cpu = folds["cpu"]["series"]
    assert len(cpu) == 4 and set(cpu) <= set(folds["cpu"]["excluded_from_fit"])
    assert set(result["per_series"]) == set(cpu) | {"ec2_network_in_257a54"}
    assert result["pooled_cpu"]["series"] == 4
    assert {"median_1h", "median_2h", "persistence"} <= set(result["pooled"])
    model_dir = tmp_path / "m"
    assert main(["train", *flags, "--out", str(model_dir), "--golden", "", "--eval-windows", "20", "--calib-windows", "20",
                 "--bench-seconds", "0.05", "--leaveout", str(out)]) == 0
    assert "never seen in training (leave-series-out" in (model_dir / "MODEL_CARD.md").read_text()
