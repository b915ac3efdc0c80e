#!/usr/bin/env python3
"""Benchmark of fleetcast's own TFT in PyTorch eager mode (issue 4, Python side).

Loads the shipped model directory (default `models/tft-v3`: model.json + weights.pt, written by
`python -m training train`) through the `training` package, and times `model(past_values,
metric, profile, last_timestamp)` -- the same computation as the exported ONNX graph -- under
`torch.inference_mode()` with `torch.set_num_threads(2)`.

tft-v3 is channel-independent: ONE ROW = ONE METRIC of one server (past_values [rows, 288], NaN =
not observed), so a server with all 14 metrics is 14 rows. Batch sizes are in rows; every table
reports rows/s and servers/s (= rows/s / 14, servers with all 14 metrics):

* per batch size (default 1/14/112/448/1792 rows = 1 metric, 1/8/32/128 servers): median
  seconds per call, rows/s, servers/s, CPU-s, peak RSS;
* per fleet size (default 90 and 1000 servers, as the original-path bench): 14 rows per server,
  in batches of --fleet-batch rows (default 448 = 32 servers, the predictor's batch).

The repo root (which holds `training/`) is put on sys.path; --repo-root overrides it.
Inputs are random but plausible raw metric rows (a few NaN gaps); speed does not depend on values.

    python benches/python/fleetcast_eager.py --json-out target/bench-fleetcast-eager.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from pathlib import Path


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_model(model_dir: Path, untrained: bool):
    import torch
    from training.model import TemporalFusionTransformer, TFTConfig

    if untrained:
        return TemporalFusionTransformer(TFTConfig()).eval(), {"name": "untrained default TFTConfig"}
    meta = json.loads((model_dir / "model.json").read_text())
    model = TemporalFusionTransformer(TFTConfig.from_json(meta["architecture"]))
    state = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), meta


METRICS_PER_SERVER = 14


def inputs(rows: int, cfg, seed: int):
    """`rows` metric rows: servers' 14 metrics in catalog order (the last server may be partial),
    each a level plus noise inside the metric's range, ~2 % of the steps NaN (not observed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    metric = torch.arange(rows, dtype=torch.int64) % cfg.n_metrics
    low = torch.tensor(cfg.range_low[: cfg.n_metrics])[metric].unsqueeze(1)
    high = torch.tensor([h if h > 0 else 200.0 for h in cfg.range_high[: cfg.n_metrics]])[metric].unsqueeze(1)
    level = low + (high - low) * (0.2 + 0.5 * torch.rand(rows, 1, generator=g))
    noise = 0.05 * (high - low) * torch.randn(rows, cfg.context_length, generator=g)
    past = torch.minimum(torch.maximum(level + noise, low), high).float()
    past[torch.rand(rows, cfg.context_length, generator=g) < 0.02] = float("nan")
    past[:, -1] = level[:, 0]  # the last step observed
    server = torch.arange(rows) // cfg.n_metrics
    last_ts = (1_767_571_200 + cfg.step_seconds * torch.randint(0, 100_000, (rows // cfg.n_metrics + 1,), generator=g,
                                                                dtype=torch.int64))[server]
    profile = torch.randint(0, cfg.n_profiles, (rows // cfg.n_metrics + 1,), generator=g, dtype=torch.int64)[server]
    return past, metric, profile, last_ts


def time_calls(fn, min_calls: int, min_seconds: float):
    """(median wall, min wall, median CPU) seconds per call, and the call count, after 2 warm-ups.

    On a shared machine the minimum is the best estimate of the uncontended cost; CPU seconds
    (user+sys of the whole process) are much less sensitive to other load than wall time."""
    for _ in range(2):
        fn()
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < min_calls or time.perf_counter() - start < min_seconds:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if len(walls) >= 10_000:
            break
    return statistics.median(walls), min(walls), statistics.median(cpus), len(walls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(__file__).resolve().parents[2]
    ap.add_argument("--repo-root", type=Path, default=default_root, help="directory holding training/")
    ap.add_argument("--model-dir", type=Path, help="model directory (default <repo-root>/models/tft-v3)")
    ap.add_argument("--untrained", action="store_true",
                    help="no model directory: default TFTConfig, random weights (same speed)")
    ap.add_argument("--batch-sizes", default="1,14,112,448,1792", help="rows per call (14 rows = one server)")
    ap.add_argument("--fleets", default="90,1000", help="fleet sizes (servers x 14 rows) forecast in batches of --fleet-batch rows")
    ap.add_argument("--fleet-batch", type=int, default=448, help="rows per call for the fleets (default 448 = 32 servers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-calls", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=3.0, help="time budget per measurement")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    sys.path.insert(0, str(args.repo_root.resolve()))
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model_dir = args.model_dir or args.repo_root / "models" / "tft-v3"
    if not args.untrained and not (model_dir / "weights.pt").is_file():
        print(f"no shipped model at {model_dir} (model.json + weights.pt); pass --model-dir or --untrained",
              file=sys.stderr)
        return 2
    model, meta = load_model(model_dir, args.untrained)
    cfg = model.cfg
    params = sum(p.numel() for p in model.parameters())
    rss_loaded = vm_kib("VmRSS")

    if getattr(cfg, "n_metric_slots", None) is None or meta.get("layout", "series") != "series":
        print(f"{model_dir} is not a one-row-per-metric (layout series, tft-v3) model", file=sys.stderr)
        return 2

    def run(b: int):
        past, metric, prof, ts = inputs(b, cfg, seed=b)

        def call():
            with torch.inference_mode():
                y, _, _ = model(past, metric, prof, ts)
            assert y.shape == (b, cfg.horizon, 3)

        return call

    rows = []
    for b in [int(x) for x in args.batch_sizes.split(",") if x.strip()]:
        hwm = reset_peak_rss()
        load = os.getloadavg()[0]
        wall, best, cpu, n = time_calls(run(b), args.min_calls, args.min_seconds)
        rows.append({"batch_rows": b, "seconds_per_call": wall, "min_seconds_per_call": best, "cpu_s_per_call": cpu,
                     "calls": n, "rows_per_s": b / wall, "rows_per_s_best": b / best, "rows_per_cpu_s": b / cpu,
                     "servers_per_s": b / wall / METRICS_PER_SERVER, "servers_per_cpu_s": b / cpu / METRICS_PER_SERVER,
                     "peak_rss_mib": vm_kib("VmHWM") / 1024 if hwm else None, "loadavg_1m_before": load})

    fleets = []
    for n_servers in [int(x) for x in args.fleets.split(",") if x.strip()]:
        total_rows = n_servers * METRICS_PER_SERVER
        chunks = [min(args.fleet_batch, total_rows - i) for i in range(0, total_rows, args.fleet_batch)]
        calls = [run(c) for c in chunks]

        def fleet():
            for c in calls:
                c()

        hwm = reset_peak_rss()
        load = os.getloadavg()[0]
        wall, best, cpu, n = time_calls(fleet, max(3, args.min_calls // 2), args.min_seconds)
        fleets.append({"servers": n_servers, "rows": total_rows, "batch_rows": args.fleet_batch, "seconds": wall,
                       "min_seconds": best, "cpu_s": cpu, "calls": n, "rows_per_s": total_rows / wall,
                       "servers_per_s": n_servers / wall, "servers_per_s_best": n_servers / best,
                       "servers_per_cpu_s": n_servers / cpu, "rows_per_cpu_s": total_rows / cpu,
                       "peak_rss_mib": vm_kib("VmHWM") / 1024 if hwm else None, "loadavg_1m_before": load})

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nfleetcast TFT, PyTorch {torch.__version__} eager, inference_mode, {torch.get_num_threads()} threads; "
          f"model {meta.get('name', model_dir)} ({params:,} params, hidden {cfg.hidden}, heads {cfg.heads}); "
          f"RSS after load {rss_loaded / 1024:.0f} MiB, process peak {peak:.0f} MiB\n")
    print("| batch (rows) | ms per call (median) | ms (min) | rows/s (median) | rows/s (best) | servers/s (median) | "
          "CPU-ms per call | rows per CPU-s | servers per CPU-s | peak RSS | calls | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch_rows']} | {1000 * r['seconds_per_call']:.1f} | {1000 * r['min_seconds_per_call']:.1f} | "
              f"{r['rows_per_s']:.0f} | {r['rows_per_s_best']:.0f} | {r['servers_per_s']:.0f} | "
              f"{1000 * r['cpu_s_per_call']:.1f} | {r['rows_per_cpu_s']:.0f} | {r['servers_per_cpu_s']:.0f} | "
              f"{r['peak_rss_mib']:.0f} MiB | {r['calls']} | {r['loadavg_1m_before']:.1f} |")
    print(f"\n| servers (x {METRICS_PER_SERVER} rows) | seconds (median) | seconds (min) | rows/s | servers/s (median) | "
          "servers/s (best) | CPU-s | servers per CPU-s | peak RSS | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in fleets:
        print(f"| {f['servers']} | {f['seconds']:.3f} | {f['min_seconds']:.3f} | {f['rows_per_s']:.0f} | "
              f"{f['servers_per_s']:.0f} | {f['servers_per_s_best']:.0f} | {f['cpu_s']:.3f} | "
              f"{f['servers_per_cpu_s']:.0f} | {f['peak_rss_mib']:.0f} MiB | {f['loadavg_1m_before']:.1f} |")
    if args.json_out:
        out = {"bench": "fleetcast_eager", "layout": "series (one row = one metric of one server)",
               "metrics_per_server": METRICS_PER_SERVER, "model_dir": None if args.untrained else str(model_dir),
               "model_name": meta.get("name"), "params": params, "architecture": cfg.to_json(),
               "threads": torch.get_num_threads(), "rss_after_load_mib": rss_loaded / 1024,
               "peak_rss_mib": peak, "batches": rows, "fleets": fleets,
               "versions": {"python": platform.python_version(), "torch": torch.__version__},
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
