#!/usr/bin/env python3
"""Benchmark of the original system's forecast path (issue 4, Python side).

Re-creates, on synthetic data, what the original daemon does per forecast round
(argus-catalog §4 "Inference in the daemon", predict path steps 3-4):

    TimeSeriesDataSet.from_dataset(training, frame, predict=True)
    -> to_dataloader(batch_size=128, num_workers=0)
    -> TemporalFusionTransformer.predict(mode="raw")

with the catalog §4 configuration: hidden 128, 8 attention heads, dropout 0.2,
hidden_continuous_size 64, QuantileLoss with the 7 default quantiles, 14 targets under a
MultiNormalizer of GroupNormalizer(groups=[server_id], transformation="softplus"),
encoder 288 / prediction 96 steps of 5 minutes, static categorical `profile`, known reals
hour/day_of_week/month/is_weekend, unknown categorical `status`, and (by default) the
original's unknown reals: its 15 metrics plus 18 per-timestamp fleet features.

The weights are untrained (random init from `from_dataset`): this measures speed and
memory, not accuracy. Values are random but plausible (per-profile baselines from catalog §2,
diurnal swing, AR(1) noise).

Each fleet size runs in a fresh subprocess so that peak RSS is per size. Usage:

    python benches/python/original_tft.py                      # 90 and 1000 servers
    python benches/python/original_tft.py --servers 90 --repeats 1 --json-out out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

METRICS = [  # catalog §1: the 14 target metrics (cascade_impact excluded)
    "cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "cpu_idle_pct", "java_cpu_pct",
    "mem_used_pct", "swap_used_pct", "disk_usage_pct", "net_in_mb_s", "net_out_mb_s",
    "back_close_wait", "front_close_wait", "load_average", "uptime_days",
]
PCT = set(METRICS[:8])
STATES = ["critical_issue", "healthy", "heavy_load", "idle", "maintenance",
          "morning_spike", "offline", "recovery"]
# catalog §2: name pattern and (mean, std) per metric, in METRICS order; pct as fractions
PROFILES = {
    "ml_compute": ("ppml%04d", [(.45, .12), (.08, .03), (.02, .01), (.45, .15), (.50, .15), (.72, .10), (.05, .03), (.55, .08), (8.5, 3), (5.2, 2), (2, 1), (2, 1), (6.5, 2), (25, 2)]),
    "database": ("ppdb%03d", [(.25, .08), (.12, .04), (.15, .05), (.48, .12), (.10, .05), (.68, .10), (.03, .02), (.70, .10), (35, 12), (28, 10), (8, 3), (6, 2), (4.2, 1.5), (25, 2)]),
    "web_api": ("ppweb%03d", [(.18, .06), (.05, .02), (.03, .02), (.74, .10), (.25, .08), (.45, .10), (.02, .01), (.35, .08), (85, 25), (120, 35), (15, 5), (12, 4), (2.8, 1), (25, 2)]),
    "conductor_mgmt": ("ppcon%02d", [(.15, .06), (.06, .02), (.02, .01), (.77, .08), (.20, .06), (.42, .08), (.02, .01), (.40, .08), (22, 8), (18, 6), (5, 2), (4, 2), (3.2, 1.2), (25, 2)]),
    "data_ingest": ("ppetl%03d", [(.35, .10), (.10, .03), (.08, .03), (.47, .12), (.45, .12), (.62, .12), (.04, .02), (.65, .12), (150, 45), (95, 30), (10, 4), (8, 3), (5.5, 2), (25, 2)]),
    "risk_analytics": ("pprisk%03d", [(.55, .15), (.08, .03), (.02, .01), (.35, .15), (.60, .15), (.70, .10), (.05, .03), (.50, .10), (12, 4), (8, 3), (3, 1), (2, 1), (8.2, 2.5), (25, 2)]),
    "generic": ("ppgen%03d", [(.12, .05), (.04, .02), (.01, .01), (.83, .08), (.08, .03), (.35, .08), (.01, .01), (.30, .08), (15, 8), (12, 6), (2, 1), (2, 1), (1.5, .8), (25, 2)]),
}
ENCODER, HORIZON, STEP_S = 288, 96, 300
QUANTILES = [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98]


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0) so the next read is the peak of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_frame(n_servers: int, n_steps: int, seed: int, fleet_features: bool):
    """Synthetic fleet, one row per (server, 5-minute step), shaped like the original's."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    names, profiles = [], []
    counters = {p: 0 for p in PROFILES}
    plist = list(PROFILES)
    for i in range(n_servers):
        p = plist[i % len(plist)]
        counters[p] += 1
        names.append(PROFILES[p][0] % counters[p])
        profiles.append(p)
    # the original's server_id: str(int(sha256(name).hex[:8], 16) % 1e6)
    ids = [str(int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) % 1_000_000) for n in names]
    if len(set(ids)) != len(ids):  # collisions only warn in the original; keep groups distinct here
        ids = [f"{s}_{k}" for k, s in enumerate(ids)]

    start = pd.Timestamp("2026-01-05T00:00:00")
    ts = start + pd.to_timedelta(np.arange(n_steps) * STEP_S, unit="s")
    hours = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
    diurnal = np.sin((hours - 9.0) / 24.0 * 2 * np.pi)  # peak mid-afternoon

    vals = np.empty((len(METRICS), n_servers, n_steps), dtype=np.float64)
    for s, p in enumerate(profiles):
        base = PROFILES[p][1]
        noise = rng.standard_normal((len(METRICS), n_steps))
        ar = np.empty_like(noise)  # AR(1), phi 0.9, unit marginal variance
        ar[:, 0] = noise[:, 0]
        for t in range(1, n_steps):
            ar[:, t] = 0.9 * ar[:, t - 1] + 0.436 * noise[:, t]
        for m, (mu, sd) in enumerate(base):
            v = mu * (1 + 0.25 * diurnal) + sd * ar[m]
            if METRICS[m] in PCT:
                v = np.clip(v * 100, 0, 100).round(2)
            elif METRICS[m] in ("back_close_wait", "front_close_wait"):
                v = np.maximum(np.rint(v), 0)
            elif METRICS[m] == "uptime_days":
                v = np.clip(np.rint(v), 0, 30)
            else:
                v = np.maximum(v, 0).round(2)
            vals[m, s] = v

    df = pd.DataFrame({
        "server_id": np.repeat(ids, n_steps),
        "server_name": np.repeat(names, n_steps),
        "profile": np.repeat(profiles, n_steps),
        "timestamp": np.tile(ts.to_numpy(), n_servers),
        "time_idx": np.tile(np.arange(n_steps), n_servers),
    })
    for m, name in enumerate(METRICS):
        df[name] = vals[m].reshape(-1)
    df["cascade_impact"] = rng.uniform(0, 0.1, len(df)).round(3)
    df["status"] = rng.choice(STATES, len(df), p=[.02, .7, .08, .06, .02, .06, .02, .04])
    tsr = pd.DatetimeIndex(df["timestamp"])
    df["hour"] = tsr.hour.astype("float64")
    df["day_of_week"] = tsr.dayofweek.astype("float64")
    df["month"] = tsr.month.astype("float64")
    df["is_weekend"] = (tsr.dayofweek >= 5).astype("float64")

    fleet_cols: list[str] = []
    if fleet_features:  # catalog §4: 18 per-timestamp fleet features
        src = {"cpu": vals[0], "mem": vals[5], "iowait": vals[2], "load": vals[12]}
        feats = {}
        for k, a in src.items():
            feats[f"fleet_{k}_mean"] = a.mean(0)
            feats[f"fleet_{k}_std"] = a.std(0)
            feats[f"fleet_{k}_max"] = a.max(0)
        feats["fleet_pct_cpu_high"] = (vals[0] > 80).mean(0)
        feats["fleet_pct_mem_high"] = (vals[5] > 85).mean(0)
        feats["fleet_pct_iowait_high"] = (vals[2] > 15).mean(0)
        for k, name in (("cpu", "cpu_vs_fleet"), ("mem", "mem_vs_fleet"), ("iowait", "iowait_vs_fleet")):
            df[name] = (src[k] - src[k].mean(0, keepdims=True)).reshape(-1)
            fleet_cols.append(name)
        for name, per_t in feats.items():
            df[name] = np.tile(per_t, n_servers)
            fleet_cols.append(name)
    return df, fleet_cols


def build(df, fleet_cols, batch_size: int):
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
    from pytorch_forecasting.data import GroupNormalizer, MultiNormalizer, NaNLabelEncoder
    from pytorch_forecasting.metrics import QuantileLoss

    unknown_reals = METRICS + ["cascade_impact"] + fleet_cols if fleet_cols else list(METRICS)
    training = TimeSeriesDataSet(
        df,
        time_idx="time_idx",
        target=list(METRICS),
        group_ids=["server_id"],
        max_encoder_length=ENCODER,
        min_encoder_length=ENCODER // 2,
        max_prediction_length=HORIZON,
        min_prediction_length=1,
        static_categoricals=["profile"],
        time_varying_known_reals=["hour", "day_of_week", "month", "is_weekend"],
        time_varying_unknown_categoricals=["status"] if fleet_cols else [],
        time_varying_unknown_reals=unknown_reals,
        target_normalizer=MultiNormalizer(
            [GroupNormalizer(groups=["server_id"], transformation="softplus") for _ in METRICS]
        ),
        categorical_encoders={
            "server_id": NaNLabelEncoder(add_nan=True),
            "status": NaNLabelEncoder(add_nan=True),
            "profile": NaNLabelEncoder(add_nan=True),
        },
        add_relative_time_idx=True,
        add_target_scales=True,
        add_encoder_length=True,
        allow_missing_timesteps=True,
    )
    model = TemporalFusionTransformer.from_dataset(
        training,
        learning_rate=0.01,
        hidden_size=128,
        attention_head_size=8,
        dropout=0.2,
        hidden_continuous_size=64,
        loss=QuantileLoss(QUANTILES),
        reduce_on_plateau_patience=4,
    )
    model.eval()
    return training, model


def predict_once(training, model, df, batch_size: int):
    """The original's predict path: dataset + loader + predict(mode="raw"). Times both parts."""
    from pytorch_forecasting import TimeSeriesDataSet

    c0, t0 = time.process_time(), time.perf_counter()
    ds = TimeSeriesDataSet.from_dataset(training, df, predict=True, stop_randomization=True)
    dl = ds.to_dataloader(train=False, batch_size=batch_size, num_workers=0)
    t1 = time.perf_counter()
    out = model.predict(
        dl,
        mode="raw",
        trainer_kwargs=dict(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False),
    )
    t2, c2 = time.perf_counter(), time.process_time()
    pred = out.output["prediction"] if hasattr(out, "output") else out["prediction"]
    n = pred[0].shape[0] if isinstance(pred, (list, tuple)) else pred.shape[0]
    shape = [len(pred)] + list(pred[0].shape) if isinstance(pred, (list, tuple)) else list(pred.shape)
    return t1 - t0, t2 - t1, c2 - c0, n, shape


def worker(args) -> dict:
    import warnings
    import logging

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    t_imp = time.perf_counter()
    import torch
    import pytorch_forecasting
    import lightning

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    import_s = time.perf_counter() - t_imp
    rss_import = vm_kib("VmRSS")

    t = time.perf_counter()
    df, fleet_cols = make_frame(args.servers, ENCODER + HORIZON, 42, not args.minimal_features)
    data_s = time.perf_counter() - t
    t = time.perf_counter()
    training, model = build(df, fleet_cols, args.batch_size)
    build_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    rss_setup = vm_kib("VmRSS")

    runs = []
    hwm_ok = reset_peak_rss()
    for i in range(args.repeats + 1):  # run 0 is the cold call (first Trainer, allocator warm-up)
        load = os.getloadavg()[0]
        ds_s, pred_s, cpu_s, n, shape = predict_once(training, model, df, args.batch_size)
        runs.append({"dataset_s": ds_s, "predict_s": pred_s, "total_s": ds_s + pred_s,
                     "cpu_s": cpu_s, "loadavg_1m_before": load})
        assert n == args.servers, (n, args.servers)
    peak_predict_kib = vm_kib("VmHWM") if hwm_ok else None
    warm = runs[1:] or runs
    med = statistics.median(r["total_s"] for r in warm)
    return {
        "servers": args.servers,
        "windows": n,
        "output_shape": shape,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "fleet_features": not args.minimal_features,
        "params": params,
        "cold_total_s": runs[0]["total_s"],
        "warm_runs": warm,
        "median_s": med,
        "median_dataset_s": statistics.median(r["dataset_s"] for r in warm),
        "median_predict_s": statistics.median(r["predict_s"] for r in warm),
        "min_s": min(r["total_s"] for r in warm),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in warm),
        "forecasts_per_cpu_s": args.servers / statistics.median(r["cpu_s"] for r in warm),
        "forecasts_per_s": args.servers / med,
        "forecasts_per_s_best": args.servers / min(r["total_s"] for r in warm),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_predict_mib": peak_predict_kib / 1024 if peak_predict_kib else None,
        "rss_after_import_mib": rss_import / 1024,
        "rss_after_setup_mib": rss_setup / 1024,
        "import_s": import_s,
        "data_s": data_s,
        "build_s": build_s,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "pytorch_forecasting": pytorch_forecasting.__version__,
                     "lightning": lightning.__version__},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="90,1000", help="comma-separated fleet sizes (default 90,1000)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--batch-size", type=int, default=128, help="DataLoader batch (original: 128 on CPU)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the cold one (default 3)")
    ap.add_argument("--minimal-features", action="store_true",
                    help="only the 14 metrics as unknown reals (no status, cascade_impact, fleet features)")
    ap.add_argument("--json-out", help="write the results here as JSON")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        args.servers = int(args.servers)
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    results = []
    for n in [int(s) for s in args.servers.split(",") if s.strip()]:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--servers", str(n),
               "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               "--repeats", str(args.repeats)] + (["--minimal-features"] if args.minimal_features else [])
        print(f"# {n} servers ...", file=sys.stderr, flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
            print(f"worker for {n} servers failed (rc {p.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(lines[-1][7:]))

    r0 = results[0]
    print(f"\nOriginal path: pytorch-forecasting {r0['versions']['pytorch_forecasting']} TFT, "
          f"{r0['params']:,} params (untrained), torch {r0['versions']['torch']}, "
          f"{r0['threads']} threads, DataLoader batch {r0['batch_size']}, "
          f"{'catalog covariates (metrics + status + 18 fleet features)' if r0['fleet_features'] else 'minimal covariates'}; "
          f"median of {len(r0['warm_runs'])} warm calls\n")
    print("| servers | seconds (median) | seconds (min) | of which dataset+loader | of which predict() | cold call s | forecasts/s (median) | forecasts/s (best) | CPU-s per call | forecasts per CPU-s | peak RSS (process) | peak RSS (during predict) | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        pp = f"{r['peak_rss_predict_mib']:.0f} MiB" if r["peak_rss_predict_mib"] else "n/a"
        print(f"| {r['servers']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['median_dataset_s']:.2f} | {r['median_predict_s']:.2f} "
              f"| {r['cold_total_s']:.2f} | {r['forecasts_per_s']:.1f} | {r['servers'] / r['min_s']:.1f} | {r['median_cpu_s']:.2f} | {r['forecasts_per_cpu_s']:.1f} "
              f"| {r['peak_rss_mib']:.0f} MiB | {pp} | {max(x['loadavg_1m_before'] for x in r['warm_runs']):.1f} |")
    if args.json_out:
        meta = {"bench": "original_tft", "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "load_avg_at_end": os.getloadavg(), "results": results}
        with open(args.json_out, "w") as f:
            json.dump(meta, f, indent=2)
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
