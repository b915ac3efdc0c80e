"""Reading, validating and windowing fleet history in the long Parquet format.

The format (what `fleetcast export` writes; see training/README.md): one row per server and
step, columns `timestamp` (timestamp, UTC, step start), `server` (string), `profile` (string, one
of schema.PROFILES) and the 14 metrics (float) in schema.METRICS. Other columns are ignored. Row
order is free; steps may be missing (gaps).

Bad input is never filled silently: every problem is counted (rows and servers) in a
`DataReport`, and the policy decides whether the rows are dropped or the load fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from . import schema


class DataError(ValueError):
    """The training data cannot be used; the message says why and what to do."""


@dataclass
class Issue:
    kind: str
    rows: int
    servers: list[str]
    action: str

    def describe(self) -> str:
        shown = ", ".join(self.servers[:8]) + (f", ... ({len(self.servers)} servers)" if len(self.servers) > 8 else "")
        return f"{self.kind}: {self.rows} rows on {len(self.servers)} server(s) [{shown}] -> {self.action}"


@dataclass
class DataReport:
    source: str
    rows_read: int = 0
    rows_kept: int = 0
    servers: int = 0
    gap_steps: int = 0
    issues: list[Issue] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"data {self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.servers} servers, {self.gap_steps} missing steps inside server ranges"
        ]
        lines += ["  " + issue.describe() for issue in self.issues]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "servers": self.servers,
            "gap_steps": self.gap_steps,
            "issues": [issue.__dict__ for issue in self.issues],
        }


@dataclass
class FleetData:
    """Dense per-server arrays on the step grid.

    values[i] is [T_i, 14] float32 (NaN on missing steps), start[i] the unix seconds of row 0,
    profile[i] the profile index, present[i] a bool mask of observed steps.
    """

    servers: list[str]
    profiles: np.ndarray
    start: np.ndarray
    values: list[np.ndarray]
    present: list[np.ndarray]
    step_seconds: int
    report: DataReport

    def first_time(self) -> int:
        return int(self.start.min())

    def last_time(self) -> int:
        return int(max(s + (len(v) - 1) * self.step_seconds for s, v in zip(self.start, self.values)))


def _flag(df: pd.DataFrame, mask: pd.Series | np.ndarray, kind: str, policy: str, report: DataReport) -> pd.DataFrame:
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0:
        return df
    servers = sorted(df.loc[mask, "server"].astype(str).unique().tolist())
    action = "load failed" if policy == "fail" else f"dropped {n} rows"
    report.issues.append(Issue(kind, n, servers, action))
    if policy == "fail":
        raise DataError(f"bad training data in {report.source}: " + report.issues[-1].describe())
    return df.loc[~mask]


def validate_frame(df: pd.DataFrame, source: str = "<frame>", policy: str = "drop",
                   step_seconds: int = schema.STEP_SECONDS) -> tuple[pd.DataFrame, DataReport]:
    """Check a long frame against the format; returns the clean frame and the report.

    policy "drop" drops offending rows and counts them; "fail" raises DataError at the first
    problem. Missing columns and unreadable timestamps always fail.
    """
    if policy not in ("drop", "fail"):
        raise ValueError(f"unknown bad-row policy {policy!r} (drop|fail)")
    report = DataReport(source=source, rows_read=len(df))
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; the format needs {list(schema.REQUIRED_COLUMNS)}")
    df = df[list(schema.REQUIRED_COLUMNS)].copy()

    ts = df["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise DataError(f"{source}: column 'timestamp' must be a timestamp type, found {ts.dtype}")
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize("UTC")
    df["t"] = (ts.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64") // 1000).astype(np.int64)
    df = _flag(df, ts.isna().to_numpy(), "missing timestamp", policy, report)
    df["server"] = df["server"].astype(str)
    df["profile"] = df["profile"].astype(str)

    for metric in schema.METRICS:
        if not pd.api.types.is_numeric_dtype(df[metric]):
            raise DataError(f"{source}: metric column {metric!r} is not numeric ({df[metric].dtype})")
    values = df[list(schema.METRICS)].to_numpy(dtype=np.float64)
    df = _flag(df, ~np.isfinite(values).all(axis=1), "non-finite metric value (NaN/inf)", policy, report)

    values = df[list(schema.METRICS)].to_numpy(dtype=np.float64)
    bad_range = np.zeros(len(df), dtype=bool)
    for j, metric in enumerate(schema.METRICS):
        lo, hi = schema.METRIC_RANGES[metric]
        bad_range |= values[:, j] < lo
        if hi is not None:
            bad_range |= values[:, j] > hi
    df = _flag(df, bad_range, "metric value out of its physical range (catalog §1)", policy, report)

    df = _flag(df, ~df["profile"].isin(schema.PROFILES).to_numpy(), "unknown profile", policy, report)
    df = _flag(df, (df["t"] % step_seconds != 0).to_numpy(),
               f"timestamp not on the {step_seconds}-s step grid (resample first)", policy, report)
    df = _flag(df, df.duplicated(subset=["server", "t"], keep="first").to_numpy(),
               "duplicate (server, timestamp) row (first kept)", policy, report)

    n_prof = df.groupby("server")["profile"].nunique()
    changing = n_prof[n_prof > 1].index
    if len(changing):
        df = _flag(df, df["server"].isin(changing).to_numpy(), "server with more than one profile", policy, report)

    if df.empty:
        raise DataError(f"{source}: no usable rows left\n" + report.describe())
    report.rows_kept = len(df)
    report.servers = int(df["server"].nunique())
    return df, report


def read_parquet(path: str | Path, policy: str = "drop", step_seconds: int = schema.STEP_SECONDS) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    schema_names = pq.read_schema(path).names
    columns = [c for c in schema.REQUIRED_COLUMNS if c in schema_names]
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in schema_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the format needs {list(schema.REQUIRED_COLUMNS)}")
    return pq.read_table(path, columns=columns).to_pandas()


def to_fleet(df: pd.DataFrame, report: DataReport, step_seconds: int = schema.STEP_SECONDS) -> FleetData:
    """Dense per-server arrays from a validated frame (gaps stay NaN, marked in `present`)."""
    servers, profiles, starts, values, present = [], [], [], [], []
    gap_steps = 0
    profile_index = {p: i for i, p in enumerate(schema.PROFILES)}
    for server, g in df.sort_values(["server", "t"]).groupby("server", sort=True):
        t = g["t"].to_numpy()
        start = int(t[0])
        idx = (t - start) // step_seconds
        n = int(idx[-1]) + 1
        arr = np.full((n, len(schema.METRICS)), np.nan, dtype=np.float32)
        arr[idx] = g[list(schema.METRICS)].to_numpy(dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        gap_steps += n - len(idx)
        servers.append(str(server))
        profiles.append(profile_index[g["profile"].iloc[0]])
        starts.append(start)
        values.append(arr)
        present.append(mask)
    report.gap_steps = gap_steps
    return FleetData(servers, np.array(profiles, dtype=np.int64), np.array(starts, dtype=np.int64),
                     values, present, step_seconds, report)


def load_fleet(path: str | Path, policy: str = "drop", step_seconds: int = schema.STEP_SECONDS) -> FleetData:
    df = read_parquet(path, policy, step_seconds)
    clean, report = validate_frame(df, str(path), policy, step_seconds)
    return to_fleet(clean, report, step_seconds)


def window_origins(fleet: FleetData, context: int, horizon: int, stride: int = 1) -> np.ndarray:
    """All (server, first step) pairs whose context+horizon steps are all observed, as [N, 2].

    A window never spans a gap: the model is trained and evaluated only on observed data.
    """
    span = context + horizon
    out = []
    for i, mask in enumerate(fleet.present):
        if len(mask) < span:
            continue
        c = np.concatenate([[0], np.cumsum(~mask)])
        starts = np.arange(0, len(mask) - span + 1, stride)
        ok = (c[starts + span] - c[starts]) == 0
        starts = starts[ok]
        out.append(np.stack([np.full(len(starts), i), starts], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def gather_windows(fleet: FleetData, origins: np.ndarray, context: int, horizon: int):
    """Batch arrays for the given origins: past [N,T,M], future [N,H,M], last_ts [N], profile [N]."""
    n, m = len(origins), len(schema.METRICS)
    past = np.empty((n, context, m), dtype=np.float32)
    future = np.empty((n, horizon, m), dtype=np.float32)
    last_ts = np.empty(n, dtype=np.int64)
    prof = np.empty(n, dtype=np.int64)
    for k, (i, s) in enumerate(origins):
        arr = fleet.values[i]
        past[k] = arr[s : s + context]
        future[k] = arr[s + context : s + context + horizon]
        last_ts[k] = fleet.start[i] + (s + context - 1) * fleet.step_seconds
        prof[k] = fleet.profiles[i]
    return past, future, last_ts, prof


class StackedFleet:
    """All servers of equal length stacked into one array, for fast random window gathers."""

    def __init__(self, fleet: FleetData, context: int, horizon: int):
        self.fleet = fleet
        self.origins = window_origins(fleet, context, horizon)
        self.context, self.horizon = context, horizon
        lengths = [len(v) for v in fleet.values]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])[:-1]
        self.flat = np.concatenate(fleet.values, axis=0)

    def sample(self, rng: np.random.Generator, n: int):
        pick = self.origins[rng.integers(0, len(self.origins), size=n)]
        return self.gather(pick)

    def gather(self, origins: np.ndarray):
        span = self.context + self.horizon
        base = self.offsets[origins[:, 0]] + origins[:, 1]
        idx = base[:, None] + np.arange(span)[None, :]
        win = self.flat[idx]  # [N, span, M]
        last_ts = self.fleet.start[origins[:, 0]] + (origins[:, 1] + self.context - 1) * self.fleet.step_seconds
        prof = self.fleet.profiles[origins[:, 0]]
        return win[:, : self.context], win[:, self.context :], last_ts.astype(np.int64), prof.astype(np.int64)
