"""ONNX export, ONNX Runtime parity, metadata completeness and loud failures at load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training import export as ex
from training import schema
from training.model import count_flops, count_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def exported(tiny_model, tmp_path):
    path = tmp_path / "m" / "model.onnx"
    path.parent.mkdir()
    ex.export_onnx(tiny_model, path)
    return tiny_model, path


def _meta(model, path):
    evaluation = {"summary": {"model_scaled_pinball": 1.0}, "windows": 0}
    training = {"data": "synthetic", "seed": 0, "git_commit": "test", "command": "pytest", "device": "cpu",
                "epochs": 0, "wall_seconds": 0}
    return ex.build_metadata(model, "m", "0.0.0", "2026-01-01T00:00:00+00:00", count_params(model),
                             count_flops(model), training, evaluation, {})


def test_onnx_runtime_matches_pytorch(exported):
    """ONNX Runtime and PyTorch agree within 1e-4 for several batch sizes (dynamic batch)."""
    model, path = exported
    session = ex.ort_session(path)
    for n in (1, 5):
        windows = ex.random_windows(n, model.cfg, seed=n)
        report = ex.parity(model, session, {"random": windows})
        assert max(v for k, v in report["random"].items() if k != "windows") <= 1e-4
    past, ts, prof = ex.random_windows(3, model.cfg, seed=9)
    past[0] = 5.0
    q, w, a = ex.run_ort(session, past, ts, prof)
    assert q.shape == (3, model.cfg.horizon, 14, 3) and w.shape == (3, 18) and a.shape == (3, model.cfg.context_length)
    assert (np.diff(q, axis=-1) >= 0).all()


def test_fast_layout_onnx_parity(tiny_cfg, tmp_path):
    """The linear-selection / MAD layout exports and matches PyTorch under ONNX Runtime."""
    import torch

    from training.model import TemporalFusionTransformer, TFTConfig

    torch.manual_seed(0)
    cfg = TFTConfig(**{**tiny_cfg.to_json(), "encoder_selection": "linear", "scale_method": "mad"})
    model = TemporalFusionTransformer(cfg).eval()
    path = tmp_path / "model.onnx"
    ex.export_onnx(model, path)
    session = ex.ort_session(path)
    report = ex.parity(model, session, {"random": ex.random_windows(4, cfg, seed=2)})
    assert max(v for k, v in report["random"].items() if k != "windows") <= 1e-4
    assert "mad" in ex.normalisation_doc(cfg)["scale"]


def test_metadata_complete_and_consistent(exported):
    """model.json has every required key and matches the graph's inputs and outputs."""
    model, path = exported
    meta = _meta(model, path)
    (path.parent / "model.json").write_text(json.dumps(meta))
    loaded, _ = ex.load_model_dir(path.parent)
    assert all(k in loaded for k in ex.REQUIRED_KEYS)
    assert loaded["metrics"] == list(schema.METRICS) and loaded["profiles"] == list(schema.PROFILES)
    assert [i["name"] for i in loaded["inputs"]] == ["past_values", "last_timestamp", "profile"]
    assert loaded["outputs"][0]["shape"] == ["batch", model.cfg.horizon, 14, 3]


def test_missing_metadata_fails_loudly(exported):
    """A model directory without model.json is refused."""
    _, path = exported
    with pytest.raises(ex.ModelDirError, match="model.json is missing"):
        ex.load_model_dir(path.parent)


@pytest.mark.parametrize("breakage, message", [
    (lambda m: m.pop("quantiles"), "missing key"),
    (lambda m: m.__setitem__("metrics", list(reversed(m["metrics"]))), "metrics differ"),
    (lambda m: m["outputs"][0].__setitem__("shape", ["batch", 7, 14, 3]), "quantiles"),
    (lambda m: m.__setitem__("horizon", 12), "horizon"),
])
def test_inconsistent_metadata_fails_loudly(exported, breakage, message):
    """Metadata that disagrees with the graph or the vocabulary is refused, naming the problem."""
    model, path = exported
    meta = _meta(model, path)
    breakage(meta)
    (path.parent / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ex.ModelDirError, match=message):
        ex.load_model_dir(path.parent)


def test_shipped_golden_fixture_reproduces():
    """The committed golden fixture matches the committed model under ONNX Runtime."""
    golden_path = REPO / "tests" / "fixtures" / "model_golden.json"
    if not golden_path.exists():
        pytest.skip("no golden fixture committed yet")
    golden = json.loads(golden_path.read_text())
    meta, onnx_path = ex.load_model_dir(REPO / golden["model"])
    session = ex.ort_session(onnx_path)
    t, h, m = meta["context_length"], meta["horizon"], len(meta["metrics"])
    assert 3 <= len(golden["cases"]) <= 8
    for case in golden["cases"]:
        past = np.array(case["past_values"], dtype=np.float32).reshape(1, t, m)
        q, w, a = ex.run_ort(session, past, np.array([case["last_timestamp"]]), np.array([case["profile"]]))
        assert np.abs(q.ravel() - np.array(case["quantiles"], dtype=np.float32)).max() <= golden["tolerance"]
        assert np.abs(w.ravel() - np.array(case["variable_weights"], dtype=np.float32)).max() <= golden["tolerance"]
        assert np.abs(a.ravel() - np.array(case["attention"], dtype=np.float32)).max() <= golden["tolerance"]
