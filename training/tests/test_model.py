"""The network itself: output shapes, quantile order, calendar features, and that it learns."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import torch

from training import schema
from training.model import TemporalFusionTransformer, TFTConfig, count_flops, count_params, encoder_variable_names, pinball_loss

MONDAY = int(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc).timestamp())


def _inputs(cfg, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    past = torch.rand(batch, cfg.context_length, cfg.n_metrics, generator=g) * 60
    ts = torch.tensor([MONDAY + i * cfg.step_seconds for i in range(batch)], dtype=torch.int64)
    prof = torch.arange(batch, dtype=torch.int64) % cfg.n_profiles
    return past, ts, prof


def test_output_shapes(tiny_model, tiny_cfg):
    """Every output has the contract's shape for the given batch."""
    past, ts, prof = _inputs(tiny_cfg, batch=5)
    q, w, a = tiny_model(past, ts, prof)
    assert q.shape == (5, tiny_cfg.horizon, tiny_cfg.n_metrics, 3)
    assert w.shape == (5, len(encoder_variable_names()))
    assert a.shape == (5, tiny_cfg.context_length)
    assert q.dtype == w.dtype == a.dtype == torch.float32


def test_weights_and_attention_sum_to_one(tiny_model, tiny_cfg):
    """Variable-selection weights and attention are distributions."""
    q, w, a = tiny_model(*_inputs(tiny_cfg))
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(a.sum(-1), torch.ones(3), atol=1e-5)
    assert (w >= 0).all() and (a >= 0).all()


def test_quantiles_ordered_and_in_range_on_odd_inputs(tiny_model, tiny_cfg):
    """p10 <= p50 <= p90 and physical ranges hold on flat, spiky and out-of-training-range input."""
    past, ts, prof = _inputs(tiny_cfg, batch=4)
    past[0] = 42.0  # flat
    past[1, ::7, :] = 100.0  # spiky
    past[2] = past[2] * 1e4  # far outside the training ranges
    past[3] = 0.0  # all zero
    q, _, _ = tiny_model(past, ts, prof)
    assert torch.isfinite(q).all()
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    assert (q >= 0).all()
    pct = [i for i, m in enumerate(schema.METRICS) if m.endswith("_pct")]
    assert (q[..., pct, :] <= 100.0).all()


def test_flat_window_forecasts_near_its_level(tiny_model, tiny_cfg):
    """A constant window is forecast close to that constant even untrained (scale = floor)."""
    past, ts, prof = _inputs(tiny_cfg, batch=1)
    past[:] = 30.0
    q, _, _ = tiny_model(past, ts, prof)
    assert (q[..., 1] - 30.0).abs().max() < 5.0


def test_calendar_features():
    """Calendar features follow the documented formula (Monday 00:00 UTC -> phase 0)."""
    cfg = TFTConfig(context_length=4, horizon=2, step_seconds=3600)
    model = TemporalFusionTransformer(cfg)
    cal = model.calendar(torch.tensor([MONDAY + 6 * 3600], dtype=torch.int64))[0]
    # steps k = -3..2 -> hours 3..8 on Monday
    for row, hour in zip(cal, range(3, 9)):
        assert math.isclose(row[0].item(), math.sin(2 * math.pi * hour / 24), abs_tol=1e-5)
        assert math.isclose(row[1].item(), math.cos(2 * math.pi * hour / 24), abs_tol=1e-5)
        assert math.isclose(row[2].item(), math.sin(2 * math.pi * (hour / 24) / 7), abs_tol=1e-5)


def test_loss_goes_down_on_learnable_signal(tiny_cfg):
    """A few optimiser steps on a daily sine reduce the pinball loss."""
    torch.manual_seed(0)
    model = TemporalFusionTransformer(tiny_cfg)
    t_all = tiny_cfg.context_length + tiny_cfg.horizon
    rng = np.random.default_rng(0)

    def batch(n=16):
        start = rng.integers(0, 24, size=n)
        hours = (start[:, None] + np.arange(t_all)[None, :]) % 24
        y = 50 + 20 * np.sin(2 * np.pi * hours / 24)[..., None] + rng.normal(0, 0.5, size=(n, t_all, tiny_cfg.n_metrics))
        y = torch.tensor(y, dtype=torch.float32)
        ts = torch.tensor(MONDAY + (start + tiny_cfg.context_length - 1) * 3600, dtype=torch.int64)
        return y[:, : tiny_cfg.context_length], y[:, tiny_cfg.context_length :], ts, torch.zeros(n, dtype=torch.int64)

    def loss_of(past, fut, ts, prof):
        z, loc, scale = model.normalise(past)
        zq, _, _ = model.forward_normalised(z, ts, prof)
        return pinball_loss(zq, (fut - loc) / scale, tiny_cfg.quantiles)

    fixed = batch(64)
    with torch.no_grad():
        before = loss_of(*fixed).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = loss_of(*batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = loss_of(*fixed).item()
    assert after < 0.7 * before, (before, after)


def test_size_and_flops_of_default_config():
    """The default network stays within the budget: < 2 MB of weights, ~30 MFLOPs per forecast."""
    model = TemporalFusionTransformer(TFTConfig())
    assert count_params(model) * 4 < 2_000_000
    assert count_flops(model) < 32e6


def test_single_last_step_spike_does_not_move_the_level(tiny_model, tiny_cfg):
    """loc is the median of the last 3 steps: one spike at the end leaves it at the series level."""
    past, _, _ = _inputs(tiny_cfg, batch=1)
    past[:] = 20.0
    past[0, -1, 0] = 95.0
    _, loc, _ = tiny_model.normalise(past)
    assert loc[0, 0, 0].item() == 20.0
    past[0, -2, 0] = 90.0  # two high steps: a level shift, followed
    _, loc, _ = tiny_model.normalise(past)
    assert loc[0, 0, 0].item() == 90.0


def _fast_model(tiny_cfg):
    """The cheaper tft-v2 layout: linear encoder variable embeddings, sort-free spread."""
    torch.manual_seed(0)
    cfg = TFTConfig(**{**tiny_cfg.to_json(), "encoder_selection": "linear", "scale_method": "mad"})
    return TemporalFusionTransformer(cfg).eval()


def test_fast_layout_keeps_the_contract(tiny_cfg):
    """Linear encoder selection + MAD spread: same shapes, distributions, quantile order and ranges."""
    model = _fast_model(tiny_cfg)
    past, ts, prof = _inputs(tiny_cfg, batch=4)
    past[0] = 42.0
    past[1, ::7, :] = 100.0
    past[2] = past[2] * 1e4
    q, w, a = model(past, ts, prof)
    assert q.shape == (4, tiny_cfg.horizon, tiny_cfg.n_metrics, 3)
    assert w.shape == (4, len(encoder_variable_names())) and a.shape == (4, tiny_cfg.context_length)
    assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-5) and torch.allclose(a.sum(-1), torch.ones(4), atol=1e-5)
    assert torch.isfinite(q).all() and (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    assert (q >= 0).all()


def test_mad_scale_is_floor_on_flat_and_robust_to_one_spike(tiny_cfg):
    """MAD spread: a flat window gets the floor; one spike of 100 scales moves the scale far less than the std would."""
    model = _fast_model(tiny_cfg)
    past = torch.full((1, tiny_cfg.context_length, tiny_cfg.n_metrics), 30.0)
    _, _, scale = model.normalise(past)
    assert torch.allclose(scale[0, 0], model.scale_floor)
    g = torch.Generator().manual_seed(1)
    noisy = 30.0 + torch.randn(1, tiny_cfg.context_length, tiny_cfg.n_metrics, generator=g)
    _, _, base = model.normalise(noisy)
    assert abs(base[0, 0, 0].item() - 1.0) < 0.35  # ~ the standard deviation for Gaussian noise
    noisy[0, 10, 0] += 100.0
    _, _, spiked = model.normalise(noisy)
    std_spiked = noisy[0, :, 0].std(unbiased=False).item()
    assert spiked[0, 0, 0].item() < 0.5 * std_spiked


def test_fast_layout_is_cheaper():
    """The linear encoder selection has fewer parameters and FLOPs than the per-variable GRNs."""
    v1 = TemporalFusionTransformer(TFTConfig())
    v2 = TemporalFusionTransformer(TFTConfig(encoder_selection="linear", scale_method="mad"))
    assert count_params(v2) < count_params(v1) and count_flops(v2) < count_flops(v1)


def test_old_architecture_json_loads_as_v1():
    """A model.json written before the options existed rebuilds the original layout."""
    data = TFTConfig().to_json()
    data.pop("encoder_selection")
    data.pop("scale_method")
    cfg = TFTConfig.from_json(data)
    assert cfg.encoder_selection == "grn" and cfg.scale_method == "iqr"
