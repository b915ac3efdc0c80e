"""Scores for the model and the three baselines on the same held-out windows.

Baselines (all return quantiles [N, H, M, 3] in raw units):

* persistence: the last context value for every step;
* seasonal naive: the value at the same step one day (86,400 s) earlier;
* heuristic: the original system's linear-trend forecast (catalog §4 "Heuristic forecast"),
  with its own p10/p90 = pred -/+ 1.28 std sqrt(i) and its clamps.

Persistence and seasonal naive are point forecasts; to give them a fair pinball loss their
p10/p90 are the point plus the 10th/90th percentile of their own scaled residuals per metric and
horizon step, measured on training windows (a split-conformal calibration), so the comparison is
with calibrated baselines, not with zero-width intervals.

Scores per metric and horizon band: pinball loss per quantile, mean pinball, p50 MAE (raw
units), and p10-p90 coverage. The summary "scaled pinball" divides each metric's pinball by the
mean per-window robust scale of that metric on the evaluation windows (the same divisor for every
method), so metrics in MB/s and in % weigh alike.
"""

from __future__ import annotations

import numpy as np

from . import schema

METHODS = ("model", "persistence", "seasonal_naive", "heuristic")


def robust_scale(past: np.ndarray) -> np.ndarray:
    """Per-window robust scale max(IQR/1.349, std/4, floor) [N, M]: the numpy twin of the "iqr"
    normalisation (tft-v1). It stays the evaluation's fixed yardstick (and the augmentation's spike
    unit) whatever spread a model normalises with, so scores of different models are comparable."""
    t = past.shape[1]
    ordered = np.sort(past, axis=1)
    q1 = ordered[:, (t - 1) // 4]
    q3 = ordered[:, 3 * (t - 1) // 4]
    floors = np.array([schema.SCALE_FLOORS[m] for m in schema.METRICS], dtype=np.float32)
    return np.maximum(np.maximum((q3 - q1) / 1.349, past.std(axis=1) * 0.25), floors)


def _clip_ranges(x: np.ndarray) -> np.ndarray:
    lo = np.array([schema.METRIC_RANGES[m][0] for m in schema.METRICS])
    hi = np.array([schema.METRIC_RANGES[m][1] if schema.METRIC_RANGES[m][1] is not None else np.inf for m in schema.METRICS])
    return np.clip(x, lo[:, None], hi[:, None]) if x.ndim == 4 else np.clip(x, lo, hi)


def persistence_point(past: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(past[:, -1:, :], horizon, axis=1)


def seasonal_point(past: np.ndarray, horizon: int, step_seconds: int) -> np.ndarray:
    """y[t + j] = y[t + j - day]; needs a context of at least one day."""
    period = 86400 // step_seconds
    t = past.shape[1]
    if t < period:
        raise ValueError(f"seasonal naive needs a context of at least {period} steps")
    idx = t - 1 + np.arange(1, horizon + 1) - period
    # steps beyond one period ahead reuse the last day again
    idx = np.where(idx >= t, idx - period, idx)
    return past[:, idx, :]


def calibrate(points: np.ndarray, past: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Residual quantiles (p10, p50 unused, p90) in scaled units per [H, M]: returns [H, M, 2]."""
    scale = robust_scale(past)[:, None, :]
    resid = (future - points) / scale
    return np.stack([np.quantile(resid, 0.1, axis=0), np.quantile(resid, 0.9, axis=0)], axis=-1).astype(np.float32)


def with_intervals(points: np.ndarray, past: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    scale = robust_scale(past)[:, None, :]
    low = points + scale * offsets[None, :, :, 0]
    high = points + scale * offsets[None, :, :, 1]
    q = np.stack([np.minimum(low, points), points, np.maximum(high, points)], axis=-1)
    return _clip_ranges(q)


def _slope(y: np.ndarray) -> np.ndarray:
    """Least-squares slope along axis 1 of [N, L, M]."""
    n = y.shape[1]
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return np.einsum("l,nlm->nm", x, y - y.mean(axis=1, keepdims=True)) / (x**2).sum()


def heuristic(past: np.ndarray, horizon: int) -> np.ndarray:
    """The original's linear-trend forecast over the last 24 values, with its intervals and clamps."""
    last = past[:, -24:, :].astype(np.float64)
    cur = last[:, -1, :]
    trend = 0.7 * _slope(last) + 0.3 * _slope(last[:, -5:, :])
    std = last.std(axis=1)
    i = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    pred = cur[:, None, :] + trend[:, None, :] * i
    width = 1.28 * std[:, None, :] * np.sqrt(i)
    q = np.stack([pred - width, pred, pred + width], axis=-1)
    lo = np.zeros(len(schema.METRICS))
    hi = np.full(len(schema.METRICS), np.inf)
    for j, m in enumerate(schema.METRICS):
        if m.endswith("_pct"):
            hi[j] = 100.0
        elif m.startswith("net_"):
            hi[j] = 200.0
        elif m == "uptime_days":
            hi[j] = 30.0
        elif m == "load_average":
            hi[j] = 16.0
    q = np.clip(q, lo[:, None], hi[:, None])
    for j, m in enumerate(schema.METRICS):
        if m.endswith("close_wait") or m == "uptime_days":
            q[:, :, j, :] = np.round(q[:, :, j, :])
    return q.astype(np.float32)


def score(quantiles: np.ndarray, future: np.ndarray, divisor: np.ndarray, step_seconds: int) -> dict:
    """Scores of one method: per metric x band, plus summaries. quantiles [N,H,M,3], future [N,H,M]."""
    qs = np.array(schema.QUANTILES)
    err = future[..., None] - quantiles
    pin = np.maximum(qs * err, (qs - 1.0) * err)  # [N, H, M, 3]
    covered = (future >= quantiles[..., 0]) & (future <= quantiles[..., 2])
    abs_err = np.abs(err[..., 1])
    horizon = future.shape[1]
    out: dict = {"per_metric": {}, "bands": {}}
    bands = schema.horizon_bands(step_seconds, horizon)
    for j, metric in enumerate(schema.METRICS):
        out["per_metric"][metric] = {}
        for name, lo, hi in bands:
            p = pin[:, lo:hi, j].mean(axis=(0, 1))
            out["per_metric"][metric][name] = {
                "pinball": [round(float(v), 6) for v in p],
                "mean_pinball": round(float(p.mean()), 6),
                "p50_mae": round(float(abs_err[:, lo:hi, j].mean()), 6),
                "coverage_p10_p90": round(float(covered[:, lo:hi, j].mean()), 4),
            }
    scaled = pin / divisor[None, None, :, None]
    for name, lo, hi in bands:
        out["bands"][name] = {
            "scaled_pinball": round(float(scaled[:, lo:hi].mean()), 6),
            "coverage_p10_p90": round(float(covered[:, lo:hi].mean()), 4),
        }
    out["scaled_pinball"] = round(float(scaled.mean()), 6)
    out["scaled_pinball_per_quantile"] = [round(float(v), 6) for v in scaled.mean(axis=(0, 1, 2))]
    out["scaled_p50_mae"] = round(float((abs_err / divisor[None, None, :]).mean()), 6)
    out["coverage_p10_p90"] = round(float(covered.mean()), 4)
    return out


def evaluate_all(model_quantiles: np.ndarray, past: np.ndarray, future: np.ndarray,
                 offsets: dict[str, np.ndarray], step_seconds: int) -> dict:
    """The full evaluation block for model.json: every method scored on the same windows."""
    horizon = future.shape[1]
    divisor = robust_scale(past).mean(axis=0)
    methods = {
        "model": model_quantiles,
        "persistence": with_intervals(persistence_point(past, horizon), past, offsets["persistence"]),
        "seasonal_naive": with_intervals(seasonal_point(past, horizon, step_seconds), past, offsets["seasonal_naive"]),
        "heuristic": heuristic(past, horizon),
    }
    scores = {name: score(q, future, divisor, step_seconds) for name, q in methods.items()}
    baselines = [m for m in METHODS if m != "model"]
    best = min(baselines, key=lambda m: scores[m]["scaled_pinball"])
    model_loss = scores["model"]["scaled_pinball"]
    improvement = 1.0 - model_loss / scores[best]["scaled_pinball"]
    cov = scores["model"]["coverage_p10_p90"]
    return {
        "windows": int(past.shape[0]),
        "divisor_per_metric": {m: round(float(v), 6) for m, v in zip(schema.METRICS, divisor)},
        "methods": scores,
        "summary": {
            "model_scaled_pinball": model_loss,
            "best_baseline": best,
            "best_baseline_scaled_pinball": scores[best]["scaled_pinball"],
            "improvement_vs_best_baseline": round(float(improvement), 4),
            "model_coverage_p10_p90": cov,
            "target_pinball_15pct_below_best_baseline": bool(improvement >= 0.15),
            "target_coverage_75_85": bool(0.75 <= cov <= 0.85),
        },
    }


def summary_table(evaluation: dict) -> str:
    """Markdown table: methods x (scaled pinball overall and per band, coverage)."""
    bands = list(next(iter(evaluation["methods"].values()))["bands"].keys())
    head = "| method | scaled pinball | " + " | ".join(f"pinball {b}" for b in bands) + " | scaled p50 MAE | p10-p90 coverage |"
    lines = [head, "|" + "---|" * (4 + len(bands))]
    for name, s in evaluation["methods"].items():
        cells = [f"{s['scaled_pinball']:.4f}"] + [f"{s['bands'][b]['scaled_pinball']:.4f}" for b in bands]
        cells += [f"{s['scaled_p50_mae']:.4f}", f"{100 * s['coverage_p10_p90']:.1f}%"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_metric_table(evaluation: dict) -> str:
    """Markdown table: metric x band, mean pinball (raw units) of each method, model coverage."""
    methods = list(evaluation["methods"].keys())
    lines = ["| metric | band | " + " | ".join(methods) + " | model p50 MAE | model coverage |",
             "|" + "---|" * (4 + len(methods))]
    for metric in schema.METRICS:
        for band, cell in evaluation["methods"]["model"]["per_metric"][metric].items():
            vals = [f"{evaluation['methods'][m]['per_metric'][metric][band]['mean_pinball']:.4g}" for m in methods]
            lines.append(f"| {metric} | {band} | " + " | ".join(vals) +
                         f" | {cell['p50_mae']:.4g} | {100 * cell['coverage_p10_p90']:.1f}% |")
    return "\n".join(lines)
