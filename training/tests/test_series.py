"""Series, the real traces, the 75/25 split, the window sampler and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from training import schema
from training import series as sr
from training.data import load_fleet
from training.tests.synth import make_frame

REAL = sr.REPO_ROOT / sr.DEFAULT_REAL_TRACES


@pytest.fixture(scope="module")
def real():
    if not REAL.is_dir():
        pytest.skip(f"real traces not present at {REAL}")
    return sr.load_real_traces(REAL)


def test_real_traces_load_on_the_grid(real):
    """All 20 series load with their metric slots; NAB's off-grid timestamps snap to 300-s steps,
    gaps stay NaN, the fraction CPU of google becomes percent."""
    assert len(real) == len(sr.REAL_SERIES) == 20
    by = {s.name: s for s in real}
    cpu = by["cpu_utilization_asg_misconfiguration"]
    assert cpu.metric == schema.METRICS.index("cpu_user_pct") and len(cpu.values) >= 18050
    assert np.isnan(cpu.values).sum() == len(cpu.values) - 18050  # the gaps, and nothing else
    google = by["google2019_instance_usage_300s:avg_cpu"]
    assert 30 < np.nanmedian(google.values) < 60
    assert by["ec2_request_latency_system_failure"].metric == sr.OTHER
    assert {s.metric for s in real} <= set(range(schema.N_SLOTS))


def test_heldout_tail_is_never_in_training_windows(real):
    """The training part is the first 75 % of every series, and no window the sampler draws from
    it reads a held-out step (contexts and targets alike)."""
    parts = [sr.train_part(s) for s in real]
    for s, p in zip(real, parts):
        assert len(p.values) == sr.split_point(s) == int(round(0.75 * len(s.values)))
        assert np.array_equal(p.values, s.values[: len(p.values)], equal_nan=True)
    # mark every series' held-out tail with a sentinel the training part must never show
    marked = []
    for s in real:
        v = s.values.copy()
        v[sr.split_point(s):] = -12345.0
        marked.append(sr.Series(s.name, s.metric, s.profile, s.start, v, s.source))
    pool = sr.SeriesPool([sr.train_part(s) for s in marked], 288, 96, 300)
    past, future, *_ = pool.sample(np.random.default_rng(0), 4000)
    assert not (past == -12345.0).any() and not (future == -12345.0).any()


def test_sampler_windows_have_enough_history_and_targets(tmp_path):
    """Sampled windows have >= 24 observed context steps and observed targets; contexts may
    reach back before the series' start (NaN there); timestamps point at the last context step."""
    path = tmp_path / "f.parquet"
    make_frame(servers=2, steps=400, seed=0).to_parquet(path)
    fleet = load_fleet(path)
    series = sr.fleet_series(fleet, "simulator")
    assert len(series) == 2 * 14
    pool = sr.SeriesPool(series, 288, 96, 300)
    past, future, metric, profile, ts = pool.sample(np.random.default_rng(1), 500)
    assert (np.isfinite(past).sum(axis=1) >= 24).all() and np.isfinite(future[:, :12]).any(axis=1).all()
    assert np.isnan(past).any()  # some windows start before the series does
    assert ((ts - fleet.start[0]) % 300 == 0).all()


def test_augmentation_keeps_ranges_and_enough_history():
    """Augmented rows stay inside their metric's range, keep >= 24 observed context steps, and
    include truncated, holed, rescaled and near-idle rows."""
    rng = np.random.default_rng(2)
    past, future, metric, profile, ts = sr.synthetic_windows(600, 288, 96, 300, rng)
    a_past, a_future = sr.augment(past, future, metric, rng)
    low, high = sr.SLOT_LOW[metric][:, None], sr.SLOT_HIGH[metric][:, None]
    for x in (a_past, a_future):
        ok = np.isfinite(x)
        assert ((x >= low) | ~ok).all() and ((x <= high) | ~ok).all()
    assert (np.isfinite(a_past).sum(axis=1) >= 24).all()
    assert (np.isnan(a_past).sum(axis=1) > 100).sum() > 20  # truncated histories
    bounded = np.isfinite(sr.SLOT_HIGH[metric])
    assert (np.nanmax(a_past[bounded], axis=1) < 2.0).sum() > 10  # near-idle percent series
    assert np.isfinite(a_future).all()


def test_cloud_cpu_windows_cover_the_regimes():
    """The cloud-CPU generator: finite percent series inside 0-100, mostly cpu_user_pct, with
    near-idle quantised rows, last-hour spikes that revert, saturation, and no strong daily cycle
    on most rows."""
    rng = np.random.default_rng(3)
    past, future, metric, profile, ts = sr.cloud_cpu_windows(800, 288, 96, 300, rng)
    full = np.concatenate([past, future], axis=1)
    assert past.shape == (800, 288) and future.shape == (800, 96) and np.isfinite(full).all()
    assert full.min() >= 0.0 and full.max() <= 100.0
    assert (metric == schema.METRICS.index("cpu_user_pct")).mean() > 0.5
    assert set(np.unique(metric)) <= {schema.METRICS.index(m) for m in sr.CLOUD_METRICS}
    idle = full.max(axis=1) < 3.0
    assert idle.sum() > 40
    assert sum(len(np.unique(r)) < 30 for r in full[idle]) > 10  # quantised counters
    assert (full.max(axis=1) >= 99.9).sum() > 20  # saturation / spikes to 100
    med = np.median(past[:, -12:], axis=1)
    spread = np.median(np.abs(past - np.median(past, axis=1, keepdims=True)), axis=1) + 1e-3
    assert ((past[:, -1] - med) / spread > 8).sum() > 3  # a spike at the last step ...
    assert (np.abs(np.median(future[:, :12], axis=1) - med) / spread < 3).mean() > 0.6  # ... and mostly the level goes on
    assert ((ts % 300) == 0).all() and (profile == schema.PROFILES.index("generic")).all()


def test_real_groups(real):
    """--exclude-real / leave-out fold tokens select the documented series."""
    cpu = sr.real_group(real, "cpu")
    assert set(cpu) == {"cpu_utilization_asg_misconfiguration", "grok_asg_anomaly",
                        "alibaba2018_machine_usage_300s:cpu_util_percent", "google2019_instance_usage_300s:avg_cpu"}
    assert set(sr.real_group(real, "noncpu")) == {s.name for s in real} - set(cpu)
    assert len(sr.real_group(real, "nab")) == 9 and len(sr.real_group(real, "datacenter")) == 11
    assert sr.real_group(real, "grok_asg_anomaly+elb_request_count_8c0756") == ["grok_asg_anomaly", "elb_request_count_8c0756"]
    with pytest.raises(ValueError):
        sr.real_group(real, "no_such_series")
