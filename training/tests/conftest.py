"""Shared fixtures: a tiny model configuration (hourly steps, 2-day context, 4-step patches) that
runs in seconds, and the shipped model for behaviour tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.model import TemporalFusionTransformer, TFTConfig

TINY = dict(context_length=48, horizon=8, step_seconds=3600, hidden=8, heads=2, dropout=0.0, patch=4)
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "tft-v3"


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


@pytest.fixture(scope="session")
def shipped():
    """(ONNX Runtime session, model.json) of the committed model."""
    from training import export as ex

    if not (SHIPPED / "model.json").exists():
        pytest.skip("no shipped model yet")
    meta, onnx_path = ex.load_model_dir(SHIPPED)
    return ex.ort_session(onnx_path), meta
