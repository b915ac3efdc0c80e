"""Baselines and scores on inputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from training import evaluate as ev
from training import schema
from training.series import Series

M = len(schema.METRICS)


def test_persistence_and_seasonal_naive():
    """Persistence repeats the last value; seasonal naive takes the same step a day earlier."""
    past = np.arange(48, dtype=np.float32)[None, :, None].repeat(M, axis=2)
    assert (ev.persistence_point(past, 8)[0, :, 0] == 47).all()
    sn = ev.seasonal_point(past, 8, step_seconds=3600)  # period 24 steps
    assert list(sn[0, :, 0]) == [24 + k for k in range(8)]


def test_heuristic_extrapolates_a_line():
    """On a straight line the original's heuristic continues the line (inside its clamps)."""
    past = (10 + 0.1 * np.arange(288, dtype=np.float32))[None, :, None].repeat(M, axis=2)
    q = ev.heuristic(past, 96)
    j = schema.METRICS.index("cpu_user_pct")
    assert np.allclose(q[0, :, j, 1], past[0, -1, j] + 0.1 * np.arange(1, 97), atol=1e-3)


def test_score_perfect_forecast():
    """A perfect, zero-width forecast has zero pinball and full coverage."""
    rng = np.random.default_rng(0)
    fut = rng.uniform(0, 50, size=(5, 8, M)).astype(np.float32)
    s = ev.score(np.repeat(fut[..., None], 3, axis=-1), fut, np.ones(M), step_seconds=3600)
    assert s["scaled_pinball"] == 0 and s["coverage_p10_p90"] == 1.0


def test_seasonal_naive_mae_and_real_baselines_by_hand():
    """The divisor is the in-sample MAE of y[t] - y[t-period] over observed pairs; the baselines
    read through NaN: persistence = last observed, seasonal naive falls back to it, the linear
    trend continues a line."""
    y = np.array([1, 2, 3, 5, np.nan, 9], dtype=np.float32)
    assert ev.seasonal_naive_mae(y, 2) == pytest.approx((2 + 3 + 4) / 3)  # pairs (1,3) (2,5) (5,9); (3,nan) skipped
    past = np.array([[0, 1, 2, 3, 4, np.nan]], dtype=np.float32)
    pts = ev.real_points(past, horizon=3, period=4)
    assert list(pts["persistence"][0]) == [4, 4, 4]
    assert list(pts["seasonal_naive"][0]) == [2, 3, 4]  # y[t+k-4]: steps 2, 3, 4 (step 5 is NaN -> persistence)
    assert np.allclose(pts["linear_trend"][0], [5, 6, 7])


def test_band_scores_by_hand():
    """Scaled MAE, pinball and coverage per band on a two-origin example with a missing target."""
    future = np.zeros((2, 12), dtype=np.float32)
    future[1, 0] = np.nan
    q = np.zeros((2, 12, 3), dtype=np.float32)
    q[..., 0], q[..., 1], q[..., 2] = -1.0, 2.0, 3.0
    s = ev.band_scores(q, future, divisor=2.0, step_seconds=3600)  # hourly steps: bands 0-1h (1 step), 1-4h (3), 4-8h (4)
    assert s["0-1h"]["scaled_mae"] == pytest.approx(1.0)  # |0 - 2| / 2, one observed target
    # pinball: p10 at -1 -> 0.1*1; p50 at 2 -> 0.5*2; p90 at 3 -> 0.1*3; mean 1.4/3, / 2
    assert s["1-4h"]["scaled_pinball"] == pytest.approx((0.1 + 1.0 + 0.3) / 3 / 2)
    assert s["4-8h"]["coverage"] == 1.0


def test_evaluate_series_pools_and_beats_nothing_for_a_perfect_model():
    """A model that knows the future scores zero MAE; persistence does not; pooling is a mean over series."""
    t = np.arange(24 * 40)
    rng = np.random.default_rng(0)
    series = [Series(f"s{k}", 0, 6, 0, (50 + 10 * np.sin(2 * np.pi * t / 24 + k) + rng.normal(0, 1, len(t))).astype(np.float32),
                     "real") for k in range(2)]
    truth = {s.name: s.values for s in series}

    def oracle(past, metric, profile, ts):
        # last_ts = start + (origin - 1) * step -> origin
        out = []
        for p, last in zip(past, ts):
            o = int(last // 3600) + 1
            v = series[0].values if np.allclose(p[-24:], series[0].values[o - 24 : o]) else series[1].values
            out.append(np.repeat(v[o : o + 8, None], 3, axis=1))
        return np.stack(out)

    res = ev.evaluate_series(oracle, series, context=48, horizon=8, step_seconds=3600, every=24)
    assert set(res["per_series"]) == set(truth)
    assert res["pooled"]["model"]["0-1h"]["scaled_mae"] == pytest.approx(0.0, abs=1e-6)
    assert res["pooled"]["persistence"]["1-4h"]["scaled_mae"] > 0.1
    t_ = ev.real_targets(res["pooled"])
    assert t_["target_1_4h_and_4_8h_10pct_below_persistence"] and t_["target_0_1h_not_worse"]


def test_median_baselines_read_through_gaps():
    """median_1h / median_2h: the median of the last 12 / 24 OBSERVED values, whatever the gaps."""
    past = np.full((2, 48), 5.0, dtype=np.float32)
    past[0, -3:] = 50.0  # a three-step burst: the median stays at 5
    past[1, -30:] = np.nan
    past[1, -1] = 9.0  # the last 12 observed: 11 fives and a nine
    assert ev.median_of_last_observed(past, 12).tolist() == [5.0, 5.0]
    past[1, -13:-1] = 9.0  # now 12 observed nines are the last twelve... plus one at the end
    pts = ev.real_points(past, 4, 24)
    assert pts["median_1h"].shape == (2, 4) and pts["median_1h"][1, 0] == 9.0 and pts["median_2h"][1, 0] == 9.0
    sim = np.repeat(past[:1, :, None], 3, axis=2)
    assert (ev.median_point(sim, 4, 12) == 5.0).all()
