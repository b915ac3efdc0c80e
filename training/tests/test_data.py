"""Bad training data is reported (rows, servers) and dropped with a count or refused, never filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import data
from training.tests.synth import make_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame(servers=3, steps=120, seed=0)


def _issue(report, kind_part):
    return [i for i in report.issues if kind_part in i.kind]


def test_clean_frame_passes(frame):
    """A well-formed frame keeps every row and reports nothing."""
    clean, report = data.validate_frame(frame, "clean")
    assert len(clean) == len(frame) and report.issues == []


def test_missing_column_fails(frame):
    """A missing metric column fails with its name."""
    with pytest.raises(data.DataError, match="mem_used_pct"):
        data.validate_frame(frame.drop(columns=["mem_used_pct"]), "x")


def test_non_finite_values_dropped_with_count(frame):
    """NaN and inf rows are dropped and counted per server; policy fail refuses them."""
    bad = frame.copy()
    bad.loc[bad.index[:3], "cpu_user_pct"] = np.nan
    bad.loc[bad.index[3], "load_average"] = np.inf
    clean, report = data.validate_frame(bad, "nan")
    (issue,) = _issue(report, "non-finite")
    assert issue.rows == 4 and len(clean) == len(frame) - 4
    assert set(issue.servers) == set(bad.loc[bad.index[:4], "server"])
    with pytest.raises(data.DataError, match="non-finite"):
        data.validate_frame(bad, "nan", policy="fail")


def test_duplicates_dropped_with_count(frame):
    """Duplicate (server, timestamp) rows are counted; the first is kept."""
    bad = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    clean, report = data.validate_frame(bad, "dup")
    (issue,) = _issue(report, "duplicate")
    assert issue.rows == 5 and len(clean) == len(frame)


def test_out_of_range_values_dropped(frame):
    """Percentages above 100, negative counts and uptime above 365 are out of range."""
    bad = frame.copy()
    bad.loc[bad.index[0], "cpu_idle_pct"] = 140.0
    bad.loc[bad.index[1], "back_close_wait"] = -1.0
    bad.loc[bad.index[2], "uptime_days"] = 400.0
    clean, report = data.validate_frame(bad, "range")
    (issue,) = _issue(report, "out of its physical range")
    assert issue.rows == 3 and len(clean) == len(frame) - 3


def test_unknown_profile_and_off_grid_timestamps(frame):
    """Rows with an unknown profile or a timestamp off the step grid are reported."""
    bad = frame.copy()
    bad.loc[bad.index[0], "profile"] = "mainframe"
    bad.loc[bad.index[1], "timestamp"] = bad.loc[bad.index[1], "timestamp"] + pd.Timedelta(seconds=7)
    _, report = data.validate_frame(bad, "misc")
    assert _issue(report, "unknown profile")[0].rows == 1
    assert _issue(report, "step grid")[0].rows == 1


def test_nothing_left_fails(frame):
    """A file in which every row is bad fails instead of training on nothing."""
    bad = frame.copy()
    bad["mem_used_pct"] = np.nan
    with pytest.raises(data.DataError, match="no usable rows"):
        data.validate_frame(bad, "empty")


def test_gaps_stay_gaps_and_windows_avoid_them(frame, tmp_path):
    """Missing steps are counted, not filled, and no window spans one."""
    gappy = frame[~((frame["server"] == "srv000") & (frame["timestamp"] == frame["timestamp"].min() + pd.Timedelta(minutes=300)))]
    path = tmp_path / "gappy.parquet"
    gappy.to_parquet(path)
    fleet = data.load_fleet(path)
    assert fleet.report.gap_steps == 1
    i = fleet.servers.index("srv000")
    assert np.isnan(fleet.values[i][60]).all() and not fleet.present[i][60]
    origins = data.window_origins(fleet, 24, 8)
    srv0 = origins[origins[:, 0] == i][:, 1]
    assert not ((srv0 <= 60) & (srv0 + 32 > 60)).any()
    assert len(srv0) > 0


def test_missing_file_and_column_in_parquet(frame, tmp_path):
    """Reading checks the file and its columns before loading."""
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_fleet(tmp_path / "nope.parquet")
    path = tmp_path / "cols.parquet"
    frame.drop(columns=["uptime_days"]).to_parquet(path)
    with pytest.raises(data.DataError, match="uptime_days"):
        data.load_fleet(path)
