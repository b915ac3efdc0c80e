"""The training pipeline: data -> fit -> evaluate -> export, and its command line.

`python -m training train` with no flags does everything on this machine's CPU within about
30 minutes: it asks `fleetcast export` for a training fleet (90 servers x 30 days, seed 1) and an
evaluation fleet (different seed, later non-overlapping time range), reads the real traces
(training on the first 75 % of every series only), trains the channel-independent TFT on a mix
of simulator, real and synthetic series under a wall-time budget, scores it against the
baselines on the real held-out tails and the simulator's held-out week, exports
`models/tft-v3/` and writes the golden fixture.

Fine-tuning on a user's history: `--data mine.parquet --init-from models/tft-v3`. Without
`--eval-data` the last 25 % of every one of the user's series is held out automatically and the
model is scored on it before and after.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import data as data_mod
from . import evaluate as ev
from . import export as ex
from . import schema
from . import series as sr
from .model import LOC_METHODS, TemporalFusionTransformer, TFTConfig, count_flops, count_params, pinball_loss

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = "models/tft-v3"
DEFAULT_GOLDEN = "tests/fixtures/model_golden.json"
DEFAULT_TRAIN = dict(hours=720, servers=90, seed=1, start="2026-01-05T00:00:00Z")
DEFAULT_EVAL = dict(hours=168, servers=45, seed=2, start="2026-02-09T00:00:00Z")
#: the z-unit target is clipped in the loss: pinball gradients do not depend on the target's
#: size, so this only keeps one wild target (a jump on a near-constant series) from dominating
#: the reported loss
TARGET_CLIP = 20.0
#: rows per batch from each source: the simulator export, the real traces' training parts, the
#: generic synthetic series and the synthetic cloud-CPU series
DEFAULT_MIX = "data=0.2,real=0.3,synthetic=0.2,cloud=0.3"
DEFAULT_FT_MIX = "data=0.6,real=0.15,synthetic=0.1,cloud=0.15"


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str:
    env = os.environ.get("TRAINING_GIT_COMMIT")
    if env:
        return env
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "training"], capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_fleet(out: Path, hours: int, servers: int, seed: int, start: str, binary: str | None = None) -> Path:
    """Write a fleet history with the Rust exporter (cached: an existing file is reused)."""
    if out.exists():
        log(f"using cached {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # (not a FLEETCAST_* variable: fleetcast reads those as its own settings)
    binary = binary or os.environ.get("TRAINING_EXPORTER_BIN")
    args = ["export", "--hours", str(hours), "--servers", str(servers), "--seed", str(seed), "--start", start,
            "--out", str(out.resolve())]
    if binary:
        cmd = [binary, *args]
    elif shutil.which("cargo"):  # cargo rebuilds a stale binary; a bare target/release/fleetcast may be old
        cmd = ["cargo", "run", "--quiet", "--release", "--bin", "fleetcast", "--", *args]
    else:
        cmd = [str(REPO_ROOT / "target/release/fleetcast"), *args]
    log("running " + " ".join(shlex.quote(c) for c in cmd))
    try:
        subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"could not produce training data with the exporter ({exc}); pass --data/--eval-data files instead")
    return out


def describe_export(spec: dict) -> str:
    return f"fleetcast export --hours {spec['hours']} --servers {spec['servers']} --seed {spec['seed']} --start {spec['start']}"


def default_data_paths(data_dir: str, exporter: str | None = None) -> tuple[Path, Path, str, str]:
    d = REPO_ROOT / data_dir
    tr, evd = DEFAULT_TRAIN, DEFAULT_EVAL
    train = d / f"train-s{tr['seed']}-{tr['servers']}x{tr['hours']}h.parquet"
    evalp = d / f"eval-s{evd['seed']}-{evd['servers']}x{evd['hours']}h.parquet"
    export_fleet(train, **tr, binary=exporter)
    export_fleet(evalp, **evd, binary=exporter)
    return train, evalp, describe_export(tr), describe_export(evd)


# -- data sources ------------------------------------------------------------------------------


class Sources:
    """Everything the fit draws from and the evaluation scores on.

    fit pools (training windows) and val pools (fixed validation windows) per source name:
    "data" (the --data file: the simulator's export, or a user's history), "real" (the real
    traces' training parts). "synthetic" windows are generated per batch.
    """

    def __init__(self):
        self.fit: dict[str, sr.SeriesPool] = {}
        self.val: dict[str, tuple] = {}
        self.desc: dict[str, str] = {}
        self.real_series: list[sr.Series] = []  # full series (evaluation uses the held-out tails)
        self.user_series: list[sr.Series] = []  # full series of a user's data when it is held out automatically
        self.train_fleet: data_mod.FleetData | None = None
        self.eval_fleet: data_mod.FleetData | None = None
        self.eval_series: list[sr.Series] = []
        self.excluded_real: list[str] = []  # real series left out of the fit (--exclude-real)


def _split_pools(series: list[sr.Series], cfg: TFTConfig, val_fraction: float, rng, val_windows: int):
    """Fit on the first (1 - val_fraction) of every series; validate on windows whose targets lie
    in the rest (contexts may reach back)."""
    fit_parts, val_ends = [], []
    for s in series:
        cut = int(round(len(s.values) * (1.0 - val_fraction)))
        fit_parts.append(sr.Series(s.name, s.metric, s.profile, s.start, s.values[:cut], s.source))
        val_ends.append(cut)
    fit = sr.SeriesPool(fit_parts, cfg.context_length, cfg.horizon, cfg.step_seconds)
    whole = sr.SeriesPool(series, cfg.context_length, cfg.horizon, cfg.step_seconds)
    k, end = whole.origins(stride=12, rng=rng, limit=10**9)
    cut_of = {s.name: c for s, c in zip(series, val_ends)}
    cuts = np.array([cut_of[whole.series[i].name] for i in k]) if len(k) else np.zeros(0, np.int64)
    keep = end >= cuts
    k, end = k[keep], end[keep]
    pick = rng.permutation(len(k))[:val_windows]
    return fit, whole.gather(k[pick], end[pick])


def load_sources(args, cfg: TFTConfig) -> Sources:
    src = Sources()
    rng = np.random.default_rng(args.seed + 7)
    if args.data and args.eval_data:
        train_path, eval_path = Path(args.data), Path(args.eval_data)
        desc_t, desc_e = f"file {train_path.name}", f"file {eval_path.name}"
        for spec, name in ((DEFAULT_TRAIN, train_path.name), (DEFAULT_EVAL, eval_path.name)):
            if name.endswith(f"s{spec['seed']}-{spec['servers']}x{spec['hours']}h.parquet"):
                text = f"{describe_export(spec)} (file {name})"
                desc_t, desc_e = (text, desc_e) if spec is DEFAULT_TRAIN else (desc_t, text)
    elif args.data:
        train_path, eval_path, desc_t, desc_e = Path(args.data), None, f"file {Path(args.data).name}", ""
    elif args.eval_data:
        raise SystemExit("--eval-data needs --data")
    else:
        train_path, eval_path, desc_t, desc_e = default_data_paths(args.data_dir, args.exporter)

    fleet = data_mod.load_fleet(train_path, args.bad_rows, cfg.step_seconds)
    log(fleet.report.describe())
    src.train_fleet = fleet
    simulator = "fleetcast export" in desc_t
    kind = "simulator" if simulator else "user"
    series = sr.fleet_series(fleet, kind)
    if eval_path is None:
        # a user's file without a separate evaluation file: hold out the last 25 % of every series
        src.user_series = series
        series = [sr.train_part(s) for s in series]
        desc_t += f"; the last {100 * sr.HELDOUT_FRACTION:.0f}% of every series held out for evaluation"
    fit, val = _split_pools(series, cfg, args.val_fraction, rng, args.val_windows)
    src.fit["data"], src.val["data"] = fit, val
    src.desc["data"] = desc_t + _span(fleet)
    if eval_path is not None:
        src.eval_fleet = data_mod.load_fleet(eval_path, args.bad_rows, cfg.step_seconds)
        log(src.eval_fleet.report.describe())
        src.desc["eval"] = desc_e + _span(src.eval_fleet)
        if src.eval_fleet.first_time() <= fleet.last_time():
            log("warning: the evaluation data does not start after the training data ends")
        if not simulator:  # a user's evaluation file is scored series by series (the simulator's by window)
            src.eval_series = sr.fleet_series(src.eval_fleet, "user")

    if args.real_traces:
        src.real_series = sr.load_real_traces(args.real_traces, cfg.step_seconds)
        excluded = set()
        for token in (args.exclude_real or "").split(","):
            if token.strip():
                excluded |= set(sr.real_group(src.real_series, token.strip()))
        src.excluded_real = sorted(excluded)
        parts = [sr.train_part(s) for s in src.real_series if s.name not in excluded]
        if parts:
            src.fit["real"], src.val["real"] = _split_pools(parts, cfg, args.val_fraction, rng, args.val_windows)
        src.desc["real"] = (f"{len(parts)} real series from {args.real_traces} (first "
                            f"{100 * (1 - sr.HELDOUT_FRACTION):.0f}% of each; the rest is held out)")
        if excluded:
            src.desc["real"] += f"; left out of the fit entirely (scored only): {', '.join(sorted(excluded))}"
    log(f"fit series: " + ", ".join(f"{k} {len(p)}" for k, p in src.fit.items())
        + "; validation windows: " + ", ".join(f"{k} {len(v[0])}" for k, v in src.val.items()))
    return src


def _span(fleet: data_mod.FleetData) -> str:
    first = dt.datetime.fromtimestamp(fleet.first_time(), dt.timezone.utc)
    last = dt.datetime.fromtimestamp(fleet.last_time(), dt.timezone.utc)
    return (f" ({fleet.report.servers} servers, {fleet.report.rows_kept:,} rows, "
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d %H:%M} UTC)")


def parse_mix(text: str, available: set[str]) -> dict[str, float]:
    """'data=0.4,real=0.3,synthetic=0.3' -> fractions over the available sources, renormalised."""
    mix = {}
    for part in text.split(","):
        if part.strip():
            name, value = part.split("=")
            mix[name.strip()] = float(value)
    unknown = set(mix) - {"data", "real", "synthetic", "cloud"}
    if unknown:
        raise SystemExit(f"--mix: unknown source(s) {sorted(unknown)} (data, real, synthetic, cloud)")
    mix = {k: v for k, v in mix.items() if v > 0 and (k in available or k in GENERATED)}
    total = sum(mix.values())
    if total <= 0:
        raise SystemExit("--mix leaves no source to train on")
    return {k: v / total for k, v in mix.items()}


#: sources generated per batch (no pool): name -> generator
GENERATED = {"synthetic": sr.synthetic_windows, "cloud": sr.cloud_cpu_windows}


def draw_batch(src: Sources, mix: dict[str, float], n: int, cfg: TFTConfig, rng, augment: float):
    counts = rng.multinomial(n, list(mix.values()))
    parts = []
    for name, c in zip(mix, counts):
        if c == 0:
            continue
        if name in GENERATED:
            parts.append(GENERATED[name](int(c), cfg.context_length, cfg.horizon, cfg.step_seconds, rng))
        else:
            parts.append(src.fit[name].sample(rng, int(c)))
    past, future, metric, profile, ts = (np.concatenate(x) for x in zip(*parts))
    if augment > 0:
        past, future = sr.augment(past, future, metric, rng, augment)
    return past, future, metric, profile, ts


# -- fit ---------------------------------------------------------------------------------------


def batch_loss(model: TemporalFusionTransformer, past, future, metric, profile, ts, device) -> torch.Tensor:
    past = torch.from_numpy(np.ascontiguousarray(past, dtype=np.float32)).to(device)
    future = torch.from_numpy(np.ascontiguousarray(future, dtype=np.float32)).to(device)
    metric = torch.from_numpy(metric.astype(np.int64)).to(device)
    profile = torch.from_numpy(profile.astype(np.int64)).to(device)
    ts = torch.from_numpy(ts.astype(np.int64)).to(device)
    z, mask, loc, scale, statics = model.normalise(past, metric)
    observed = torch.isfinite(future)
    target = torch.where(observed, (future - loc) / scale, torch.zeros_like(future)).clamp(-TARGET_CLIP, TARGET_CLIP)
    zq, _, _ = model.forward_normalised(z, mask, statics, metric, profile, ts)
    return pinball_loss(zq, target, model.cfg.quantiles, observed.to(zq.dtype))


def validation_losses(model, src: Sources, device, batch: int = 1024) -> dict[str, float]:
    model.eval()
    out = {}
    with torch.no_grad():
        for name, rows in src.val.items():
            n = len(rows[0])
            if n == 0:
                continue
            total = 0.0
            for i in range(0, n, batch):
                part = [r[i : i + batch] for r in rows]
                total += float(batch_loss(model, *part, device)) * len(part[0])
            out[name] = total / n
    model.train()
    return out


def build_model(args) -> tuple[TemporalFusionTransformer, dict | None]:
    if args.init_from:
        model, base_meta = ex.load_torch_model(args.init_from)
        log(f"fine-tuning from {args.init_from} ({base_meta['name']} {base_meta['version']})")
        return model, base_meta
    cfg = TFTConfig(hidden=args.hidden, heads=args.heads, dropout=args.dropout, patch=args.patch, loc_method=args.loc,
                    context_length=args.context, horizon=args.horizon, step_seconds=args.step_seconds)
    return TemporalFusionTransformer(cfg), None


def fit(args, model: TemporalFusionTransformer, src: Sources) -> tuple[TemporalFusionTransformer, dict]:
    seed_everything(args.seed)
    device = torch.device(args.device)
    cfg = model.cfg
    model.to(device)
    rng = np.random.default_rng(args.seed)
    mix = parse_mix(args.mix, set(src.fit))
    log(f"mix per batch: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in mix.items()) + f"; {count_params(model):,} parameters")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, args.windows_per_epoch // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    budget = args.max_minutes * 60.0
    t0 = time.monotonic()
    best = (float("inf"), copy.deepcopy(model.state_dict()))
    history, step, rows_seen, stopped_early, epochs_done = [], 0, 0, False, 0

    def info_now() -> dict:
        return {
            "seed": args.seed, "device": describe_device(device), "epochs": epochs_done,
            "rows_per_epoch": steps_per_epoch * args.batch_size, "batch_size": args.batch_size, "lr": args.lr,
            "steps": step, "rows_seen": rows_seen, "wall_seconds": round(time.monotonic() - t0, 1),
            "stopped_by_time_budget": stopped_early, "best_val_loss": round(best[0], 5), "history": history,
            "augment": args.augment, "mix": {k: round(v, 3) for k, v in mix.items()}, "init_from": args.init_from,
            "git_commit": git_commit(),
        }

    def criterion(vals: dict[str, float]) -> float:
        # from scratch every source counts alike, whatever its size; fine-tuning is judged on the
        # user's own data (the other sources stay in the mix only so that nothing is forgotten)
        return vals["data"] if args.init_from and "data" in vals else float(np.mean(list(vals.values())))

    if args.init_from:  # the starting point is a candidate too: fine-tuning must not make validation worse
        start_val = validation_losses(model, src, device)
        best = (criterion(start_val), copy.deepcopy(model.state_dict()))
        log(f"validation before fine-tuning: " + ", ".join(f"{k} {v:.4f}" for k, v in start_val.items()))
    for epoch in range(args.epochs):
        model.train()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr,
                   disable=args.quiet)
        running = 0.0
        for i in bar:
            progress = max(step / total_steps, (time.monotonic() - t0) / budget)
            lr = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
            warm = min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr * warm
            batch = draw_batch(src, mix, args.batch_size, cfg, rng, args.augment)
            loss = batch_loss(model, *batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            rows_seen += args.batch_size
            if i % 10 == 0:  # reading the loss syncs a GPU, so only now and then
                loss_value = float(loss.detach())
                running = 0.8 * running + 0.2 * loss_value if i else loss_value
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr * warm:.1e}")
            if time.monotonic() - t0 > budget:
                stopped_early = True
                break
        epochs_done = epoch + 1
        vals = validation_losses(model, src, device)
        val = criterion(vals)
        elapsed = time.monotonic() - t0
        history.append({"epoch": epoch + 1, "train_loss": round(running, 5), "val_loss": round(val, 5),
                        "val_per_source": {k: round(v, 5) for k, v in vals.items()},
                        "elapsed_s": round(elapsed, 1), "rows_seen": rows_seen})
        log(f"epoch {epoch + 1}: train {running:.4f}  val {val:.4f} (" + ", ".join(f"{k} {v:.4f}" for k, v in vals.items())
            + f")  {elapsed / 60:.1f} min, {rows_seen / elapsed:.0f} rows/s")
        if val < best[0]:
            best = (val, copy.deepcopy(model.state_dict()))
            if args.checkpoint:  # keep the best so far on disk, so a killed run still leaves a model
                save_checkpoint(args.checkpoint, cfg, best[1], {**info_now(), "partial": True}, args.command_line)
        if stopped_early:
            log(f"wall-time budget of {args.max_minutes} min reached")
            break
    model.load_state_dict(best[1])
    model.cpu().eval()
    return model, info_now()


def save_checkpoint(path: str, cfg: TFTConfig, state_dict: dict, info: dict, command: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    torch.save({"architecture": cfg.to_json(), "state_dict": cpu_state, "info": info, "command": command}, path)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"


# -- evaluation --------------------------------------------------------------------------------


def predictor(model: TemporalFusionTransformer):
    def predict(past, metric, profile, ts):
        return ex.run_torch(model, past, metric, profile, ts)[0]
    return predict


def fleet_quantiles(model: TemporalFusionTransformer, past: np.ndarray, ts: np.ndarray, prof: np.ndarray,
                    metrics: list[int] | None = None) -> np.ndarray:
    """Forecast every metric row of server windows past [N,T,M] -> [N,H,M,3] (NaN for metrics not asked)."""
    n, t, m = past.shape
    metrics = list(range(m)) if metrics is None else metrics
    rows = past[:, :, metrics].transpose(0, 2, 1).reshape(-1, t)
    metric = np.tile(np.array(metrics), n)
    q = ex.run_torch(model, rows, metric, np.repeat(prof, len(metrics)), np.repeat(ts, len(metrics)))[0]
    out = np.full((n, model.cfg.horizon, m, 3), np.nan, dtype=np.float32)
    out[:, :, metrics] = q.reshape(n, len(metrics), model.cfg.horizon, 3).transpose(0, 2, 1, 3)
    return out


def eval_windows(fleet: data_mod.FleetData, cfg: TFTConfig, stride: int, limit: int, seed: int):
    origins = data_mod.window_origins(fleet, cfg.context_length, cfg.horizon, stride=stride)
    if len(origins) > limit:
        origins = origins[np.sort(np.random.default_rng(seed).permutation(len(origins))[:limit])]
    return origins, data_mod.gather_windows(fleet, origins, cfg.context_length, cfg.horizon)


def simulator_evaluation(args, model, src: Sources) -> tuple[dict | None, tuple | None]:
    """The held-out simulator week (another seed): pinball vs the calibrated baselines, and the
    metric-subset check. Needs complete 14-metric windows (skipped otherwise)."""
    fleet, cfg = src.eval_fleet, model.cfg
    if fleet is None:
        return None, None
    _, windows = eval_windows(fleet, cfg, args.eval_stride, args.eval_windows, args.seed)
    past, future, ts, prof = windows
    complete = np.isfinite(past).all(axis=(1, 2)) & np.isfinite(future).all(axis=(1, 2))
    past, future, ts, prof = past[complete], future[complete], ts[complete], prof[complete]
    if len(past) == 0:
        return None, None
    calib = data_mod.window_origins(src.train_fleet, cfg.context_length, cfg.horizon, stride=7)
    calib = calib[np.random.default_rng(args.seed + 1).permutation(len(calib))[: args.calib_windows]]
    c_past, c_future, _, _ = data_mod.gather_windows(src.train_fleet, calib, cfg.context_length, cfg.horizon)
    ok = np.isfinite(c_past).all(axis=(1, 2)) & np.isfinite(c_future).all(axis=(1, 2))
    c_past, c_future = c_past[ok], c_future[ok]
    offsets = {
        "persistence": ev.calibrate(ev.persistence_point(c_past, cfg.horizon), c_past, c_future),
        "seasonal_naive": ev.calibrate(ev.seasonal_point(c_past, cfg.horizon, cfg.step_seconds), c_past, c_future),
        **{name: ev.calibrate(ev.median_point(c_past, cfg.horizon, k), c_past, c_future)
           for name, k in ev.MEDIAN_BASELINES.items()},
    }
    t0 = time.monotonic()
    q = fleet_quantiles(model, past, ts, prof)
    result = ev.evaluate_all(q, past, future, offsets, cfg.step_seconds)
    result["model_seconds"] = round(time.monotonic() - t0, 2)
    result["data"] = src.desc.get("eval", "")
    result["window_stride_steps"] = args.eval_stride
    result["calibration_windows"] = int(len(c_past))
    result["subsets"] = subset_check(model, past, future, ts, prof, offsets)
    return result, (past, future, ts, prof)


SUBSETS = {
    "cpu_only": ["cpu_user_pct"],
    "cpu_memory": ["cpu_user_pct", "mem_used_pct"],
    "all_14": list(schema.METRICS),
}


def subset_check(model, past, future, ts, prof, offsets) -> dict:
    """Forecast the held-out windows with only some metric rows present (CPU only; CPU + memory;
    all 14) and show that every metric's forecast is identical whatever else is present (the
    graph sees one row at a time), and what each subset scores."""
    out = {}
    full = fleet_quantiles(model, past, ts, prof)
    divisor = ev.robust_scale(past).mean(axis=0)
    for name, metrics in SUBSETS.items():
        idx = [schema.METRICS.index(m) for m in metrics]
        q = fleet_quantiles(model, past, ts, prof, idx)
        sub = q[:, :, idx]
        diff = float(np.abs(sub - full[:, :, idx]).max())
        scores = ev.score(np.nan_to_num(q), future, divisor, model.cfg.step_seconds)
        pers = ev.score(ev.with_intervals(ev.persistence_point(past, model.cfg.horizon), past, offsets["persistence"]),
                        future, divisor, model.cfg.step_seconds)
        out[name] = {
            "metrics": metrics,
            "max_abs_diff_vs_all_14": diff,
            "per_metric_mean_pinball": {m: float(np.mean([scores["per_metric"][m][b]["mean_pinball"] for b in scores["per_metric"][m]]))
                                        for m in metrics},
            "persistence_mean_pinball": {m: float(np.mean([pers["per_metric"][m][b]["mean_pinball"] for b in pers["per_metric"][m]]))
                                         for m in metrics},
        }
    return out


def real_evaluation(args, model, series_list, every: int) -> dict | None:
    if not series_list:
        return None
    cfg = model.cfg
    result = ev.evaluate_series(predictor(model), series_list, cfg.context_length, cfg.horizon, cfg.step_seconds,
                                every=every, heldout=sr.HELDOUT_FRACTION)
    cpu = [n for n, r in result["per_series"].items() if r["metric"] == "cpu_user_pct"]
    result["pooled_cpu"] = ev.pool(result["per_series"], cpu)
    result["targets"] = ev.real_targets(result["pooled"])
    result["targets_cpu"] = ev.real_targets(result["pooled_cpu"])
    return result


# -- golden fixture ----------------------------------------------------------------------------


def golden_cases(cfg: TFTConfig, src: Sources, sim_windows) -> list[dict]:
    """Rows covering the contract's corners: a full simulator day, the same truncated to its last
    24 steps, holes in the middle, a constant series, a near-idle CPU series, a real NAB window;
    several metrics and profiles."""
    t = cfg.context_length
    rng = np.random.default_rng(11)
    cases = []
    ts0 = 1_770_000_000 // cfg.step_seconds * cfg.step_seconds
    m = schema.METRICS.index
    if sim_windows is not None:
        past, _, ts, prof = sim_windows
        for want, metric, label in (("database", "mem_used_pct", "simulator, full 24 h"),
                                    ("web_api", "cpu_user_pct", "simulator, full 24 h"),
                                    ("data_ingest", "net_in_mb_s", "simulator, full 24 h")):
            hits = np.nonzero(prof == schema.PROFILES.index(want))[0]
            k = hits[len(hits) // 2] if len(hits) else 0
            cases.append({"label": f"{label}: {want} {metric}", "past_values": past[k, :, m(metric)],
                          "metric": m(metric), "profile": int(prof[k]), "last_timestamp": int(ts[k])})
        k = len(past) // 3
        short = np.full(t, np.nan, np.float32)
        short[-24:] = past[k, -24:, m("cpu_sys_pct")]
        cases.append({"label": "simulator, only the last 24 steps observed", "past_values": short,
                      "metric": m("cpu_sys_pct"), "profile": int(prof[k]), "last_timestamp": int(ts[k])})
        holed = past[k, :, m("load_average")].copy()
        holed[90:150] = np.nan
        holed[rng.random(t) < 0.08] = np.nan
        holed[-1] = past[k, -1, m("load_average")]
        cases.append({"label": "simulator, a 60-step hole and 8% missing steps", "past_values": holed,
                      "metric": m("load_average"), "profile": int(prof[k]), "last_timestamp": int(ts[k])})
    cases.append({"label": "constant 42", "past_values": np.full(t, 42.0, np.float32), "metric": m("disk_usage_pct"),
                  "profile": schema.PROFILES.index("generic"), "last_timestamp": ts0})
    idle = (np.round(np.abs(0.5 + rng.normal(0, 0.3, t)) / 0.066) * 0.066 + 0.1).astype(np.float32)
    idle[rng.random(t) < 0.02] = 1.9
    cases.append({"label": "near-idle CPU 0.1-2 %, quantised", "past_values": idle, "metric": m("cpu_user_pct"),
                  "profile": schema.PROFILES.index("risk_analytics"), "last_timestamp": ts0 + 3600})
    nab = next((s for s in src.real_series if s.name.startswith("cpu_utilization_asg")), None)
    if nab is not None:
        cut = sr.split_point(nab)
        cases.append({"label": f"real NAB window ({nab.name}, held-out part)", "past_values": nab.values[cut : cut + t],
                      "metric": m("cpu_user_pct"), "profile": schema.PROFILES.index("generic"),
                      "last_timestamp": int(nab.start + (cut + t - 1) * cfg.step_seconds)})
    return cases


# -- finish: evaluate, export, document --------------------------------------------------------


def finish(args, model: TemporalFusionTransformer, info: dict, src: Sources, command: str,
           before: dict | None = None) -> dict:
    """Evaluate against the baselines, export, check parity, write metadata, card and fixture."""
    cfg = model.cfg
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log("evaluating ...")
    evaluation: dict = {}
    real = real_evaluation(args, model, src.real_series, args.real_every)
    if real is not None:
        evaluation["real"] = real
    sim, sim_windows = simulator_evaluation(args, model, src)
    if sim is not None:
        evaluation["simulator"] = sim
    user_series = src.user_series or src.eval_series
    if user_series:
        evaluation["user"] = real_evaluation(args, model, user_series, args.real_every)
        if before is not None:
            evaluation["user_before"] = before
    evaluation["variants"] = args.variants
    if getattr(args, "leaveout", None):
        evaluation["leaveout"] = json.loads(Path(args.leaveout).read_text())

    log("exporting ONNX ...")
    onnx_path = out_dir / "model.onnx"
    ex.export_onnx(model, onnx_path)
    torch.save(model.state_dict(), out_dir / "weights.pt")
    session = ex.ort_session(onnx_path)
    windows = {"random": ex.random_windows(256, cfg, args.seed)}
    if sim_windows is not None:
        past, _, ts, prof = sim_windows
        n = min(64, len(past))
        rows = past[:n].transpose(0, 2, 1).reshape(-1, cfg.context_length)
        windows["simulator"] = (rows, np.tile(np.arange(cfg.n_metrics), n), np.repeat(prof[:n], cfg.n_metrics),
                                np.repeat(ts[:n], cfg.n_metrics))
    odd = np.full((4, cfg.context_length), np.nan, np.float32)
    odd[1] = 7.0
    odd[2, -1] = 3.0
    odd[3, ::2] = 1e6
    windows["odd"] = (odd, np.zeros(4, np.int64) + 8, np.zeros(4, np.int64), np.full(4, 1_767_571_200, np.int64))
    parity = ex.parity(model, session, windows)
    ratio = ex.parity_worst_ratio(model, session, windows)
    log(f"ONNX Runtime vs PyTorch: worst |diff| / ({ex.PARITY_ATOL:g} + {ex.PARITY_RTOL:g}|y|) = {ratio:.2f}")
    if ratio > 1.0:
        raise SystemExit(f"ONNX Runtime parity check failed by a factor {ratio:.2f} ({parity})")
    log("measuring ONNX Runtime throughput ...")
    bench = ex.bench_rows_per_cpu_second(onnx_path, seconds=args.bench_seconds)

    info.update({"data": src.desc, "data_report": src.train_fleet.report.to_json() if src.train_fleet else None,
                 "git_commit": info.get("git_commit") or git_commit(), "command": command, "notes": args.notes})
    meta = ex.build_metadata(
        model, name=out_dir.name, version=args.version,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        params=count_params(model), flops=count_flops(model), training=info, evaluation=evaluation, parity_report=parity)
    meta["throughput"] = bench
    meta["behaviour_probes"] = ex.behaviour_probes(session, cfg)
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1, default=float) + "\n")
    from .card import write_model_card

    write_model_card(out_dir / "MODEL_CARD.md", meta)
    ex.load_model_dir(out_dir)  # what we wrote must pass our own load check
    golden = args.golden if args.golden is not None else (DEFAULT_GOLDEN if Path(args.out) == Path(DEFAULT_OUT) else "")
    if golden:
        rel = os.path.relpath(out_dir.resolve(), REPO_ROOT)
        ex.write_golden(session, rel, golden_cases(cfg, src, sim_windows), REPO_ROOT / golden if not Path(golden).is_absolute() else Path(golden))
        log(f"golden fixture written to {golden}")
    return meta


def print_summary(meta: dict, out_dir: str) -> None:
    e = meta["evaluation"]
    tr = meta["training"]
    lines = ["", f"model      {out_dir}  ({meta['params']:,} params, {meta['flops_per_row'] / 1e6:.2f} MFLOPs/row, "
                 f"{meta['throughput']['rows_per_cpu_second']:,} rows per CPU-second on ORT, 1 thread, batch 448)",
             f"training   {tr['steps']} steps, {tr['rows_seen']:,} rows, {tr['wall_seconds'] / 60:.1f} min on {tr['device']}"]
    for key, title in (("real", "real traces, held-out tails (pooled over series)"),
                       ("user_before", "your data, held-out tails, BEFORE fine-tuning"),
                       ("user", "your data, held-out tails")):
        if e.get(key):
            lines += ["", title, ev.real_table(e[key]["pooled"]), json.dumps(e[key]["targets"])]
    if e.get("real"):
        lines += ["", "real CPU series only", ev.real_table(e["real"]["pooled_cpu"])]
    if e.get("simulator"):
        s = e["simulator"]["summary"]
        lines += ["", "simulator held-out week", ev.summary_table(e["simulator"]),
                  f"vs best baseline ({s['best_baseline']}): {100 * s['improvement_vs_best_baseline']:.1f}% lower scaled pinball; "
                  f"coverage {100 * s['model_coverage_p10_p90']:.1f}%"]
    print("\n".join(lines))


def add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="training Parquet (long format); default: produced by `fleetcast export`. "
                   "Without --eval-data the last 25%% of every series is held out for evaluation")
    p.add_argument("--eval-data", help="held-out Parquet; default: produced by `fleetcast export` (other seed, later range)")
    p.add_argument("--exporter", help="fleetcast binary for the default data (default: env TRAINING_EXPORTER_BIN, "
                   "else `cargo run --release --bin fleetcast`)")
    p.add_argument("--data-dir", default=".data", help="where the exporter's files are cached (default .data)")
    p.add_argument("--real-traces", default=sr.DEFAULT_REAL_TRACES,
                   help=f"folder of the real traces, relative to the repository root (default {sr.DEFAULT_REAL_TRACES}; '' = none)")
    p.add_argument("--mix", default=None, help=f"batch mix of the sources (data, real, synthetic, cloud), default "
                   f"{DEFAULT_MIX} (with --init-from {DEFAULT_FT_MIX})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"model directory to write (default {DEFAULT_OUT})")
    p.add_argument("--version", default="3.0.0")
    p.add_argument("--golden", default=None, help=f"golden fixture file ('' = none; default {DEFAULT_GOLDEN} when --out is "
                   f"{DEFAULT_OUT}, else none)")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--windows-per-epoch", type=int, default=16384, help="rows per epoch (one validation per epoch)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=28)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--patch", type=int, default=12, help="steps per encoder/decoder token")
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--loc", default="median12", choices=list(LOC_METHODS),
                   help="normalisation location: the median of the last twelve observed values (default), the last "
                   "observed value, or the median of the last three")
    p.add_argument("--context", type=int, default=schema.CONTEXT_LENGTH)
    p.add_argument("--horizon", type=int, default=schema.HORIZON)
    p.add_argument("--step-seconds", type=int, default=schema.STEP_SECONDS)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: on a shared 2-core machine "
                   "two threads fighting another job ran ~10x slower; use 2 on an idle machine)")
    p.add_argument("--max-minutes", type=float, default=20.0, help="wall-time budget for the training loop")
    p.add_argument("--init-from", help="model directory to fine-tune (e.g. models/tft-v3)")
    p.add_argument("--exclude-real", default="", help="real series to leave out of the fit entirely (scored only): "
                   "comma-separated groups (cpu, noncpu, nab, datacenter, all) or series names")
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength (probabilities x this; 0 = off)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="validation windows have their targets in the last fraction of every training series")
    p.add_argument("--val-windows", type=int, default=2048, help="validation rows per source")
    p.add_argument("--eval-stride", type=int, default=12, help="steps between simulator evaluation window origins")
    p.add_argument("--eval-windows", type=int, default=2000, help="simulator evaluation windows (x 14 rows)")
    p.add_argument("--calib-windows", type=int, default=3000)
    p.add_argument("--real-every", type=int, default=24, help="steps between forecast origins on held-out series (2 h)")
    p.add_argument("--bench-seconds", type=float, default=2.0, help="CPU-seconds per ONNX Runtime throughput round")
    p.add_argument("--bad-rows", default="drop", choices=["drop", "fail"], help="what to do with bad values and rows")
    p.add_argument("--checkpoint", help="fit only: save the trained weights and training info to this .pt file")
    p.add_argument("--from-checkpoint", help="skip fitting: evaluate and export a checkpoint written by --checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--notes", default="", help="free text on how this model was made, kept in model.json and the card")
    p.add_argument("--variants", default=None, help="JSON file of earlier variants' scores to list in the card")
    p.add_argument("--leaveout", default=None, help="JSON written by `python -m training leaveout` (this configuration's "
                   "leave-series-out scores) to put in model.json and the card")


def cmd_train(args, argv: list[str]) -> int:
    torch.set_num_threads(args.threads)
    command = "python -m training " + " ".join(shlex.quote(a) for a in argv)
    args.command_line = command
    if args.mix is None:
        args.mix = DEFAULT_FT_MIX if args.init_from else DEFAULT_MIX
    args.variants = json.loads(Path(args.variants).read_text()) if args.variants else []
    if args.from_checkpoint:
        ckpt = torch.load(args.from_checkpoint, map_location="cpu", weights_only=False)
        model = TemporalFusionTransformer(TFTConfig.from_json(ckpt["architecture"]))
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        src = load_sources(args, model.cfg)
        info = ckpt["info"]
        command = ckpt.get("command", command) + f"  (then, on CPU: {command})"
        meta = finish(args, model, info, src, command)
    else:
        model, _ = build_model(args)
        src = load_sources(args, model.cfg)
        before = None
        if args.init_from and (src.user_series or src.eval_series):
            before = real_evaluation(args, model, src.user_series or src.eval_series, args.real_every)
        model, info = fit(args, model, src)
        # always keep the fitted weights: a failure while evaluating or exporting must not cost the fit
        checkpoint = args.checkpoint or str(REPO_ROOT / args.data_dir / f"last-fit-{Path(args.out).name}.pt")
        save_checkpoint(checkpoint, model.cfg, model.state_dict(), info, command)
        log(f"checkpoint written to {checkpoint}")
        if args.checkpoint:
            print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))
            return 0
        meta = finish(args, model, info, src, command, before)
    print_summary(meta, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training", description="fleetcast TFT training pipeline")
    sub = parser.add_subparsers(dest="command")
    p_train = sub.add_parser("train", help="data -> train -> evaluate -> export (the default)")
    add_train_flags(p_train)
    p_leave = sub.add_parser("leaveout", help="leave-series-out evaluation: per fold of real series, a fit without "
                             "them, scored on their held-out tails")
    add_train_flags(p_leave)
    from .leaveout import add_leaveout_flags, cmd_leaveout

    add_leaveout_flags(p_leave)
    p_check = sub.add_parser("check", help="validate a model directory (model.json against model.onnx)")
    p_check.add_argument("model_dir")
    p_bench = sub.add_parser("bench", help="rows per CPU-second of a model directory on ONNX Runtime (1 thread)")
    p_bench.add_argument("model_dir")
    p_bench.add_argument("--batch", type=int, default=448, help="rows per run (default 448 = 32 servers x 14 metrics)")
    p_bench.add_argument("--seconds", type=float, default=3.0, help="CPU-seconds per round (3 rounds)")
    p_var = sub.add_parser("variant", help="print a model directory's scores as one JSON row of the card's variants table")
    p_var.add_argument("model_dir")
    p_var.add_argument("--name", required=True)
    p_var.add_argument("--what", required=True)
    p_val = sub.add_parser("validate-data", help="report problems in a Parquet file")
    p_val.add_argument("file")
    p_val.add_argument("--bad-rows", default="drop", choices=["drop", "fail"])
    if not argv:
        argv = ["train"]
    args = parser.parse_args(argv)
    if args.command in ("train", "leaveout") and args.real_traces == "":
        args.real_traces = None
    try:
        if args.command == "train":
            return cmd_train(args, argv)
        if args.command == "leaveout":
            return cmd_leaveout(args, argv[1:])
        if args.command == "check":
            meta, _ = ex.load_model_dir(args.model_dir)
            print(f"{args.model_dir}: ok ({meta['name']} {meta['version']}, {meta['params']:,} params)")
            return 0
        if args.command == "bench":
            _, onnx_path = ex.load_model_dir(args.model_dir)
            print(json.dumps(ex.bench_rows_per_cpu_second(onnx_path, args.batch, args.seconds)))
            return 0
        if args.command == "variant":
            from .card import variant_summary

            meta, _ = ex.load_model_dir(args.model_dir)
            print(json.dumps(variant_summary(meta, args.name, args.what)))
            return 0
        if args.command == "validate-data":
            fleet = data_mod.load_fleet(args.file, args.bad_rows)
            print(fleet.report.describe())
            return 0
    except (data_mod.DataError, ex.ModelDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 1
