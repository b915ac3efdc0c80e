"""The network itself: contract shapes, masking, normalisation, quantile order, calendar, learning."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import torch

from training import schema
from training.model import (TemporalFusionTransformer, TFTConfig, count_flops, count_params, encoder_variable_names,
                            pinball_loss)

MONDAY = int(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc).timestamp())
CPU = schema.METRICS.index("cpu_user_pct")
NET = schema.METRICS.index("net_in_mb_s")


def _inputs(cfg, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    past = torch.rand(batch, cfg.context_length, generator=g) * 60
    metric = torch.arange(batch, dtype=torch.int64) % cfg.n_metrics
    prof = torch.arange(batch, dtype=torch.int64) % cfg.n_profiles
    ts = torch.tensor([MONDAY + i * cfg.step_seconds for i in range(batch)], dtype=torch.int64)
    return past, metric, prof, ts


def test_output_shapes_and_distributions(tiny_model, tiny_cfg):
    """Outputs have the contract's shapes; selection weights and attention are distributions."""
    q, w, a = tiny_model(*_inputs(tiny_cfg, batch=5))
    assert q.shape == (5, tiny_cfg.horizon, 3)
    assert w.shape == (5, len(encoder_variable_names())) and a.shape == (5, tiny_cfg.context_length)
    assert q.dtype == w.dtype == a.dtype == torch.float32
    assert torch.allclose(w.sum(-1), torch.ones(5), atol=1e-5) and torch.allclose(a.sum(-1), torch.ones(5), atol=1e-5)
    assert (w >= 0).all() and (a >= 0).all()


def test_nan_holes_short_and_empty_rows_give_finite_outputs(tiny_model, tiny_cfg):
    """NaN = not observed: holes, a truncated history, one observed value, an all-NaN row and
    +-inf all give finite outputs, with ordered quantiles inside the physical range."""
    past, metric, prof, ts = _inputs(tiny_cfg, batch=6)
    past[0, ::3] = float("nan")
    past[1, : -tiny_cfg.patch * 2] = float("nan")
    past[2, :-1] = float("nan")
    past[3] = float("nan")
    past[4, 5] = float("inf")
    past[5, 7] = -float("inf")
    metric[:] = CPU
    q, w, a = tiny_model(past, metric, prof, ts)
    for out in (q, w, a):
        assert torch.isfinite(out).all()
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    assert (q >= 0).all() and (q <= 100).all()
    # attention avoids patches with nothing observed (row 1: only the last 2 patches observed)
    assert a[1, : -tiny_cfg.patch * 2].sum() < 1e-3


def test_masked_statistics_ignore_unobserved_steps(tiny_model, tiny_cfg):
    """loc is the last observed value and the scale comes from observed steps only."""
    past = torch.full((1, tiny_cfg.context_length), float("nan"))
    past[0, :10] = torch.linspace(10, 20, 10)
    z, mask, loc, scale, statics = tiny_model.normalise(past, torch.tensor([CPU]))
    assert loc.item() == 20.0 and mask.sum().item() == 10
    vals = torch.linspace(10, 20, 10)
    assert math.isclose(scale.item(), 1.2533 * (vals - vals.mean()).abs().mean().item(), rel_tol=1e-5)
    assert (z[0, 10:] == 0).all() and math.isclose(statics[0, 0].item(), 10 / tiny_cfg.context_length, rel_tol=1e-6)


def test_constant_series_forecasts_constant(tiny_model, tiny_cfg):
    """A constant row (even untrained) forecasts that constant with a tight interval: the scale
    floor is relative and tiny, so z-unit outputs shrink to nothing."""
    past, metric, prof, ts = _inputs(tiny_cfg, batch=3)
    past[0], past[1], past[2] = 42.0, 0.0, 3.0e6
    metric[:] = torch.tensor([CPU, CPU, NET])
    q, _, _ = tiny_model(past, metric, prof, ts)
    for k, level in enumerate((42.0, 0.0, 3.0e6)):
        assert (q[k] - level).abs().max() <= 1e-3 * max(level, 1.0)


def test_near_idle_series_keeps_its_own_scale(tiny_model, tiny_cfg):
    """A 0.1-2 % CPU series is scaled by its own spread, not swamped by a fixed floor, so its
    z-inputs span a normal range and the untrained forecast stays within the series' range."""
    g = torch.Generator().manual_seed(3)
    past = (0.1 + torch.rand(1, tiny_cfg.context_length, generator=g) * 1.9)
    z, _, loc, scale, _ = tiny_model.normalise(past, torch.tensor([CPU]))
    assert 0.2 < scale.item() < 1.0 and z.abs().max() > 1.0
    q, _, _ = tiny_model(past, torch.tensor([CPU]), torch.tensor([0]), torch.tensor([MONDAY]))
    assert (q[0, :, 2] - q[0, :, 0]).max() < 2.0


def test_rows_do_not_depend_on_other_rows(tiny_model, tiny_cfg):
    """Channel independence: a row's outputs are the same alone or in a batch with other rows
    (other metrics of the same server, NaN rows, huge values)."""
    past, metric, prof, ts = _inputs(tiny_cfg, batch=5)
    past[2] = float("nan")
    past[3] *= 1e5
    together = tiny_model(past, metric, prof, ts)
    for k in range(5):
        alone = tiny_model(past[k : k + 1], metric[k : k + 1], prof[k : k + 1], ts[k : k + 1])
        for x, y in zip(together, alone):
            assert torch.allclose(x[k : k + 1], y, atol=1e-5, rtol=1e-5)


def test_quantiles_ordered_and_in_range_on_odd_inputs(tiny_model, tiny_cfg):
    """p10 <= p50 <= p90 and physical ranges hold on flat, spiky and out-of-training-range input."""
    past, metric, prof, ts = _inputs(tiny_cfg, batch=4)
    metric[:] = CPU
    past[1, ::7] = 100.0
    past[2] = past[2] * 1e4
    past[3] = 0.0
    q, _, _ = tiny_model(past, metric, prof, ts)
    assert torch.isfinite(q).all()
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    assert (q >= 0).all() and (q <= 100.0).all()


def test_untrained_model_is_persistence(tiny_model, tiny_cfg):
    """The head starts near zero: an untrained model forecasts about the last observed value."""
    past, metric, prof, ts = _inputs(tiny_cfg, batch=3)
    past[1, -3:] = float("nan")
    q, _, _ = tiny_model(past, metric, prof, ts)
    last = torch.stack([past[0, -1], past[1, -4], past[2, -1]])
    _, _, _, scale, _ = tiny_model.normalise(past, metric)
    assert ((q[:, :, 1] - last[:, None]).abs() <= 0.2 * scale).all()


def test_calendar_features():
    """Calendar features at each patch's last step follow the documented formula."""
    cfg = TFTConfig(context_length=8, horizon=4, step_seconds=3600, patch=2)
    model = TemporalFusionTransformer(cfg)
    cal = model.calendar(torch.tensor([MONDAY + 6 * 3600], dtype=torch.int64))[0]
    # tokens k = -3..2 end at hours 6 + 2k = 0, 2, 4, 6, 8, 10 on Monday
    for row, hour in zip(cal, range(0, 12, 2)):
        assert math.isclose(row[0].item(), math.sin(2 * math.pi * hour / 24), abs_tol=1e-5)
        assert math.isclose(row[1].item(), math.cos(2 * math.pi * hour / 24), abs_tol=1e-5)
        assert math.isclose(row[2].item(), math.sin(2 * math.pi * (hour / 24) / 7), abs_tol=1e-5)


def test_loss_goes_down_on_learnable_signal(tiny_cfg):
    """A few optimiser steps on a daily sine reduce the pinball loss."""
    torch.manual_seed(0)
    model = TemporalFusionTransformer(tiny_cfg)
    t_all = tiny_cfg.context_length + tiny_cfg.horizon
    rng = np.random.default_rng(0)

    def batch(n=32):
        start = rng.integers(0, 24, size=n)
        hours = (start[:, None] + np.arange(t_all)[None, :]) % 24
        y = 50 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.5, size=(n, t_all))
        y = torch.tensor(y, dtype=torch.float32)
        ts = torch.tensor(MONDAY + (start + tiny_cfg.context_length - 1) * 3600, dtype=torch.int64)
        zero = torch.zeros(n, dtype=torch.int64)
        return y[:, : tiny_cfg.context_length], y[:, tiny_cfg.context_length :], zero, zero, ts

    def loss_of(past, fut, metric, prof, ts):
        z, mask, loc, scale, statics = model.normalise(past, metric)
        zq, _, _ = model.forward_normalised(z, mask, statics, metric, prof, ts)
        return pinball_loss(zq, (fut - loc) / scale, tiny_cfg.quantiles)

    fixed = batch(64)
    with torch.no_grad():
        before = loss_of(*fixed).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = loss_of(*batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = loss_of(*fixed).item()
    assert after < 0.7 * before, (before, after)


def test_masked_pinball_ignores_missing_targets():
    """Targets marked unobserved (weight 0) do not count."""
    pred = torch.zeros(2, 3, 3)
    target = torch.tensor([[1.0, 1.0, 1000.0], [1.0, 1.0, 1.0]])
    weight = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    full = pinball_loss(pred, torch.ones(2, 3), (0.1, 0.5, 0.9))
    assert math.isclose(pinball_loss(pred, target, (0.1, 0.5, 0.9), weight).item(), full.item(), rel_tol=1e-6)


def test_size_and_flops_of_default_config():
    """The default network stays within the budget: <= 1.2 MFLOPs per row, small weights."""
    model = TemporalFusionTransformer(TFTConfig(hidden=28))
    assert count_params(model) * 4 < 500_000
    assert count_flops(model) <= 1.2e6


def test_median3_location_ignores_one_spike_and_follows_two(tiny_cfg):
    """loc_method median3: the median of the last three observed values, read through NaN."""
    torch.manual_seed(0)
    model = TemporalFusionTransformer(TFTConfig(**{**tiny_cfg.to_json(), "loc_method": "median3"})).eval()
    past = torch.full((4, tiny_cfg.context_length), 20.0)
    past[0, -1] = 95.0  # one spike: ignored
    past[1, -2:] = 90.0  # two high steps: a level shift, followed
    past[2, -2] = float("nan")  # the spike's neighbours are read through the hole
    past[2, -1] = 95.0
    past[3] = float("nan")  # two observed values: the missing third counts as the last
    past[3, 3], past[3, 9] = 3.0, 7.0
    _, _, loc, _, _ = model.normalise(past, torch.zeros(4, dtype=torch.int64))
    assert loc.ravel().tolist() == [20.0, 90.0, 20.0, 7.0]


def test_median12_location_ignores_short_bursts_and_follows_a_shift(tiny_cfg):
    """loc_method median12: the median of the last twelve observed values, read through NaN; a
    row with fewer than twelve observed values counts the missing ones as the last."""
    torch.manual_seed(0)
    model = TemporalFusionTransformer(TFTConfig(**{**tiny_cfg.to_json(), "loc_method": "median12"})).eval()
    t = tiny_cfg.context_length
    past = torch.full((5, t), 20.0)
    past[0, -1] = 95.0  # one spike: ignored
    past[1, -5:] = 90.0  # a five-step burst: ignored
    past[2, -7:] = 90.0  # seven steps at a new level: followed
    past[3, -12:] = torch.arange(12, dtype=torch.float32)  # 0..11: median 5.5
    past[3, -6:-3] = float("nan")  # read through the hole: 0..5 before, 9..11 after it
    past[3, -20:-12] = torch.tensor([100.0] * 8)
    past[4] = float("nan")  # three observed values: 3, 7, 9 and nine copies of the last (9)
    past[4, 3], past[4, 9], past[4, 20] = 3.0, 7.0, 9.0
    _, _, loc, _, _ = model.normalise(past, torch.zeros(5, dtype=torch.int64))
    vals = np.concatenate([np.arange(6), [100.0] * 3, np.arange(9, 12)])
    assert loc.ravel().tolist() == [20.0, 20.0, 90.0, float(np.median(vals)), 9.0]


def test_untrained_median12_model_is_the_median_of_the_last_hour(tiny_cfg):
    """With the robust location an untrained model forecasts about the median of the last twelve
    observed values (the median_1h baseline): a last-step spike does not move it."""
    torch.manual_seed(0)
    model = TemporalFusionTransformer(TFTConfig(**{**tiny_cfg.to_json(), "loc_method": "median12"})).eval()
    past, metric, prof, ts = _inputs(tiny_cfg, batch=2)
    past[0, -1] = 99.0
    q, _, _ = model(past, metric, prof, ts)
    med = torch.median(past[:, -12:], dim=1).values  # torch's lower median; ours averages the middle two
    _, _, loc, scale, _ = model.normalise(past, metric)
    assert ((q[:, :, 1] - loc).abs() <= 0.2 * scale).all()
    assert ((loc[:, 0] - med).abs() <= past[:, -12:].std(dim=1)).all()
