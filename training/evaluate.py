"""Scores for the model and the baselines on the same held-out windows, in two settings.

1. Simulator windows (all 14 metrics of a server, complete): `evaluate_all` and the tables of
   the tft-v1/v2 cards. Baselines (all return quantiles [N, H, M, 3] in raw units):

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

2. Single series with a held-out tail (real traces, a user's data): `evaluate_series`, errors
   scaled per series by its in-sample seasonal-naive MAE, pooled as a mean over series (see there).
"""

from __future__ import annotations

import numpy as np

from . import schema

METHODS = ("model", "persistence", "median_1h", "median_2h", "seasonal_naive", "heuristic")
#: robust-level baselines: the median of the last k observed steps, for every horizon step
MEDIAN_BASELINES = {"median_1h": 12, "median_2h": 24}


def robust_scale(past: np.ndarray) -> np.ndarray:
    """Per-window robust scale max(IQR/1.349, std/4, floor) [N, M], tft-v1's normalisation spread.
    It stays the simulator evaluation's fixed yardstick whatever a model normalises with, so the
    scores of tft-v1, v2 and v3 are comparable."""
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


def median_point(past: np.ndarray, horizon: int, k: int) -> np.ndarray:
    """The median of the last k context steps [N, T, M] -> [N, H, M] (complete simulator windows)."""
    return np.repeat(np.median(past[:, -k:, :], axis=1, keepdims=True), horizon, axis=1)


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
        **{name: with_intervals(median_point(past, horizon, k), past, offsets[name])
           for name, k in MEDIAN_BASELINES.items() if name in offsets},
        "seasonal_naive": with_intervals(seasonal_point(past, horizon, step_seconds), past, offsets["seasonal_naive"]),
        "heuristic": heuristic(past, horizon),
    }
    scores = {name: score(q, future, divisor, step_seconds) for name, q in methods.items()}
    baselines = [m for m in METHODS if m != "model" and m in scores]
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


# -- real (and user) series: scaled errors per series, pooled ------------------------------------

REAL_METHODS = ("model", "persistence", "median_1h", "median_2h", "seasonal_naive", "linear_trend")


def seasonal_naive_mae(values: np.ndarray, period: int) -> float:
    """In-sample MAE of the seasonal-naive forecast y[t] = y[t - period] over the steps where both
    are observed: the per-series divisor of the scaled errors (NaN when it cannot be measured)."""
    a, b = values[period:], values[:-period]
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).mean()) if ok.any() else float("nan")


def series_windows(values: np.ndarray, first: int, last: int, every: int, context: int, horizon: int,
                   min_observed: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast origins o (first forecast step) in [first, last - horizon] every `every` steps,
    with contexts values[o-T:o] (NaN-padded before the series' start) holding at least
    `min_observed` observed steps and at least one observed target. Returns (origins, past [N,T],
    future [N,H]); targets may be NaN (gaps), which the scores skip."""
    origins = np.arange(first, last - horizon + 1, every)
    padded = np.concatenate([np.full(context, np.nan, np.float32), values.astype(np.float32)])
    idx = origins[:, None] + np.arange(0, context + horizon)[None, :]  # in padded coordinates
    win = padded[idx] if len(origins) else np.zeros((0, context + horizon), np.float32)
    past, future = win[:, :context], win[:, context:]
    ok = (np.isfinite(past).sum(axis=1) >= min_observed) & np.isfinite(future).any(axis=1)
    return origins[ok], past[ok], future[ok]


def _last_observed(past: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(past), np.arange(past.shape[1])[None, :], -1).max(axis=1)
    return past[np.arange(len(past)), np.maximum(idx, 0)]


def median_of_last_observed(past: np.ndarray, k: int) -> np.ndarray:
    """Median of the last k observed values of every row of [N, T] (NaN = not observed)."""
    obs = np.isfinite(past)
    # rank of every observed step counted from the end: 1 = the last observed
    rank = np.cumsum(obs[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(all="ignore"):
        return np.nanmedian(np.where(obs & (rank <= k), past, np.nan), axis=1)


def real_points(past: np.ndarray, horizon: int, period: int) -> dict[str, np.ndarray]:
    """Point forecasts [N, H] of the baselines from NaN-holed contexts [N, T]:
    persistence = the last observed value; median_1h / median_2h = the median of the last 12 / 24
    observed values (a robust level: isolated spikes do not move it); seasonal naive = the value one period earlier
    (persistence where that step is missing); linear trend = the original heuristic's line
    (0.7 x least-squares slope over the last 24 observed values + 0.3 x over the last 5, from the
    last observed value)."""
    n, t = past.shape
    last = _last_observed(past)
    persistence = np.repeat(last[:, None], horizon, axis=1)
    idx = t + np.arange(horizon) - period
    idx = np.where(idx >= t, idx - period, idx)
    seasonal = past[:, idx]
    seasonal = np.where(np.isfinite(seasonal), seasonal, persistence)
    slopes = np.zeros(n)
    for k in range(n):  # a few thousand origins at most
        obs = np.nonzero(np.isfinite(past[k]))[0]

        def slope(sel):
            if len(sel) < 2:
                return 0.0
            x = sel.astype(np.float64)
            return float(np.polyfit(x, past[k, sel].astype(np.float64), 1)[0])

        slopes[k] = 0.7 * slope(obs[-24:]) + 0.3 * slope(obs[-5:])
    trend = last[:, None] + slopes[:, None] * np.arange(1, horizon + 1)[None, :]
    medians = {name: np.repeat(median_of_last_observed(past, k)[:, None], horizon, axis=1)
               for name, k in MEDIAN_BASELINES.items()}
    return {"persistence": persistence, **medians, "seasonal_naive": seasonal, "linear_trend": trend}


def calibrated_offsets(points: np.ndarray, future: np.ndarray, divisor: float) -> np.ndarray:
    """p10/p90 residual offsets per horizon step [H, 2] (in divisor units) of a point forecast,
    measured on in-sample origins: split-conformal intervals for the baselines."""
    resid = (future - points) / divisor
    with np.errstate(all="ignore"):
        out = np.stack([np.nanquantile(resid, 0.1, axis=0), np.nanquantile(resid, 0.9, axis=0)], axis=-1)
    return np.nan_to_num(out, nan=0.0)


def _with_offsets(points: np.ndarray, offsets: np.ndarray, divisor: float, lo: float, hi: float) -> np.ndarray:
    q = np.stack([points + divisor * np.minimum(offsets[None, :, 0], 0), points,
                  points + divisor * np.maximum(offsets[None, :, 1], 0)], axis=-1)
    return np.clip(q, lo, hi)


def band_scores(q: np.ndarray, future: np.ndarray, divisor: float, step_seconds: int) -> dict:
    """Per band: p50 MAE / divisor, mean pinball / divisor, p10-p90 coverage, over observed targets."""
    qs = np.array(schema.QUANTILES)
    err = future[..., None] - q
    pin = np.maximum(qs * err, (qs - 1.0) * err).mean(axis=-1)
    ok = np.isfinite(future)
    out = {}
    for name, lo, hi in schema.horizon_bands(step_seconds, future.shape[1]):
        m = ok[:, lo:hi]
        if not m.any():
            continue
        f = future[:, lo:hi][m]
        out[name] = {
            "scaled_mae": float(np.abs(f - q[:, lo:hi, 1][m]).mean() / divisor),
            "scaled_pinball": float(pin[:, lo:hi][m].mean() / divisor),
            "coverage": float(((f >= q[:, lo:hi, 0][m]) & (f <= q[:, lo:hi, 2][m])).mean()),
        }
    return out


def evaluate_series(predict, series_list, context: int, horizon: int, step_seconds: int,
                    every: int = 24, heldout: float = 0.25, calib_every: int = 12) -> dict:
    """Scores on the held-out tail (last `heldout` of every series): origins every `every` steps
    whose targets all lie in the tail (contexts may reach back into the training part). Errors are
    divided per series by its in-sample (training part) seasonal-naive MAE (lag one day); the
    baselines' intervals are calibrated on in-sample origins of the same series. `predict(past
    [N,T], metric [N], profile [N], last_ts [N]) -> [N,H,3]`. Pooled = mean over series."""
    period = 86400 // step_seconds
    per_series = {}
    for s in series_list:
        n = len(s.values)
        cut = int(round(n * (1.0 - heldout)))
        divisor = seasonal_naive_mae(s.values[:cut], period)
        if not np.isfinite(divisor) or divisor <= 0:
            continue
        origins, past, future = series_windows(s.values, cut, n, every, context, horizon)
        if len(origins) == 0:
            continue
        _, c_past, c_future = series_windows(s.values[:cut], period, cut, calib_every, context, horizon)
        lo, hi = schema.slot_range(s.metric)
        hi = np.inf if hi is None else hi
        methods = {}
        points = real_points(past, horizon, period)
        c_points = real_points(c_past, horizon, period) if len(c_past) else None
        for name, pts in points.items():
            off = calibrated_offsets(c_points[name], c_future, divisor) if c_points is not None else np.zeros((horizon, 2))
            methods[name] = _with_offsets(pts, off, divisor, lo, hi)
        last_ts = s.start + (origins - 1) * step_seconds
        methods["model"] = predict(past, np.full(len(past), s.metric), np.full(len(past), s.profile), last_ts.astype(np.int64))
        per_series[s.name] = {
            "metric": schema.METRICS[s.metric] if s.metric < len(schema.METRICS) else schema.EXTRA_KINDS[s.metric - len(schema.METRICS)],
            "origins": int(len(origins)),
            "divisor": divisor,
            "methods": {m: band_scores(methods[m], future, divisor, step_seconds) for m in REAL_METHODS},
        }
    return {"per_series": per_series, "pooled": pool(per_series), "every": every, "heldout": heldout}


def pool(per_series: dict, names: list[str] | None = None) -> dict:
    """Mean over series of the per-series scores, per method and band."""
    names = [n for n in (names or per_series.keys()) if n in per_series]
    out = {}
    for m in REAL_METHODS:
        out[m] = {}
        for band in ("0-1h", "1-4h", "4-8h"):
            vals = [per_series[n]["methods"][m][band] for n in names
                    if m in per_series[n]["methods"] and band in per_series[n]["methods"][m]]
            if vals:
                out[m][band] = {k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0]}
    out["series"] = len(names)
    return out


def real_targets(pooled: dict) -> dict:
    """The issue's targets on the pooled real scores."""
    m, p = pooled["model"], pooled["persistence"]
    gain = {b: 1.0 - m[b]["scaled_mae"] / p[b]["scaled_mae"] for b in m}
    cov = float(np.mean([m[b]["coverage"] for b in m]))
    return {
        "mae_below_persistence": {b: round(g, 4) for b, g in gain.items()},
        "coverage_mean": round(cov, 4),
        "target_1_4h_and_4_8h_10pct_below_persistence": bool(gain.get("1-4h", 0) >= 0.10 and gain.get("4-8h", 0) >= 0.10),
        "target_0_1h_not_worse": bool(gain.get("0-1h", -1) >= 0.0),
        "target_coverage_75_85": bool(0.75 <= cov <= 0.85),
    }


def real_table(pooled: dict) -> str:
    """Markdown: methods x bands (scaled p50 MAE, scaled pinball, coverage)."""
    bands = tuple(b for b in ("0-1h", "1-4h", "4-8h") if b in pooled["model"])
    lines = ["| method | " + " | ".join(f"MAE {b}" for b in bands) + " | " + " | ".join(f"pinball {b}" for b in bands)
             + " | " + " | ".join(f"cov {b}" for b in bands) + " |", "|" + "---|" * (1 + 3 * len(bands))]
    for m in REAL_METHODS:
        if m not in pooled or not pooled[m]:
            continue
        r = pooled[m]
        lines.append(f"| {m} | " + " | ".join(f"{r[b]['scaled_mae']:.3f}" for b in bands) + " | "
                     + " | ".join(f"{r[b]['scaled_pinball']:.3f}" for b in bands) + " | "
                     + " | ".join(f"{100 * r[b]['coverage']:.0f}%" for b in bands) + " |")
    return "\n".join(lines)


def per_series_table(result: dict) -> str:
    """Markdown: per series, p50 scaled MAE per band of the model vs persistence, and model coverage."""
    lines = ["| series | metric | origins | model MAE 0-1h / 1-4h / 4-8h | persistence | median 1h | median 2h | seasonal naive "
             "| model coverage |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["per_series"].items():
        def cell(m):
            return " / ".join(f"{r['methods'][m][b]['scaled_mae']:.2f}" for b in ("0-1h", "1-4h", "4-8h") if b in r["methods"][m])
        cov = np.mean([v["coverage"] for v in r["methods"]["model"].values()])
        lines.append(f"| {name} | {r['metric']} | {r['origins']} | {cell('model')} | {cell('persistence')} | "
                     f"{cell('median_1h') if 'median_1h' in r['methods'] else ''} | "
                     f"{cell('median_2h') if 'median_2h' in r['methods'] else ''} | {cell('seasonal_naive')} | {100 * cov:.0f}% |")
    return "\n".join(lines)
