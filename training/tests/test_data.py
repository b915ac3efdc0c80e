"""Bad training data is reported (rows, servers) and dropped with a count or refused, never filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import data, schema
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


def test_missing_required_column_fails(frame):
    """A missing timestamp/server column, or no metric column at all, fails with its name."""
    with pytest.raises(data.DataError, match="server"):
        data.validate_frame(frame.drop(columns=["server"]), "x")
    with pytest.raises(data.DataError, match="no metric column"):
        data.validate_frame(frame[["timestamp", "server", "profile"]], "x")


def test_partial_metrics_and_no_profile_are_fine(frame):
    """Any subset of the metric columns works (the rest are missing = NaN), and a file without a
    profile column is read as `generic`."""
    part = frame[["timestamp", "server", "cpu_user_pct", "mem_used_pct"]]
    clean, report = data.validate_frame(part, "partial")
    assert len(clean) == len(frame) and report.issues == []
    assert report.metric_columns == ["cpu_user_pct", "mem_used_pct"]
    assert clean["net_in_mb_s"].isna().all() and (clean["profile"] == "generic").all()


def test_nan_is_missing_not_a_reason_to_drop_the_row(frame):
    """NaN in one metric keeps the row (the other metrics are good); inf and out-of-range values
    become missing and are counted; policy fail refuses them; a row with no value at all goes."""
    bad = frame.copy()
    bad.loc[bad.index[:3], "cpu_user_pct"] = np.nan
    bad.loc[bad.index[3], "load_average"] = np.inf
    bad.loc[bad.index[4], "cpu_idle_pct"] = 140.0
    bad.loc[bad.index[5], list(schema.METRICS)] = np.nan
    clean, report = data.validate_frame(bad, "nan")
    assert len(clean) == len(frame) - 1 and report.empty_rows == 1
    assert [i.rows for i in _issue(report, "load_average")] == [1] and [i.rows for i in _issue(report, "cpu_idle_pct")] == [1]
    assert clean["load_average"].isna().sum() == 1 and clean["cpu_user_pct"].isna().sum() == 3
    assert report.missing_values["cpu_user_pct"] == 3
    with pytest.raises(data.DataError, match="physical range"):
        data.validate_frame(bad, "nan", policy="fail")


def test_duplicates_dropped_with_count(frame):
    """Duplicate (server, timestamp) rows are counted; the first is kept."""
    bad = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    clean, report = data.validate_frame(bad, "dup")
    (issue,) = _issue(report, "duplicate")
    assert issue.rows == 5 and len(clean) == len(frame)


def test_out_of_range_values_become_missing(frame):
    """Percentages above 100, negative counts and uptime above 365 are out of range: the value is
    dropped (set missing), the row's other metrics stay."""
    bad = frame.copy()
    bad.loc[bad.index[0], "cpu_idle_pct"] = 140.0
    bad.loc[bad.index[1], "back_close_wait"] = -1.0
    bad.loc[bad.index[2], "uptime_days"] = 400.0
    clean, report = data.validate_frame(bad, "range")
    assert sum(i.rows for i in _issue(report, "physical range")) == 3 and len(clean) == len(frame)
    assert clean[["cpu_idle_pct", "back_close_wait", "uptime_days"]].isna().sum().sum() == 3


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
    bad["profile"] = "mainframe"
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


def test_missing_file_fails(tmp_path):
    """Reading checks that the file exists."""
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_fleet(tmp_path / "nope.parquet")
