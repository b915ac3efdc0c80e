"""The training pipeline: data -> fit -> evaluate -> export, and its command line.

`python -m training train` with no flags does everything on this machine's CPU within about
30 minutes: it asks `fleetcast export` for a training fleet (90 servers x 30 days, seed 1) and an
evaluation fleet (different seed, later non-overlapping time range), trains under a wall-time
budget, scores the model against the three baselines, exports `models/tft-v2/` and writes the
golden fixtures.
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
from .model import TemporalFusionTransformer, TFTConfig, count_flops, count_params, pinball_loss

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = dict(hours=720, servers=90, seed=1, start="2026-01-05T00:00:00Z")
DEFAULT_EVAL = dict(hours=168, servers=45, seed=2, start="2026-02-09T00:00:00Z")
UNBOUNDED = np.array([schema.METRIC_RANGES[m][1] is None for m in schema.METRICS])


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


def default_data_paths(data_dir: str, exporter: str | None = None) -> tuple[Path, Path, str, str]:
    d = REPO_ROOT / data_dir
    tr, evd = DEFAULT_TRAIN, DEFAULT_EVAL
    train = d / f"train-s{tr['seed']}-{tr['servers']}x{tr['hours']}h.parquet"
    evalp = d / f"eval-s{evd['seed']}-{evd['servers']}x{evd['hours']}h.parquet"
    export_fleet(train, **tr, binary=exporter)
    export_fleet(evalp, **evd, binary=exporter)
    desc_t = f"fleetcast export --hours {tr['hours']} --servers {tr['servers']} --seed {tr['seed']} --start {tr['start']}"
    desc_e = f"fleetcast export --hours {evd['hours']} --servers {evd['servers']} --seed {evd['seed']} --start {evd['start']}"
    return train, evalp, desc_t, desc_e


def split_validation(fleet: data_mod.FleetData, cfg: TFTConfig, val_days: float):
    """Training windows end before the last `val_days`; validation windows lie inside them."""
    stacked = data_mod.StackedFleet(fleet, cfg.context_length, cfg.horizon)
    span = cfg.context_length + cfg.horizon
    val_steps = int(val_days * 86400 / cfg.step_seconds)
    lengths = np.array([len(v) for v in fleet.values])
    cut = lengths[stacked.origins[:, 0]] - val_steps  # first step of the validation range per server
    o = stacked.origins
    train_mask = o[:, 1] + span <= cut
    val_mask = o[:, 1] >= cut - cfg.context_length  # context may reach back, targets are all in the val range
    if train_mask.sum() == 0:
        train_mask = np.ones(len(o), dtype=bool)
        val_mask = np.ones(len(o), dtype=bool)
    return stacked, o[train_mask], o[val_mask]


def augment(past: np.ndarray, future: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Robustness augmentation, per window and metric (past and future alike):

    * unbounded metrics (MB/s, counts, load) are rescaled by a random factor, so the model does
      not learn the generator's absolute levels;
    * 3% of series become flat (the window's last value throughout), as on a quiet or stuck host;
    * 5% get sparse spikes (rate 1-10% of steps, 3-15 robust scales high) in context and horizon
      alike, so one spike does not drag the median and frequent spikes widen p90.
    """
    n, t, m = past.shape
    full = np.concatenate([past, future], axis=1)
    factor = np.exp(rng.normal(0.0, 0.5, size=(n, 1, m))).astype(np.float32)
    factor[:, :, ~UNBOUNDED] = 1.0
    full *= factor
    flat = rng.random((n, m)) < 0.03
    if flat.any():
        level = np.broadcast_to(full[:, t - 1 : t, :], full.shape)
        full = np.where(flat[:, None, :], level, full)
    spiky = rng.random((n, m)) < 0.05
    if spiky.any():
        scale = ev.robust_scale(past * factor)
        rate = rng.uniform(0.01, 0.1, size=(n, 1, m))
        hits = (rng.random(full.shape) < rate) & spiky[:, None, :]
        size = rng.uniform(3.0, 15.0, size=full.shape) * scale[:, None, :]
        full = full + np.where(hits, size, 0.0).astype(np.float32)
    low = np.array([schema.METRIC_RANGES[k][0] for k in schema.METRICS], dtype=np.float32)
    high = np.array([schema.METRIC_RANGES[k][1] or np.inf for k in schema.METRICS], dtype=np.float32)
    full = np.clip(full, low, high).astype(np.float32)
    return full[:, :t], full[:, t:]


def batch_loss(model: TemporalFusionTransformer, past, future, ts, prof, device) -> torch.Tensor:
    past = torch.from_numpy(past).to(device)
    future = torch.from_numpy(future).to(device)
    ts = torch.from_numpy(ts).to(device)
    prof = torch.from_numpy(prof).to(device)
    z, loc, scale = model.normalise(past)
    target = (future - loc) / scale
    zq, _, _ = model.forward_normalised(z, ts, prof)
    return pinball_loss(zq, target, model.cfg.quantiles)


def validation_loss(model, stacked, origins, device, batch: int) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(origins), batch):
            past, future, ts, prof = stacked.gather(origins[i : i + batch])
            total += float(batch_loss(model, past, future, ts, prof, device)) * len(past)
            n += len(past)
    model.train()
    return total / max(n, 1)


def fit(args, train_fleet: data_mod.FleetData) -> tuple[TemporalFusionTransformer, dict]:
    seed_everything(args.seed)
    device = torch.device(args.device)
    if args.init_from:
        model, base_meta = ex.load_torch_model(args.init_from)
        cfg = model.cfg
        log(f"fine-tuning from {args.init_from} ({base_meta['name']} {base_meta['version']})")
    else:
        cfg = TFTConfig(hidden=args.hidden, heads=args.heads, var_hidden=args.var_hidden, dropout=args.dropout,
                        context_length=args.context, horizon=args.horizon, step_seconds=args.step_seconds,
                        encoder_selection=args.encoder_selection, scale_method=args.scale_method)
        model = TemporalFusionTransformer(cfg)
    model.to(device)
    stacked, train_origins, val_origins = split_validation(train_fleet, cfg, args.val_days)
    if len(train_origins) == 0:
        raise SystemExit("no complete training window (context + horizon without gaps) in the data")
    rng = np.random.default_rng(args.seed)
    val_origins = val_origins[rng.permutation(len(val_origins))[: args.val_windows]]
    log(f"{len(train_origins):,} training windows, {len(val_origins):,} validation windows; "
        f"{count_params(model):,} parameters")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, args.windows_per_epoch // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    budget = args.max_minutes * 60.0
    t0 = time.monotonic()
    best = (float("inf"), copy.deepcopy(model.state_dict()))
    history, step, windows_seen, stopped_early, epochs_done = [], 0, 0, False, 0

    def info_now() -> dict:
        return {
            "seed": args.seed,
            "device": describe_device(device),
            "epochs": epochs_done,
            "windows_per_epoch": steps_per_epoch * args.batch_size,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "steps": step,
            "windows_seen": windows_seen,
            "wall_seconds": round(time.monotonic() - t0, 1),
            "stopped_by_time_budget": stopped_early,
            "best_val_loss": round(best[0], 5),
            "history": history,
            "augment": bool(args.augment),
            "init_from": args.init_from,
            "train_windows_available": int(len(train_origins)),
            "git_commit": git_commit(),
        }
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
            pick = train_origins[rng.integers(0, len(train_origins), size=args.batch_size)]
            past, future, ts, prof = stacked.gather(pick)
            if args.augment:
                past, future = augment(past, future, rng)
            loss = batch_loss(model, past, future, ts, prof, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            windows_seen += len(pick)
            if i % 10 == 0:  # reading the loss syncs the GPU, so only now and then
                loss_value = float(loss.detach())
                running = 0.8 * running + 0.2 * loss_value if i else loss_value
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr * warm:.1e}")
            if time.monotonic() - t0 > budget:
                stopped_early = True
                break
        epochs_done = epoch + 1
        val = validation_loss(model, stacked, val_origins, device, 256)
        elapsed = time.monotonic() - t0
        history.append({"epoch": epoch + 1, "train_loss": round(running, 5), "val_loss": round(val, 5),
                        "elapsed_s": round(elapsed, 1), "windows_seen": windows_seen})
        log(f"epoch {epoch + 1}: train {running:.4f}  val {val:.4f}  ({elapsed / 60:.1f} min, "
            f"{windows_seen / elapsed:.0f} windows/s)")
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


def eval_windows(fleet: data_mod.FleetData, cfg: TFTConfig, stride: int, limit: int, seed: int):
    origins = data_mod.window_origins(fleet, cfg.context_length, cfg.horizon, stride=stride)
    if len(origins) > limit:
        origins = origins[np.sort(np.random.default_rng(seed).permutation(len(origins))[:limit])]
    return origins, data_mod.gather_windows(fleet, origins, cfg.context_length, cfg.horizon)


def golden_cases(fleet: data_mod.FleetData, origins: np.ndarray, windows, cfg: TFTConfig):
    """Three real windows from different profiles plus one flat window."""
    past, _, ts, prof = windows
    cases, used = [], set()
    for want in ("database", "web_api", "ml_compute", "data_ingest", "generic"):
        idx = schema.PROFILES.index(want)
        hits = np.nonzero(prof == idx)[0]
        if len(hits) and idx not in used:
            k = hits[len(hits) // 2]
            cases.append((past[k], int(ts[k]), int(prof[k])))
            used.add(idx)
        if len(cases) == 3:
            break
    if not cases:
        cases.append((past[0], int(ts[0]), int(prof[0])))
    flat_levels = np.array([20, 5, 1, 74, 10, 40, 1, 30, 12, 9, 2, 2, 1.5, 12], dtype=np.float32)
    flat = np.repeat(flat_levels[None, :], cfg.context_length, axis=0)
    cases.append((flat, 1_770_000_000 // cfg.step_seconds * cfg.step_seconds, schema.PROFILES.index("generic")))
    return cases


def finish(args, model: TemporalFusionTransformer, info: dict, train_fleet: data_mod.FleetData,
           eval_fleet: data_mod.FleetData, data_desc: str, eval_desc: str, command: str) -> dict:
    """Evaluate against the baselines, export, check parity, write metadata, card and fixtures."""
    cfg = model.cfg
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log("evaluating on held-out data ...")
    calib_origins = data_mod.window_origins(train_fleet, cfg.context_length, cfg.horizon, stride=7)
    rng = np.random.default_rng(args.seed + 1)
    calib_origins = calib_origins[rng.permutation(len(calib_origins))[: args.calib_windows]]
    c_past, c_future, _, _ = data_mod.gather_windows(train_fleet, calib_origins, cfg.context_length, cfg.horizon)
    offsets = {
        "persistence": ev.calibrate(ev.persistence_point(c_past, cfg.horizon), c_past, c_future),
        "seasonal_naive": ev.calibrate(ev.seasonal_point(c_past, cfg.horizon, cfg.step_seconds), c_past, c_future),
    }
    e_origins, windows = eval_windows(eval_fleet, cfg, args.eval_stride, args.eval_windows, args.seed)
    past, future, ts, prof = windows
    if len(past) == 0:
        raise SystemExit("no complete evaluation window in the evaluation data")
    t_eval = time.monotonic()
    q, _, _ = ex.run_torch(model, past, ts, prof)
    evaluation = ev.evaluate_all(q, past, future, offsets, cfg.step_seconds)
    evaluation["data"] = eval_desc
    evaluation["window_stride_steps"] = args.eval_stride
    evaluation["calibration_windows"] = int(len(c_past))
    evaluation["model_seconds"] = round(time.monotonic() - t_eval, 2)
    evaluation["data_report"] = eval_fleet.report.to_json()
    s = evaluation["summary"]
    notes = []
    if not s["target_pinball_15pct_below_best_baseline"]:
        notes.append(f"The pinball target is missed: the model is {100 * s['improvement_vs_best_baseline']:.1f}% below "
                     f"the best baseline ({s['best_baseline']}), not 15%.")
    if not s["target_coverage_75_85"]:
        notes.append(f"The coverage target is missed: {100 * s['model_coverage_p10_p90']:.1f}% of targets fall inside p10-p90.")
    evaluation["notes"] = " ".join(notes)

    log("exporting ONNX ...")
    onnx_path = out_dir / "model.onnx"
    ex.export_onnx(model, onnx_path)
    torch.save(model.state_dict(), out_dir / "weights.pt")
    session = ex.ort_session(onnx_path)
    rnd = ex.random_windows(64, cfg, args.seed)
    n_real = min(256, len(past))
    flat = np.full((4, cfg.context_length, cfg.n_metrics), 7.0, dtype=np.float32)
    parity_windows = {
        "random": rnd,
        "real": (past[:n_real], ts[:n_real], prof[:n_real]),
        "flat": (flat, ts[:4] if len(ts) >= 4 else np.repeat(ts[:1], 4), np.arange(4, dtype=np.int64) % cfg.n_profiles),
    }
    parity = ex.parity(model, session, parity_windows)
    worst = max(v for r in parity.values() for k, v in r.items() if k != "windows")
    ratio = ex.parity_worst_ratio(model, session, parity_windows)
    log(f"ONNX Runtime vs PyTorch: max abs difference {worst:.2e}; worst |diff| / ({ex.PARITY_ATOL:g} + "
        f"{ex.PARITY_RTOL:g}|y|) = {ratio:.2f}")
    if ratio > 1.0:
        raise SystemExit(f"ONNX Runtime parity check failed: |torch - ort| exceeds {ex.PARITY_ATOL:g} + "
                         f"{ex.PARITY_RTOL:g}|torch| by a factor {ratio:.2f} (max abs differences {parity})")

    info.update({
        "data": data_desc,
        "data_report": train_fleet.report.to_json(),
        "git_commit": info.get("git_commit") or git_commit(),
        "command": command,
        "notes": args.notes,
    })
    name = out_dir.name
    meta = ex.build_metadata(
        model, name=name, version=args.version, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        params=count_params(model), flops=count_flops(model), training=info, evaluation=evaluation, parity_report=parity)
    meta["behaviour_probes"] = ex.behaviour_probes(session, cfg)
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    ex.write_model_card(out_dir / "MODEL_CARD.md", meta, {
        "summary": ev.summary_table(evaluation), "per_metric": ev.per_metric_table(evaluation)})
    ex.load_model_dir(out_dir)  # what we wrote must pass our own load check
    if args.golden:
        rel = os.path.relpath(out_dir.resolve(), REPO_ROOT)
        ex.write_golden(session, rel, golden_cases(eval_fleet, e_origins, windows, cfg), Path(args.golden))
        log(f"golden fixtures written to {args.golden}")
    return meta


def print_summary(meta: dict, out_dir: str) -> None:
    ev_ = meta["evaluation"]
    s = ev_["summary"]
    tr = meta["training"]
    lines = [
        "",
        f"model      {out_dir}  ({meta['params']:,} params, {meta['flops_per_forecast'] / 1e6:.1f} MFLOPs/forecast, "
        f"{(Path(out_dir) / 'model.onnx').stat().st_size / 1024:.0f} KiB onnx)",
        f"training   {tr['steps']} steps, {tr['windows_seen']:,} windows, {tr['wall_seconds'] / 60:.1f} min on {tr['device']}",
        f"evaluation {ev_['windows']} held-out windows",
        ev.summary_table(ev_),
        f"vs best baseline ({s['best_baseline']}): {100 * s['improvement_vs_best_baseline']:.1f}% lower scaled pinball "
        f"-> target >=15% {'MET' if s['target_pinball_15pct_below_best_baseline'] else 'MISSED'}; coverage "
        f"{100 * s['model_coverage_p10_p90']:.1f}% -> target 75-85% {'MET' if s['target_coverage_75_85'] else 'MISSED'}",
    ]
    print("\n".join(lines))


def add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="training Parquet (long format); default: produced by `fleetcast export`")
    p.add_argument("--eval-data", help="held-out Parquet; default: produced by `fleetcast export` (other seed, later range)")
    p.add_argument("--exporter", help="fleetcast binary for the default data (default: env TRAINING_EXPORTER_BIN, "
                   "else `cargo run --release --bin fleetcast`)")
    p.add_argument("--data-dir", default=".data", help="where the exporter's files are cached (default .data)")
    p.add_argument("--out", default="models/tft-v2", help="model directory to write (default models/tft-v2)")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--golden", default="tests/fixtures/model_golden.json", help="golden fixture file ('' to skip)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--windows-per-epoch", type=int, default=6144)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--var-hidden", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--encoder-selection", default="linear", choices=["grn", "linear"],
                   help="encoder variable selection: per-variable linear embedding (default, tft-v2) or a "
                        "per-variable GRN at every step (tft-v1)")
    p.add_argument("--scale-method", default="mad", choices=["iqr", "mad"],
                   help="normalisation spread: max(1.2533*mean abs deviation, floor) (default, sort-free, tft-v2) "
                        "or max(IQR/1.349, std/4, floor) (sorts, tft-v1)")
    p.add_argument("--context", type=int, default=schema.CONTEXT_LENGTH)
    p.add_argument("--horizon", type=int, default=schema.HORIZON)
    p.add_argument("--step-seconds", type=int, default=schema.STEP_SECONDS)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--max-minutes", type=float, default=18.0, help="wall-time budget for the training loop")
    p.add_argument("--init-from", help="model directory to fine-tune (e.g. models/tft-v1)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random rescaling of unbounded metrics")
    p.add_argument("--val-days", type=float, default=3.0)
    p.add_argument("--val-windows", type=int, default=512)
    p.add_argument("--eval-stride", type=int, default=12, help="steps between evaluation window origins")
    p.add_argument("--eval-windows", type=int, default=4000)
    p.add_argument("--calib-windows", type=int, default=3000)
    p.add_argument("--bad-rows", default="drop", choices=["drop", "fail"], help="what to do with bad rows")
    p.add_argument("--checkpoint", help="fit only: save the trained weights and training info to this .pt file")
    p.add_argument("--from-checkpoint", help="skip fitting: evaluate and export a checkpoint written by --checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--notes", default="", help="free text on how this model was made, kept in model.json and the card")


def load_data(args):
    if args.data and args.eval_data:
        train_path, eval_path = Path(args.data), Path(args.eval_data)
        desc_t, desc_e = f"file {train_path.name}", f"file {eval_path.name}"
        # files made by the default exporter calls are described by those calls
        for spec, name in ((DEFAULT_TRAIN, train_path.name), (DEFAULT_EVAL, eval_path.name)):
            if name.endswith(f"s{spec['seed']}-{spec['servers']}x{spec['hours']}h.parquet"):
                text = (f"fleetcast export --hours {spec['hours']} --servers {spec['servers']} --seed {spec['seed']} "
                        f"--start {spec['start']} (file {name})")
                desc_t, desc_e = (text, desc_e) if spec is DEFAULT_TRAIN else (desc_t, text)
    elif args.data or args.eval_data:
        raise SystemExit("--data and --eval-data go together (the evaluation must be on held-out data)")
    else:
        train_path, eval_path, desc_t, desc_e = default_data_paths(args.data_dir, args.exporter)
    train_fleet = data_mod.load_fleet(train_path, args.bad_rows, args.step_seconds)
    log(train_fleet.report.describe())
    eval_fleet = data_mod.load_fleet(eval_path, args.bad_rows, args.step_seconds)
    log(eval_fleet.report.describe())
    if eval_fleet.first_time() <= train_fleet.last_time():
        log("warning: the evaluation data does not start after the training data ends")
    desc_t += (f" ({train_fleet.report.servers} servers, {train_fleet.report.rows_kept:,} rows, "
               f"{dt.datetime.fromtimestamp(train_fleet.first_time(), dt.timezone.utc):%Y-%m-%d} to "
               f"{dt.datetime.fromtimestamp(train_fleet.last_time(), dt.timezone.utc):%Y-%m-%d %H:%M} UTC)")
    desc_e += (f" ({eval_fleet.report.servers} servers, {eval_fleet.report.rows_kept:,} rows, "
               f"{dt.datetime.fromtimestamp(eval_fleet.first_time(), dt.timezone.utc):%Y-%m-%d} to "
               f"{dt.datetime.fromtimestamp(eval_fleet.last_time(), dt.timezone.utc):%Y-%m-%d %H:%M} UTC)")
    return train_fleet, eval_fleet, desc_t, desc_e


def cmd_train(args, argv: list[str]) -> int:
    torch.set_num_threads(args.threads)
    command = "python -m training " + " ".join(shlex.quote(a) for a in argv)
    args.command_line = command
    train_fleet, eval_fleet, desc_t, desc_e = load_data(args)
    if args.from_checkpoint:
        ckpt = torch.load(args.from_checkpoint, map_location="cpu", weights_only=False)
        model = TemporalFusionTransformer(TFTConfig.from_json(ckpt["architecture"]))
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        info = ckpt["info"]
        command = ckpt.get("command", command) + f"  (then, on CPU: {command})"
    else:
        model, info = fit(args, train_fleet)
        if args.checkpoint:
            save_checkpoint(args.checkpoint, model.cfg, model.state_dict(), info, command)
            log(f"checkpoint written to {args.checkpoint}")
            print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))
            return 0
    meta = finish(args, model, info, train_fleet, eval_fleet, desc_t, desc_e, command)
    print_summary(meta, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training", description="fleetcast TFT training pipeline")
    sub = parser.add_subparsers(dest="command")
    p_train = sub.add_parser("train", help="data -> train -> evaluate -> export (the default)")
    add_train_flags(p_train)
    p_check = sub.add_parser("check", help="validate a model directory (model.json against model.onnx)")
    p_check.add_argument("model_dir")
    p_val = sub.add_parser("validate-data", help="report problems in a Parquet file")
    p_val.add_argument("file")
    p_val.add_argument("--bad-rows", default="drop", choices=["drop", "fail"])
    if not argv:
        argv = ["train"]
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, argv)
        if args.command == "check":
            meta, _ = ex.load_model_dir(args.model_dir)
            print(f"{args.model_dir}: ok ({meta['name']} {meta['version']}, {meta['params']:,} params)")
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
