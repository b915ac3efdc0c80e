"""Reading, validating and windowing fleet history in the long Parquet format.

The format (what `fleetcast export` writes; see training/README.md): one row per server and
step, columns `timestamp` (timestamp, UTC, step start), `server` (string), optional `profile`
(string, one of schema.PROFILES; `generic` when absent) and ANY SUBSET of the 14 metrics (float)
in schema.METRICS, NaN = not measured. Other columns are ignored. Row order is free; steps may be
missing (gaps).

Bad input is never filled silently: every problem is counted (rows and servers) in a
`DataReport`, and the policy decides whether the bad values or rows are dropped (a bad metric
value becomes a missing value, a bad timestamp or profile drops the row) or the load fails.
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
    metric_columns: list[str] = field(default_factory=list)
    empty_rows: int = 0
    missing_values: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [
            f"data {self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.servers} servers, {self.gap_steps} missing steps inside server ranges, "
            f"{len(self.metric_columns)} metric column(s), {self.empty_rows} rows without any metric value dropped"
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
            "metric_columns": self.metric_columns,
            "empty_rows": self.empty_rows,
            "missing_values": self.missing_values,
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
    """Check a long frame against the format; returns the clean frame (all 14 metric columns,
    NaN where not measured) and the report.

    policy "drop" turns a bad metric value (inf, out of its physical range) into a missing one
    and drops rows whose timestamp or profile is unusable, counting both; "fail" raises DataError
    at the first problem. NaN is a missing value, never a reason to drop a row (a row with no
    metric value at all is dropped, it carries nothing). Missing `timestamp`/`server` columns, no
    metric column at all, or unreadable timestamps always fail.
    """
    if policy not in ("drop", "fail"):
        raise ValueError(f"unknown bad-row policy {policy!r} (drop|fail)")
    report = DataReport(source=source, rows_read=len(df))
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; the format needs {list(schema.REQUIRED_COLUMNS)}, "
                        f"an optional 'profile' and at least one of {list(schema.METRICS)}")
    present = [m for m in schema.METRICS if m in df.columns]
    if not present:
        raise DataError(f"{source}: no metric column; the format needs at least one of {list(schema.METRICS)}")
    df = df[[c for c in (*schema.REQUIRED_COLUMNS, "profile", *present) if c in df.columns]].copy()
    if "profile" not in df.columns:
        df["profile"] = schema.DEFAULT_PROFILE
    report.metric_columns = present

    ts = df["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise DataError(f"{source}: column 'timestamp' must be a timestamp type, found {ts.dtype}")
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize("UTC")
    df["t"] = (ts.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64") // 1000).astype(np.int64)
    df = _flag(df, ts.isna().to_numpy(), "missing timestamp", policy, report)
    df["server"] = df["server"].astype(str)
    df["profile"] = df["profile"].fillna(schema.DEFAULT_PROFILE).astype(str)

    for metric in present:
        if not pd.api.types.is_numeric_dtype(df[metric]):
            raise DataError(f"{source}: metric column {metric!r} is not numeric ({df[metric].dtype})")
        df[metric] = df[metric].astype(np.float64)
    for metric in present:
        col = df[metric].to_numpy()
        lo, hi = schema.METRIC_RANGES[metric]
        bad = np.isinf(col) | (col < lo) | ((col > hi) if hi is not None else False)
        _flag_values(df, metric, bad, f"{metric}: inf or outside its physical range (catalog §1)", policy, report)
    for metric in schema.METRICS:
        if metric not in df.columns:
            df[metric] = np.nan

    df = _flag(df, ~df["profile"].isin(schema.PROFILES).to_numpy(), "unknown profile", policy, report)
    df = _flag(df, (df["t"] % step_seconds != 0).to_numpy(),
               f"timestamp not on the {step_seconds}-s step grid (resample first)", policy, report)
    df = _flag(df, df.duplicated(subset=["server", "t"], keep="first").to_numpy(),
               "duplicate (server, timestamp) row (first kept)", policy, report)
    empty = df[list(schema.METRICS)].isna().all(axis=1).to_numpy()
    if empty.any():  # nothing measured in the row: not an error, but nothing to keep either
        df = df.loc[~empty]
        report.empty_rows = int(empty.sum())

    n_prof = df.groupby("server")["profile"].nunique()
    changing = n_prof[n_prof > 1].index
    if len(changing):
        df = _flag(df, df["server"].isin(changing).to_numpy(), "server with more than one profile", policy, report)

    if df.empty:
        raise DataError(f"{source}: no usable rows left\n" + report.describe())
    report.rows_kept = len(df)
    report.servers = int(df["server"].nunique())
    report.missing_values = {m: int(df[m].isna().sum()) for m in schema.METRICS}
    return df, report


def _flag_values(df: pd.DataFrame, metric: str, mask: np.ndarray, kind: str, policy: str, report: DataReport) -> None:
    """Bad values of one metric become missing (NaN), counted; policy fail refuses them."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0:
        return
    servers = sorted(df.loc[mask, "server"].astype(str).unique().tolist())
    action = "load failed" if policy == "fail" else f"{n} values set to missing"
    report.issues.append(Issue(kind, n, servers, action))
    if policy == "fail":
        raise DataError(f"bad training data in {report.source}: " + report.issues[-1].describe())
    df.loc[mask, metric] = np.nan


def read_parquet(path: str | Path, policy: str = "drop", step_seconds: int = schema.STEP_SECONDS) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    schema_names = pq.read_schema(path).names
    wanted = (*schema.REQUIRED_COLUMNS, "profile", *schema.METRICS)
    return pq.read_table(path, columns=[c for c in wanted if c in schema_names]).to_pandas()


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
