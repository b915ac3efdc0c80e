"""Leave-series-out evaluation: how the training configuration does on real series it never saw.

The real held-out tails in the card come from series whose first 75 % was trained on, so they
measure "a server the model has history of". The hidden test is other servers. Here the real
series are split into groups (folds, default `cpu,noncpu`: the CPU-like series, then all the
others); for every fold a model is trained with the same flags but WITHOUT that fold's series
(not even their training parts: `--exclude-real`), and scored on the fold's held-out tails (the
same origins, baselines and scaled errors as the card's real table). Every real series is thus
scored by a model that never saw it; the pooled table over the CPU-like series is the selection
criterion for training changes.

The folds run as subprocesses (`--jobs` at a time, 1 torch thread each), usually with a shorter
wall-time budget than a shipped model (`--max-minutes`), so the numbers describe the
configuration at that training length (longer fits were better so far). The merged result
(JSON, `--leaveout-out`) goes into a model's card with `train --leaveout FILE`.

    python -m training leaveout --max-minutes 15 --jobs 2 --leaveout-out .data/leaveout.json [train flags]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import evaluate as ev
from . import series as sr

DEFAULT_FOLDS = "cpu,noncpu"


def fold_checkpoint(args, token: str) -> Path:
    from .train import REPO_ROOT

    tag = Path(args.leaveout_out).stem
    return REPO_ROOT / args.data_dir / f"{tag}-fold-{token.replace('+', '_')}.pt"


def run_fold(args, token: str) -> dict:
    """Fit without the fold's real series and score their held-out tails (in this process)."""
    from .model import TemporalFusionTransformer, TFTConfig
    from .train import build_model, fit, load_sources, predictor, save_checkpoint

    args.exclude_real = ",".join(x for x in (args.exclude_real, token) if x)
    ckpt = fold_checkpoint(args, token)
    if args.reuse_folds and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        model = TemporalFusionTransformer(TFTConfig.from_json(saved["architecture"]))
        model.load_state_dict(saved["state_dict"])
        model.eval()
        info = saved["info"]
        src = load_sources(args, model.cfg)
    else:
        model, _ = build_model(args)
        src = load_sources(args, model.cfg)
        model, info = fit(args, model, src)
        save_checkpoint(str(ckpt), model.cfg, model.state_dict(), info, getattr(args, "command_line", ""))
    names = sr.real_group(src.real_series, token)
    series = [s for s in src.real_series if s.name in names]
    cfg = model.cfg
    res = ev.evaluate_series(predictor(model), series, cfg.context_length, cfg.horizon, cfg.step_seconds,
                             every=args.real_every, heldout=sr.HELDOUT_FRACTION)
    return {"fold": token, "series": names, "excluded_from_fit": src.excluded_real, "per_series": res["per_series"],
            "training": {k: info.get(k) for k in ("rows_seen", "wall_seconds", "best_val_loss", "epochs", "mix")}}


def merge(folds: list[dict], argv: list[str], minutes: float) -> dict:
    per_series = {}
    for f in folds:
        per_series.update(f["per_series"])
    cpu = [n for n, r in per_series.items() if r["metric"] == "cpu_user_pct"]
    out = {
        "protocol": (f"{len(folds)} folds over the real series ({', '.join(f['fold'] for f in folds)}); per fold a fit with "
                     f"the same flags but without the fold's series (not even their first 75%), {minutes:g} min wall-time "
                     "budget, scored on the fold's held-out tails (last 25%)"),
        "folds": [{k: v for k, v in f.items() if k != "per_series"} for f in folds],
        "command": "python -m training leaveout " + " ".join(argv),
        "per_series": per_series,
        "pooled": ev.pool(per_series),
        "pooled_cpu": ev.pool(per_series, cpu),
        "every": 24, "heldout": sr.HELDOUT_FRACTION,
    }
    out["targets"] = ev.real_targets(out["pooled"])
    out["targets_cpu"] = ev.real_targets(out["pooled_cpu"]) if cpu else None
    return out


def gains(pooled: dict) -> str:
    p = pooled["persistence"]
    return " / ".join(f"{100 * (pooled['model'][b]['scaled_mae'] / p[b]['scaled_mae'] - 1):+.0f}%"
                      for b in ("0-1h", "1-4h", "4-8h") if b in p)


def summary(result: dict) -> str:
    lines = [result["protocol"], "", "CPU-like series, never seen in training:", ev.real_table(result["pooled_cpu"]),
             f"model vs persistence (p50 MAE): {gains(result['pooled_cpu'])}", "",
             "all real series, never seen in training:", ev.real_table(result["pooled"]),
             f"model vs persistence (p50 MAE): {gains(result['pooled'])}", "", ev.per_series_table(result)]
    return "\n".join(lines)


def cmd_leaveout(args, argv: list[str]) -> int:
    torch.set_num_threads(args.threads)
    if args.mix is None:
        from .train import DEFAULT_MIX

        args.mix = DEFAULT_MIX
    args.variants = []
    args.command_line = "python -m training leaveout " + " ".join(argv)
    if args.fold:  # one fold, in this process (a child of the run below)
        result = run_fold(args, args.fold)
        Path(args.fold_out).write_text(json.dumps(result, default=float))
        return 0
    tokens = [t.strip() for t in args.folds.split(",") if t.strip()]
    out_path = Path(args.leaveout_out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    running, results, t0 = [], {}, time.monotonic()
    pending = list(tokens)
    while pending or running:
        while pending and len(running) < args.jobs:
            tok = pending.pop(0)
            part = out_path.with_name(f"{out_path.stem}-fold-{tok.replace('+', '_')}.json")
            cmd = [sys.executable, "-m", "training", "leaveout", *argv, "--fold", tok, "--fold-out", str(part)]
            print(f"fold {tok}: " + " ".join(cmd), file=sys.stderr)
            running.append((tok, part, subprocess.Popen(cmd)))
        time.sleep(5)
        for item in list(running):
            tok, part, proc = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f"fold {tok} failed ({proc.returncode})")
                results[tok] = json.loads(part.read_text())
    result = merge([results[t] for t in tokens], argv, args.max_minutes)
    result["wall_minutes"] = round((time.monotonic() - t0) / 60, 1)
    out_path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(summary(result))
    print(f"\nwritten to {out_path}")
    return 0


def add_leaveout_flags(p) -> None:
    p.add_argument("--folds", default=DEFAULT_FOLDS, help=f"comma-separated real-series groups, one fit each (default "
                   f"{DEFAULT_FOLDS}); a group is cpu, noncpu, nab, datacenter, or series names joined by '+'")
    p.add_argument("--jobs", type=int, default=2, help="folds trained at the same time (1 torch thread each)")
    p.add_argument("--leaveout-out", default=".data/leaveout.json", help="merged result (JSON)")
    p.add_argument("--reuse-folds", action="store_true", help="score the folds' saved weights instead of fitting again")
    p.add_argument("--fold", default="", help=argparse_suppress())
    p.add_argument("--fold-out", default="", help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
