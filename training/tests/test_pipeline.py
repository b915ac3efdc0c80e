"""The command line end to end on a tiny synthetic fleet: train, evaluate, export, fixtures."""

from __future__ import annotations

import json

from training import export as ex
from training.train import main
from training.tests.synth import make_frame


def test_train_command_end_to_end(tmp_path):
    """`python -m training train` writes a loadable model dir, card and golden fixture; --init-from fine-tunes it."""
    train = tmp_path / "train.parquet"
    evald = tmp_path / "eval.parquet"
    make_frame(servers=3, steps=300, seed=1, step_seconds=3600).to_parquet(train)
    make_frame(servers=2, steps=120, seed=2, start="2026-03-01T00:00:00Z", step_seconds=3600).to_parquet(evald)
    out = tmp_path / "models" / "tiny"
    golden = tmp_path / "model_golden.json"
    common = ["--data", str(train), "--eval-data", str(evald), "--context", "48", "--horizon", "8",
              "--step-seconds", "3600", "--epochs", "2", "--windows-per-epoch", "32", "--batch-size", "16",
              "--eval-windows", "40", "--calib-windows", "40", "--val-windows", "16", "--val-days", "2",
              "--quiet", "--seed", "3"]
    assert main(["train", *common, "--hidden", "8", "--var-hidden", "4", "--heads", "2",
                 "--out", str(out), "--golden", str(golden)]) == 0
    meta, _ = ex.load_model_dir(out)
    assert meta["training"]["seed"] == 3 and meta["training"]["command"].startswith("python -m training train")
    assert set(meta["evaluation"]["methods"]) == {"model", "persistence", "seasonal_naive", "heuristic"}
    assert (out / "MODEL_CARD.md").read_text().count("| heuristic |") >= 1
    cases = json.loads(golden.read_text())["cases"]
    assert len(cases) >= 2 and len(cases[0]["quantiles"]) == 8 * 14 * 3

    tuned = tmp_path / "models" / "tuned"
    assert main(["train", *common, "--epochs", "1", "--init-from", str(out), "--out", str(tuned), "--golden", ""]) == 0
    assert ex.load_model_dir(tuned)[0]["training"]["init_from"] == str(out)


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
    assert out.exists()
    tr.export_fleet(out, hours=5, servers=2, seed=7, start="2026-01-05T00:00:00Z", binary=str(fake))  # cached
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    assert calls[0].startswith("export --hours 5 --servers 2 --seed 7 --start 2026-01-05T00:00:00Z --out ")
