"""The fixed vocabulary shared by the training pipeline and the Rust side.

Metric order, profile order, physical ranges and the default time grid are part of the model
contract: they are written into `model.json` and the Rust predictor checks against them.
"""

from __future__ import annotations

METRICS: tuple[str, ...] = (
    "cpu_user_pct",
    "cpu_sys_pct",
    "cpu_iowait_pct",
    "cpu_idle_pct",
    "java_cpu_pct",
    "mem_used_pct",
    "swap_used_pct",
    "disk_usage_pct",
    "net_in_mb_s",
    "net_out_mb_s",
    "back_close_wait",
    "front_close_wait",
    "load_average",
    "uptime_days",
)

PROFILES: tuple[str, ...] = (
    "ml_compute",
    "database",
    "web_api",
    "conductor_mgmt",
    "data_ingest",
    "risk_analytics",
    "generic",
)

#: Inclusive physical range of each metric (catalog §1); `None` means unbounded above.
METRIC_RANGES: dict[str, tuple[float, float | None]] = {
    **{m: (0.0, 100.0) for m in METRICS if m.endswith("_pct")},
    "net_in_mb_s": (0.0, None),
    "net_out_mb_s": (0.0, None),
    "back_close_wait": (0.0, None),
    "front_close_wait": (0.0, None),
    "load_average": (0.0, None),
    "uptime_days": (0.0, 365.0),
}

#: Training-only metric kinds beyond the 14: real series whose kind matches none of fleetcast's
#: metrics (disk write bytes, request latency, request counts, cycles per instruction) train their
#: own embedding row instead of teaching a real metric's row behaviour it does not have. The graph
#: accepts these slot indices (14, ...) but they are not part of the serving contract.
EXTRA_KINDS: tuple[str, ...] = ("other",)
N_SLOTS = len(METRICS) + len(EXTRA_KINDS)


def slot_range(slot: int) -> tuple[float, float | None]:
    """Physical range of a metric-embedding slot: a metric's range, or [0, unbounded) for extras."""
    return METRIC_RANGES[METRICS[slot]] if slot < len(METRICS) else (0.0, None)


#: Per-window scale floors of the tft-v1/v2 normalisation, in raw units. tft-v3 no longer uses
#: them (its floor is relative and tiny); they remain the evaluation's fixed yardstick for the
#: simulator tables, so scores compare with the earlier models' cards.
SCALE_FLOORS: dict[str, float] = {
    **{m: 0.5 for m in METRICS if m.endswith("_pct")},
    "net_in_mb_s": 0.1,
    "net_out_mb_s": 0.1,
    "back_close_wait": 0.5,
    "front_close_wait": 0.5,
    "load_average": 0.05,
    "uptime_days": 0.5,
}

#: Columns every history file needs; `profile` is optional (default DEFAULT_PROFILE) and the
#: metrics may be any non-empty subset of METRICS (a missing column = never measured).
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "server")
DEFAULT_PROFILE = "generic"

STEP_SECONDS = 300
CONTEXT_LENGTH = 288
HORIZON = 96
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)

#: Names of the calendar (known) variables, in the order the graph builds them.
CALENDAR_FEATURES: tuple[str, ...] = ("hour_sin", "hour_cos", "week_sin", "week_cos")

#: Horizon bands for evaluation, as (name, first step, last step exclusive), steps counted from 0.
def horizon_bands(step_seconds: int, horizon: int) -> list[tuple[str, int, int]]:
    """Split the horizon into first hour, 1-4 h and 4-8 h (clipped to the horizon)."""
    per_hour = 3600 // step_seconds
    edges = [("0-1h", 0, per_hour), ("1-4h", per_hour, 4 * per_hour), ("4-8h", 4 * per_hour, 8 * per_hour)]
    bands = []
    for name, lo, hi in edges:
        lo, hi = min(lo, horizon), min(hi, horizon)
        if hi > lo:
            bands.append((name, lo, hi))
    return bands
