"""Single series (one metric of one server), the real traces, and the training window sampler.

tft-v3 is channel-independent: its unit of data is one series, a 1-D float array on the 300-s
grid with NaN where nothing was observed, plus the metric slot (schema.METRICS index, or a
training-only extra kind), the profile and the unix time of step 0. Every source becomes a list
of `Series`:

* a fleet Parquet file (the simulator's export, or a user's history): one series per server and
  metric column with enough observed steps;
* the real traces under `../shared/data/real-traces/` (`REAL_SERIES` says which column maps to
  which metric and why);
* random synthetic series, generated per batch (`synthetic_windows`).

The real traces and a user's own data are split in time: the first 75 % of every series is
training material, the last 25 % is held out (`split_point`). Training windows only ever read
the training part (`train_part`), and the sampler's validation windows come from its tail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema
from .data import FleetData

REPO_ROOT = Path(__file__).resolve().parent.parent
#: default location of the real traces, relative to the repository root (override with --real-traces)
DEFAULT_REAL_TRACES = "../shared/data/real-traces"
HELDOUT_FRACTION = 0.25
OTHER = len(schema.METRICS) + schema.EXTRA_KINDS.index("other")


@dataclass
class Series:
    name: str
    metric: int  # metric slot: index into schema.METRICS, or >= 14 for a training-only extra kind
    profile: int
    start: int  # unix seconds of step 0
    values: np.ndarray  # float32, NaN = not observed
    source: str  # "simulator", "real", "user"


def split_point(series: Series, heldout: float = HELDOUT_FRACTION) -> int:
    """First held-out step: the last `heldout` fraction of the series' steps is never trained on."""
    return int(round(len(series.values) * (1.0 - heldout)))


def train_part(series: Series, heldout: float = HELDOUT_FRACTION) -> Series:
    cut = split_point(series, heldout)
    return Series(series.name, series.metric, series.profile, series.start, series.values[:cut], series.source)


def fleet_series(fleet: FleetData, source: str, min_observed: int = 36) -> list[Series]:
    """One series per server and metric that has at least `min_observed` observed steps."""
    out = []
    for i, server in enumerate(fleet.servers):
        for j, metric in enumerate(schema.METRICS):
            v = fleet.values[i][:, j].astype(np.float32)
            if np.isfinite(v).sum() >= min_observed:
                out.append(Series(f"{server}/{metric}", j, int(fleet.profiles[i]), int(fleet.start[i]), v, source))
    return out


# -- real traces -------------------------------------------------------------------------------

#: (file, column, metric slot name, multiplier, why). Mapping rules (see the model card): CPU-like
#: percent -> cpu_user_pct; memory percent -> mem_used_pct; network bytes -> net_in/out_mb_s
#: (bytes per 5 min / 300 / 1e6 = MB/s); summed CPU over VMs (load-like, unbounded) ->
#: load_average; kinds that match no fleetcast metric (disk write bytes, request latency, request
#: counts, assigned memory in absolute units, cycles per instruction, disk-I/O percent) -> the
#: training-only "other" slot, so they do not teach a real metric's embedding behaviour that
#: metric never shows.
BYTES_PER_5MIN_TO_MB_S = 1.0 / 300.0 / 1e6
REAL_SERIES: tuple[tuple[str, str, str, float, str], ...] = (
    ("nab/cpu_utilization_asg_misconfiguration.csv", "value", "cpu_user_pct", 1.0, "CPU % of an ASG instance"),
    ("nab/grok_asg_anomaly.csv", "value", "cpu_user_pct", 1.0, "CPU-like ASG metric, 0-100"),
    ("nab/ec2_network_in_257a54.csv", "value", "net_in_mb_s", BYTES_PER_5MIN_TO_MB_S, "network bytes in per 5 min"),
    ("nab/ec2_network_in_5abac7.csv", "value", "net_in_mb_s", BYTES_PER_5MIN_TO_MB_S, "network bytes in per 5 min"),
    ("nab/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv", "value", "net_in_mb_s", BYTES_PER_5MIN_TO_MB_S, "network bytes in"),
    ("nab/ec2_disk_write_bytes_1ef3de.csv", "value", "other", 1.0, "disk write bytes per 5 min"),
    ("nab/ec2_disk_write_bytes_c0d644.csv", "value", "other", 1.0, "disk write bytes per 5 min"),
    ("nab/ec2_request_latency_system_failure.csv", "value", "other", 1.0, "request latency"),
    ("nab/elb_request_count_8c0756.csv", "value", "other", 1.0, "ELB request count per 5 min"),
    ("datacenter/alibaba2018_machine_usage_300s.csv", "cpu_util_percent", "cpu_user_pct", 1.0, "fleet CPU %"),
    ("datacenter/alibaba2018_machine_usage_300s.csv", "mem_util_percent", "mem_used_pct", 1.0, "fleet memory %"),
    ("datacenter/alibaba2018_machine_usage_300s.csv", "net_in", "net_in_mb_s", 1.0, "fleet network in (0-100 units)"),
    ("datacenter/alibaba2018_machine_usage_300s.csv", "net_out", "net_out_mb_s", 1.0, "fleet network out (0-100 units)"),
    ("datacenter/alibaba2018_machine_usage_300s.csv", "disk_io_percent", "other", 1.0, "fleet disk-I/O %"),
    ("datacenter/azure2019_vm_cpu_mem_300s.csv", "cpu_usage", "load_average", 1.0, "summed CPU over the VMs"),
    ("datacenter/azure2019_vm_cpu_mem_300s.csv", "assigned_mem", "other", 1.0, "assigned memory, absolute"),
    ("datacenter/google2019_instance_usage_300s.csv", "avg_cpu", "cpu_user_pct", 100.0, "fleet CPU, fraction -> %"),
    ("datacenter/google2019_instance_usage_300s.csv", "avg_mem", "mem_used_pct", 100.0, "fleet memory, fraction -> %"),
    ("datacenter/google2019_instance_usage_300s.csv", "avg_assigned_mem", "mem_used_pct", 100.0,
     "fleet assigned memory, fraction -> %"),
    ("datacenter/google2019_instance_usage_300s.csv", "avg_cycles_per_instruction", "other", 1.0, "cycles per instruction"),
)
#: The alibaba and google files have no timestamp column (consecutive 300-s steps); azure counts
#: seconds from the trace start. These start times are fixed choices (the real dates are not in
#: the files), so their calendar features are only approximately right.
ASSUMED_STARTS = {
    "alibaba2018_machine_usage_300s.csv": "2018-01-01T00:00:00Z",
    "azure2019_vm_cpu_mem_300s.csv": "2019-01-01T00:00:00Z",
    "google2019_instance_usage_300s.csv": "2019-05-01T00:00:00Z",
}


def _slot(name: str) -> int:
    return schema.METRICS.index(name) if name in schema.METRICS else len(schema.METRICS) + schema.EXTRA_KINDS.index(name)


def _unix(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def load_real_traces(root: str | Path = DEFAULT_REAL_TRACES, step_seconds: int = schema.STEP_SECONDS) -> list[Series]:
    """Every real series as a `Series` on the step grid. NAB timestamps (naive = UTC, a few
    minutes off the grid) are snapped to the nearest step from the series' first timestamp; gaps
    stay NaN, a step hit twice keeps its first value."""
    root = Path(root)
    if not root.is_absolute():
        root = REPO_ROOT / root
    if not root.is_dir():
        raise FileNotFoundError(f"real traces not found at {root} (pass --real-traces DIR)")
    frames: dict[str, pd.DataFrame] = {}
    out = []
    generic = schema.PROFILES.index(schema.DEFAULT_PROFILE)
    for rel, column, slot, mult, _why in REAL_SERIES:
        if rel not in frames:
            frames[rel] = pd.read_csv(root / rel)
        df = frames[rel]
        fname = Path(rel).name
        vals = df[column].to_numpy(dtype=np.float64) * mult
        if fname in ASSUMED_STARTS:
            start = _unix(ASSUMED_STARTS[fname])
            if "timestamp" in df.columns:  # azure: seconds from the trace start
                idx = np.round(df["timestamp"].to_numpy(dtype=np.float64) / step_seconds).astype(np.int64)
            else:
                idx = np.arange(len(df))
        else:
            t = pd.to_datetime(df["timestamp"]).dt.tz_localize("UTC").astype("datetime64[s, UTC]").astype("int64").to_numpy()
            start = int(t[0])
            idx = np.round((t - start) / step_seconds).astype(np.int64)
        arr = np.full(int(idx.max()) + 1, np.nan, dtype=np.float32)
        first = np.unique(idx, return_index=True)[1]
        arr[idx[first]] = vals[first]
        name = f"{Path(rel).stem}" + ("" if column == "value" else f":{column}")
        out.append(Series(name, _slot(slot), generic, start, arr, "real"))
    return out


# -- training windows --------------------------------------------------------------------------


class SeriesPool:
    """Random training windows from a list of series: a context of T steps ending anywhere a
    window has at least `min_observed` observed context steps and at least one hour of observed
    targets. The context may reach back before the series' first step (NaN there), which is how
    short histories occur naturally. Series are drawn in proportion to their length."""

    def __init__(self, series: list[Series], context: int, horizon: int, step_seconds: int, min_observed: int = 24):
        self.series = [s for s in series if len(s.values) >= min_observed + 12]
        self.context, self.horizon, self.step = context, horizon, step_seconds
        self.min_observed = min_observed
        pads = [np.full(context, np.nan, np.float32)]
        offsets, lengths = [], []
        pos = 0
        for s in self.series:
            pos += context
            offsets.append(pos)
            pads += [s.values.astype(np.float32), np.full(context + horizon, np.nan, np.float32)]
            pos += len(s.values) + horizon
            lengths.append(len(s.values))
        self.flat = np.concatenate(pads) if self.series else np.zeros(0, np.float32)
        self.cum = np.concatenate([[0], np.cumsum(np.isfinite(self.flat))]).astype(np.int64)
        self.offsets = np.array(offsets, dtype=np.int64)
        self.lengths = np.array(lengths, dtype=np.int64)
        self.weights = self.lengths / max(self.lengths.sum(), 1)
        self.metric = np.array([s.metric for s in self.series], dtype=np.int64)
        self.profile = np.array([s.profile for s in self.series], dtype=np.int64)
        self.start = np.array([s.start for s in self.series], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.series)

    def valid(self, k: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Window (series k, first forecast step `end`) has enough observed context and targets."""
        e = self.offsets[k] + end
        ctx = self.cum[e] - self.cum[e - self.context]
        fut = self.cum[e + 12] - self.cum[e]
        return (ctx >= self.min_observed) & (fut >= 1)

    def sample(self, rng: np.random.Generator, n: int):
        ks, ends = [], []
        need = n
        while need > 0:
            k = rng.choice(len(self.series), size=2 * need, p=self.weights)
            end = (rng.random(2 * need) * (self.lengths[k] - 12 - self.min_observed)).astype(np.int64) + self.min_observed
            ok = self.valid(k, end)
            ks.append(k[ok][:need])
            ends.append(end[ok][:need])
            need -= len(ks[-1])
        return self.gather(np.concatenate(ks), np.concatenate(ends))

    def origins(self, stride: int, rng: np.random.Generator, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Every valid (series, end) on a stride, then at most `limit` of them at random (fixed sets, e.g. validation)."""
        ks, ends = [], []
        for k, length in enumerate(self.lengths):
            end = np.arange(self.min_observed, length - 12, stride)
            end = end[self.valid(np.full(len(end), k), end)]
            ks.append(np.full(len(end), k))
            ends.append(end)
        k, e = np.concatenate(ks).astype(np.int64), np.concatenate(ends).astype(np.int64)
        pick = rng.permutation(len(k))[:limit]
        return k[pick], e[pick]

    def gather(self, k: np.ndarray, end: np.ndarray):
        """past [N,T] (NaN gaps), future [N,H] (NaN where unobserved or past the series' end),
        metric, profile, last_ts."""
        e = self.offsets[k] + end
        idx = e[:, None] + np.arange(-self.context, self.horizon)[None, :]
        win = self.flat[idx]
        last_ts = self.start[k] + (end - 1) * self.step
        return win[:, : self.context], win[:, self.context :], self.metric[k], self.profile[k], last_ts.astype(np.int64)


# -- augmentation ------------------------------------------------------------------------------

SLOT_LOW = np.array([schema.slot_range(i)[0] for i in range(schema.N_SLOTS)], dtype=np.float32)
SLOT_HIGH = np.array([schema.slot_range(i)[1] if schema.slot_range(i)[1] is not None else np.inf
                      for i in range(schema.N_SLOTS)], dtype=np.float32)


def _nanmad(x: np.ndarray) -> np.ndarray:
    """Per-row mean absolute deviation over finite values (0 for a flat or empty row)."""
    with np.errstate(all="ignore"):
        mean = np.nanmean(x, axis=1, keepdims=True)
        mad = np.nanmean(np.abs(x - mean), axis=1)
    return np.nan_to_num(mad, nan=0.0)


def augment(past: np.ndarray, future: np.ndarray, metric: np.ndarray, rng: np.random.Generator,
            strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Robustness augmentation per row, context and horizon alike unless said otherwise:

    * scale: unbounded kinds are multiplied by 10^U(-3, 3) (levels over many orders of
      magnitude); percent series by a factor that keeps them inside 0-100, sometimes tiny
      (near-idle 0.1-2 % series);
    * additive noise (a noisier regime), quantisation (values on a coarse grid, as idle CPU
      counters report), sparse spikes, a level shift at a random step (in the context: learn to
      follow it; in the horizon: learn that it happens), a flat series (constant stays constant);
    * context only: truncated history (only the last 24-288 steps observed), random missing
      steps, and runs of missing steps.
    `strength` scales every probability (0 = off).
    """
    n, t = past.shape
    full = np.concatenate([past, future], axis=1).astype(np.float64)
    p = lambda base: rng.random(n) < base * strength  # noqa: E731 (a one-line coin per row)
    low, high = SLOT_LOW[metric][:, None], SLOT_HIGH[metric][:, None]
    bounded = np.isfinite(SLOT_HIGH[metric])
    mad = np.maximum(_nanmad(full[:, :t]), 1e-9)[:, None]

    # scale changes
    rescale = p(0.6)
    unb = rescale & ~bounded
    full[unb] *= 10.0 ** rng.uniform(-3, 3, size=(int(unb.sum()), 1))
    pct = rescale & bounded
    if pct.any():
        with np.errstate(all="ignore"):
            top = np.nan_to_num(np.nanmax(full[pct], axis=1, keepdims=True), nan=1.0)
        cap = np.clip(high[pct] / np.maximum(top, 1e-6), 0.0, 2.0)
        tiny = rng.random((int(pct.sum()), 1)) < 0.4
        f = np.where(tiny, 10.0 ** rng.uniform(-2.5, -0.5, size=cap.shape), rng.uniform(0.2, 1.0, size=cap.shape) * cap)
        full[pct] *= np.minimum(f, cap)
    mad = np.maximum(_nanmad(full[:, :t]), 1e-9)[:, None]

    noisy = p(0.2)
    full[noisy] += rng.normal(0, 1, size=(int(noisy.sum()), full.shape[1])) * mad[noisy] * rng.uniform(0.2, 1.5, size=(int(noisy.sum()), 1))
    spiky = p(0.15)
    if spiky.any():
        rate = rng.uniform(0.003, 0.05, size=(int(spiky.sum()), 1))
        hits = rng.random((int(spiky.sum()), full.shape[1])) < rate
        size = rng.uniform(3, 20, size=hits.shape) * mad[spiky] * np.where(rng.random(hits.shape) < 0.85, 1, -1)
        full[spiky] += np.where(hits, size, 0.0)
    shift = p(0.12)
    if shift.any():
        at = rng.integers(t // 2, full.shape[1], size=int(shift.sum()))
        amount = rng.uniform(2, 8, size=(int(shift.sum()), 1)) * mad[shift] * rng.choice([-1, 1], size=(int(shift.sum()), 1))
        full[shift] += np.where(np.arange(full.shape[1])[None, :] >= at[:, None], amount, 0.0)
    flat = p(0.03)
    if flat.any():
        last = full[flat][:, t - 1 : t]
        full[flat] = np.where(np.isfinite(last), last, 0.0)
    quant = p(0.1)
    if quant.any():
        q = mad[quant] * rng.uniform(0.3, 3.0, size=(int(quant.sum()), 1))
        full[quant] = np.round(full[quant] / q) * q
    full = np.clip(full, low, high)

    past, future = full[:, :t].astype(np.float32), full[:, t:].astype(np.float32)
    trunc = p(0.25)
    if trunc.any():
        keep = np.exp(rng.uniform(np.log(24), np.log(t), size=int(trunc.sum()))).astype(np.int64)
        past[trunc] = np.where(np.arange(t)[None, :] >= (t - keep)[:, None], past[trunc], np.nan)
    holes = p(0.25)
    if holes.any():
        rate = rng.uniform(0.01, 0.2, size=(int(holes.sum()), 1))
        past[holes] = np.where(rng.random((int(holes.sum()), t)) < rate, np.nan, past[holes])
    runs = p(0.15)
    if runs.any():
        a = rng.integers(0, t - 1, size=int(runs.sum()))
        length = rng.integers(3, 72, size=int(runs.sum()))
        col = np.arange(t)[None, :]
        past[runs] = np.where((col >= a[:, None]) & (col < (a + length)[:, None]), np.nan, past[runs])
    # the caller only sends rows with >= 24 observed steps: restore a row the holes emptied too much
    too_few = np.isfinite(past).sum(axis=1) < 24
    if too_few.any():
        past[too_few] = np.concatenate([past[too_few, :-24], full[too_few, t - 24 : t].astype(np.float32)], axis=1)
    return past, future


def synthetic_windows(n: int, context: int, horizon: int, step_seconds: int, rng: np.random.Generator):
    """Random series that cover behaviour the simulator lacks: a level, daily (sometimes weekly)
    seasonality of random amplitude and shape, AR(1) noise of random persistence and size
    (heavy-tailed on a third of the rows), a random walk, a slow trend, periodic job bursts,
    flicker between two levels, on a random metric slot and a random date. The daily cycle is
    aligned with the clock at a random phase, so the context, not the calendar alone, has to tell
    the model where the peak is. Augmentation (scales, spikes, shifts, gaps) comes on top."""
    total = context + horizon
    steps_per_day = 86400 // step_seconds
    day0 = _unix("2020-01-06T00:00:00Z") // 86400
    last_ts = ((day0 + rng.integers(0, 2000, size=n)) * 86400 + rng.integers(0, steps_per_day, size=n) * step_seconds)
    ts = last_ts[:, None] + (np.arange(total)[None, :] - (context - 1)) * step_seconds
    phase = 2 * np.pi * (ts % 86400) / 86400.0
    week = 2 * np.pi * (ts % (7 * 86400)) / (7 * 86400.0)
    shift = rng.uniform(0, 2 * np.pi, size=(n, 1))
    amp = np.where(rng.random((n, 1)) < 0.35, 0.0, rng.exponential(1.0, size=(n, 1)))
    season = amp * (np.sin(phase + shift) + rng.uniform(0, 0.6, (n, 1)) * np.sin(2 * phase + 2 * shift + rng.uniform(0, 6, (n, 1))))
    season *= np.where(rng.random((n, 1)) < 0.2, 1 + 0.5 * np.sin(week), 1.0)  # weekday/weekend modulation
    phi = rng.uniform(0.0, 0.98, size=(n, 1))
    # heavy-tailed innovations on a third of the rows (Student t, 2-5 degrees of freedom, tamed)
    heavy = rng.random((n, 1)) < 0.3
    t_noise = np.clip(rng.standard_t(rng.uniform(2, 5, size=(n, 1)), size=(n, total)), -15, 15)
    eps = np.where(heavy, t_noise, rng.normal(0, 1, size=(n, total))) * rng.exponential(0.5, size=(n, 1))
    ar = np.zeros((n, total))
    for k in range(1, total):  # 384 cheap vector steps
        ar[:, k] = phi[:, 0] * ar[:, k - 1] + eps[:, k]
    walk = np.cumsum(rng.normal(0, 1, size=(n, total)), axis=1) * np.where(rng.random((n, 1)) < 0.25, rng.exponential(0.05, (n, 1)), 0.0)
    trend = np.arange(total)[None, :] / total * np.where(rng.random((n, 1)) < 0.2, rng.normal(0, 2, (n, 1)), 0.0)
    x = season + ar * np.sqrt(1 - phi**2) + walk + trend
    # patterns real hosts show and the simulator does not: periodic jobs (a burst of 1-3 steps
    # every 30 min to 24 h, as from cron) and flicker between two levels (a two-state Markov
    # chain, e.g. a worker pool toggling)
    cron = rng.random(n) < 0.15
    if cron.any():
        period = rng.choice([6, 12, 24, 36, 72, 144, 288], size=int(cron.sum()))[:, None]
        width = rng.integers(1, 4, size=(int(cron.sum()), 1))
        phase = (np.arange(total)[None, :] + rng.integers(0, 288, size=(int(cron.sum()), 1))) % period
        x[cron] += np.where(phase < width, rng.uniform(2, 10, size=(int(cron.sum()), 1)), 0.0)
    flicker = rng.random(n) < 0.1
    if flicker.any():
        k = int(flicker.sum())
        switch = rng.random((k, total)) < rng.uniform(0.01, 0.3, size=(k, 1))
        state = np.cumsum(switch, axis=1) % 2
        x[flicker] += state * rng.uniform(2, 10, size=(k, 1))
    metric = rng.integers(0, len(schema.METRICS), size=n)
    # onto the metric's range: percent series at a random level and spread inside 0-100, the
    # others positive at a random magnitude
    bounded = np.isfinite(SLOT_HIGH[metric])
    level = np.where(bounded, rng.uniform(0, 90, n), 10.0 ** rng.uniform(-2, 4, n))[:, None]
    spread = np.where(bounded, rng.exponential(5, n), level[:, 0] * rng.uniform(0.02, 0.5, n))[:, None]
    x = level + spread * (x - x[:, context - 1 : context]) / np.maximum(x[:, :context].std(axis=1, keepdims=True), 1e-6)
    x = np.clip(x, SLOT_LOW[metric][:, None], SLOT_HIGH[metric][:, None]).astype(np.float32)
    profile = np.full(n, schema.PROFILES.index(schema.DEFAULT_PROFILE), dtype=np.int64)
    return x[:, :context], x[:, context:], metric.astype(np.int64), profile, last_ts.astype(np.int64)


# -- synthetic "cloud CPU" series --------------------------------------------------------------

#: percent metrics the cloud-CPU generator writes (cpu_user_pct most often: a CloudWatch
#: CPUUtilization series arrives as cpu_user_pct)
CLOUD_METRICS = ("cpu_user_pct", "cpu_user_pct", "cpu_user_pct", "cpu_user_pct", "cpu_user_pct",
                 "cpu_sys_pct", "java_cpu_pct", "cpu_iowait_pct")


def cloud_cpu_windows(n: int, context: int, horizon: int, step_seconds: int, rng: np.random.Generator):
    """Random series shaped like single cloud instances' CPU (CloudWatch CPUUtilization at 5 min),
    which are mostly NOT seasonal and whose short-term future is best described by a robust level:

    * a level (near-idle 0.1-2 % on a third of the rows, moderate 2-60 %, busy 60-98 %) with noise
      around it whose size is a random fraction of the level, heavy-tailed (Student t, 1.5-6
      degrees of freedom) and of random persistence (mostly white, sometimes AR up to 0.95);
    * isolated spikes (one or two steps, often to near saturation) that revert at once;
    * bursts (a few steps to two hours above the level, then back);
    * periodic jobs: a short ramp-shaped burst every 30 min to 24 h (often every hour) at a fixed
      phase, its height varying per occurrence, sometimes skipped;
    * sustained level shifts (one or two, anywhere, context or horizon; sometimes to idle),
      a slow drift on some rows, a weak daily cycle on some (absent on most);
    * near-idle rows quantised to a coarse grid (a counter that reports 0, 0.3, 0.7 ...);
    * everything clamped to 0-100 (saturation at 100).
    Returns what `synthetic_windows` does."""
    total = context + horizon
    steps_per_day = 86400 // step_seconds
    day0 = _unix("2020-01-06T00:00:00Z") // 86400
    last_ts = ((day0 + rng.integers(0, 2000, size=n)) * 86400 + rng.integers(0, steps_per_day, size=n) * step_seconds)
    ts = last_ts[:, None] + (np.arange(total)[None, :] - (context - 1)) * step_seconds
    col = np.arange(total)[None, :]

    kind = rng.random(n)
    level0 = np.where(kind < 0.3, 10.0 ** rng.uniform(-1, 0.3, n),
                      np.where(kind < 0.85, rng.uniform(2, 60, n), rng.uniform(60, 98, n)))[:, None]
    # sustained level shifts: the level is multiplied at one or two random steps
    level = np.repeat(level0, total, axis=1)
    for _ in range(2):
        shift = rng.random(n) < 0.2
        if shift.any():
            k = int(shift.sum())
            at = rng.integers(context // 3, total, size=k)
            f = np.where(rng.random(k) < 0.2, 10.0 ** rng.uniform(-2, -1, k), 10.0 ** rng.uniform(-0.7, 0.7, k))
            level[shift] *= np.where(col >= at[:, None], f[:, None], 1.0)
    level = np.clip(level, 0.05, 99.0)
    # slow drift
    drift = rng.random(n) < 0.2
    if drift.any():
        k = int(drift.sum())
        walk = np.cumsum(rng.normal(0, 1, (k, total)), axis=1) * rng.uniform(0.002, 0.02, (k, 1))
        level[drift] *= np.exp(walk - walk[:, context - 1 : context])
    # weak daily cycle on some rows
    daily = rng.random(n) < 0.3
    if daily.any():
        k = int(daily.sum())
        phase = 2 * np.pi * (ts[daily] % 86400) / 86400.0 + rng.uniform(0, 2 * np.pi, (k, 1))
        level[daily] *= 1.0 + rng.uniform(0.05, 0.5, (k, 1)) * np.sin(phase)

    # noise around the level: heavy-tailed, mostly white, size a fraction of the level
    rel = 10.0 ** rng.uniform(-1.7, -0.4, (n, 1))
    df = rng.uniform(1.5, 6, (n, 1))
    eps = np.clip(rng.standard_t(df, size=(n, total)), -12, 12)
    eps = np.where(rng.random((n, 1)) < 0.5, eps, rng.normal(0, 1, (n, total)))
    phi = np.where(rng.random((n, 1)) < 0.6, rng.uniform(0, 0.3, (n, 1)), rng.uniform(0.3, 0.95, (n, 1)))
    ar = np.zeros((n, total))
    ar[:, 0] = eps[:, 0]
    for k in range(1, total):
        ar[:, k] = phi[:, 0] * ar[:, k - 1] + eps[:, k]
    noise = ar * np.sqrt(1 - phi**2)
    sigma = rel * level
    x = level + sigma * noise

    # isolated spikes (one or two steps) that revert
    spiky = rng.random(n) < 0.5
    if spiky.any():
        k = int(spiky.sum())
        hits = rng.random((k, total)) < rng.uniform(0.002, 0.03, (k, 1))
        hits |= np.roll(hits, 1, axis=1) & (rng.random((k, 1)) < 0.3)
        top = np.where(rng.random((k, 1)) < 0.4, 100.0, level0[spiky] + rng.uniform(5, 60, (k, 1)))
        height = rng.uniform(0.3, 1.0, (k, total)) * (top - x[spiky])
        x[spiky] += np.where(hits, np.maximum(height, 0.0), 0.0)
    # bursts: a run of 2-24 steps above the level
    burst = rng.random(n) < 0.3
    if burst.any():
        k = int(burst.sum())
        onset = rng.random((k, total)) < rng.uniform(0.002, 0.012, (k, 1))
        dur = rng.integers(2, 25, size=(k, 1))
        c = np.cumsum(onset, axis=1)
        before = np.take_along_axis(np.concatenate([np.zeros((k, 1)), c], axis=1), np.clip(col - dur + 1, 0, total), axis=1)
        active = (c - before) > 0
        amp = level0[burst] * rng.uniform(0.3, 3.0, (k, 1)) + rng.uniform(2, 30, (k, 1))
        x[burst] += np.where(active, amp * rng.uniform(0.7, 1.3, (k, total)), 0.0)
    # periodic jobs: a ramp-shaped burst of 1-4 steps every `period` steps at a fixed phase
    cron = rng.random(n) < 0.25
    if cron.any():
        k = int(cron.sum())
        period = rng.choice([6, 12, 12, 12, 24, 36, 48, 72, 144, 288], size=(k, 1))
        width = rng.integers(1, 5, size=(k, 1))
        shape = rng.uniform(0.1, 0.8, (k, 4))
        shape[np.arange(k), rng.integers(0, 4, k) % width[:, 0]] = 1.0
        pos = (col + rng.integers(0, 288, size=(k, 1))) % period
        occ = (col + rng.integers(0, 288, size=(k, 1))) // period
        jitter = rng.lognormal(0.0, rng.uniform(0.05, 0.5, (k, 1)), size=(k, total // 6 + 50))
        jitter *= rng.random((k, total // 6 + 50)) >= rng.uniform(0, 0.2, (k, 1))  # skipped runs
        amp = np.where(rng.random((k, 1)) < 0.3, 100.0 - level0[cron], level0[cron] * rng.uniform(0.5, 3.0, (k, 1)) + rng.uniform(3, 40, (k, 1)))
        bump = np.take_along_axis(shape, np.minimum(pos, 3), axis=1) * (pos < width)
        x[cron] += amp * bump * np.take_along_axis(jitter, np.minimum(occ, jitter.shape[1] - 1), axis=1)
    x = np.clip(x, 0.0, 100.0)
    # near-idle counters report on a coarse grid
    idle = (level0[:, 0] < 3) & (rng.random(n) < 0.7)
    if idle.any():
        q = 10.0 ** rng.uniform(-1.7, -0.4, (int(idle.sum()), 1))
        x[idle] = np.clip(np.round(x[idle] / q) * q, 0.0, 100.0)
    metric = np.array([schema.METRICS.index(m) for m in CLOUD_METRICS])[rng.integers(0, len(CLOUD_METRICS), n)]
    x = x.astype(np.float32)
    profile = np.full(n, schema.PROFILES.index(schema.DEFAULT_PROFILE), dtype=np.int64)
    return x[:, :context], x[:, context:], metric.astype(np.int64), profile, last_ts.astype(np.int64)


def real_group(series: list[Series], token: str) -> list[str]:
    """Names of the real series a group token selects: "cpu" = the CPU-like series (mapped to
    cpu_user_pct), "noncpu" = the others, "nab" / "datacenter" by origin, "all", or one series'
    name (several separated by '+')."""
    cpu = schema.METRICS.index("cpu_user_pct")
    if token == "cpu":
        return [s.name for s in series if s.metric == cpu]
    if token == "noncpu":
        return [s.name for s in series if s.metric != cpu]
    if token == "all":
        return [s.name for s in series]
    if token in ("nab", "datacenter"):
        dc = tuple(Path(f).stem for f in ASSUMED_STARTS)
        return [s.name for s in series if (s.name.split(":")[0] in dc) == (token == "datacenter")]
    names = token.split("+")
    unknown = [x for x in names if x not in {s.name for s in series}]
    if unknown:
        raise ValueError(f"unknown real series or group {unknown} (cpu, noncpu, nab, datacenter, all, or a series name)")
    return names
