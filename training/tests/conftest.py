"""Shared fixtures: a tiny model configuration (hourly steps, 2-day context) that runs in seconds."""

from __future__ import annotations

import pytest
import torch

from training.model import TemporalFusionTransformer, TFTConfig

TINY = dict(context_length=48, horizon=8, step_seconds=3600, hidden=8, var_hidden=4, heads=2, dropout=0.0)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg() -> TFTConfig:
    return TFTConfig(**TINY)


@pytest.fixture
def tiny_model(tiny_cfg) -> TemporalFusionTransformer:
    torch.manual_seed(0)
    return TemporalFusionTransformer(tiny_cfg).eval()
