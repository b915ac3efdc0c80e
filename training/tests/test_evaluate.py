"""Baselines and scores on inputs whose answer is known."""

from __future__ import annotations

import numpy as np

from training import evaluate as ev
from training import schema

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
    expected = past[0, -1, j] + 0.1 * np.arange(1, 97)
    assert np.allclose(q[0, :, j, 1], expected, atol=1e-3)
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()


def test_score_perfect_forecast():
    """A perfect, zero-width forecast has zero pinball and full coverage."""
    rng = np.random.default_rng(0)
    fut = rng.uniform(0, 50, size=(5, 8, M)).astype(np.float32)
    q = np.repeat(fut[..., None], 3, axis=-1)
    s = ev.score(q, fut, np.ones(M), step_seconds=3600)
    assert s["scaled_pinball"] == 0 and s["coverage_p10_p90"] == 1.0
    assert set(s["bands"]) == {"0-1h", "1-4h", "4-8h"}


def test_evaluate_all_summary_flags():
    """The summary names the best baseline and states both targets."""
    rng = np.random.default_rng(1)
    past = rng.uniform(10, 50, size=(20, 48, M)).astype(np.float32)
    fut = rng.uniform(10, 50, size=(20, 8, M)).astype(np.float32)
    offsets = {"persistence": ev.calibrate(ev.persistence_point(past, 8), past, fut),
               "seasonal_naive": ev.calibrate(ev.seasonal_point(past, 8, 3600), past, fut)}
    model_q = np.repeat(fut[..., None], 3, axis=-1)
    out = ev.evaluate_all(model_q, past, fut, offsets, 3600)
    assert out["summary"]["best_baseline"] in ("persistence", "seasonal_naive", "heuristic")
    assert out["summary"]["target_pinball_15pct_below_best_baseline"] is True
    assert "heuristic" in ev.summary_table(out)
