"""ONNX export, ONNX Runtime parity checks, golden fixtures, model.json and the model card.

A model directory `models/<name>/` holds:

* `model.onnx`   the graph (inputs past_values / metric / profile / last_timestamp, outputs
                 quantiles / variable_weights / attention, dynamic axis `batch`; one row = one
                 metric of one server);
* `model.json`   the metadata the Rust side checks at start-up (see `REQUIRED_KEYS`);
* `weights.pt`   the PyTorch state dict, for `--init-from` fine-tuning;
* `MODEL_CARD.md`.

`load_model_dir` refuses a directory whose metadata is missing, incomplete, or disagrees with
the graph, naming what is wrong.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import schema
from .model import STATIC_REALS, TemporalFusionTransformer, TFTConfig, encoder_variable_names

FORMAT_VERSION = 2
LAYOUT = "series"
MIN_OBSERVED_STEPS = 24
INPUT_NAMES = ("past_values", "metric", "profile", "last_timestamp")
OUTPUT_NAMES = ("quantiles", "variable_weights", "attention")
REQUIRED_KEYS = (
    "format_version", "layout", "min_observed_steps", "name", "version", "created", "inputs", "outputs", "metrics",
    "profiles", "step_seconds", "context_length", "horizon", "quantiles", "normalisation", "calendar_features",
    "encoder_variables", "params", "flops_per_row", "architecture", "training", "evaluation",
)


class ModelDirError(RuntimeError):
    """A model directory is missing files or its metadata is inconsistent."""


def io_contract(cfg: TFTConfig) -> tuple[list[dict], list[dict]]:
    t, h = cfg.context_length, cfg.horizon
    v = len(encoder_variable_names())
    inputs = [
        {"name": "past_values", "dtype": "float32", "shape": ["batch", t],
         "doc": "one metric's raw values, oldest step first; NaN = not observed (a gap, or before the series "
                f"started). Send a row only when >= {MIN_OBSERVED_STEPS} of the {t} steps are finite; the graph "
                "still returns finite outputs for any row (an all-NaN row forecasts 0)"},
        {"name": "metric", "dtype": "int64", "shape": ["batch"], "doc": "index into `metrics`"},
        {"name": "profile", "dtype": "int64", "shape": ["batch"], "doc": "index into `profiles`"},
        {"name": "last_timestamp", "dtype": "int64", "shape": ["batch"],
         "doc": "unix seconds (UTC) of the START of the last context step"},
    ]
    outputs = [
        {"name": "quantiles", "dtype": "float32", "shape": ["batch", h, len(cfg.quantiles)],
         "doc": "forecast for steps last_timestamp + k*step_seconds, k = 1..horizon, raw units; last axis p10/p50/p90, "
                "non-decreasing, clamped to the metric's physical range"},
        {"name": "variable_weights", "dtype": "float32", "shape": ["batch", v],
         "doc": "encoder variable-selection weights averaged over the context tokens (sum 1), order as `encoder_variables`"},
        {"name": "attention", "dtype": "float32", "shape": ["batch", t],
         "doc": f"attention over the context steps averaged over heads and forecast tokens (sum 1), oldest first; "
                f"each {cfg.patch}-step patch's weight is spread evenly over its steps"},
    ]
    return inputs, outputs


def example_inputs(n: int, cfg: TFTConfig) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    past = torch.rand(n, cfg.context_length, generator=g) * 50
    past[0, :10] = float("nan")
    metric = torch.arange(n, dtype=torch.int64) % cfg.n_metrics
    profile = torch.arange(n, dtype=torch.int64) % cfg.n_profiles
    ts = torch.full((n,), 1_767_571_200, dtype=torch.int64)
    return past, metric, profile, ts


def export_onnx(model: TemporalFusionTransformer, path: Path) -> None:
    cfg = model.cfg
    model = model.cpu().eval()
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with torch.no_grad(), warnings.catch_warnings():
        # the LSTM batch-size warning does not apply: h0/c0 are computed from the batch in-graph,
        # and parity is checked at several batch sizes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example_inputs(2, cfg), str(path), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic, opset_version=17, dynamo=False, do_constant_folding=True,
        )
    import onnx

    # the exporter leaves some output dims symbolic; pin them to the contract
    graph_model = onnx.load(str(path))
    _, outputs = io_contract(cfg)
    shapes = {o["name"]: o["shape"] for o in outputs}
    for value in graph_model.graph.output:
        dims = value.type.tensor_type.shape.dim
        for dim, want in zip(dims, shapes[value.name]):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    graph_model.producer_name = "fleetcast-training"
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_ort(session, past: np.ndarray, metric: np.ndarray, profile: np.ndarray, ts: np.ndarray) -> list[np.ndarray]:
    return session.run(list(OUTPUT_NAMES), {
        "past_values": past.astype(np.float32), "metric": metric.astype(np.int64),
        "profile": profile.astype(np.int64), "last_timestamp": ts.astype(np.int64)})


def run_torch(model: TemporalFusionTransformer, past: np.ndarray, metric: np.ndarray, profile: np.ndarray,
              ts: np.ndarray, batch: int = 2048) -> list[np.ndarray]:
    model = model.cpu().eval()
    outs: list[list[np.ndarray]] = [[], [], []]
    with torch.no_grad():
        for i in range(0, len(past), batch):
            sl = slice(i, i + batch)
            res = model(torch.from_numpy(np.ascontiguousarray(past[sl], dtype=np.float32)),
                        torch.from_numpy(metric[sl].astype(np.int64)), torch.from_numpy(profile[sl].astype(np.int64)),
                        torch.from_numpy(ts[sl].astype(np.int64)))
            for k in range(3):
                outs[k].append(res[k].numpy())
    return [np.concatenate(o) for o in outs]


def random_windows(n: int, cfg: TFTConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Random but plausible rows: random walks at random magnitudes, a third of them with holes
    or a truncated history (NaN), on random metrics and profiles."""
    rng = np.random.default_rng(seed)
    t = cfg.context_length
    base = rng.uniform(0, 80, size=(n, 1))
    walk = np.cumsum(rng.normal(0, 1.0, size=(n, t)), axis=1)
    past = np.clip(base + walk, 0, 100) * 10.0 ** rng.integers(-2, 3, size=(n, 1))
    holes = rng.random((n, t)) < np.where(np.arange(n) % 3 == 0, 0.2, 0.0)[:, None]
    past[holes] = np.nan
    trunc = np.arange(n) % 3 == 1
    past[trunc, : t - rng.integers(24, t, size=1)[0]] = np.nan
    metric = rng.integers(0, cfg.n_metrics, size=n)
    profile = rng.integers(0, cfg.n_profiles, size=n)
    ts = (1_767_571_200 + rng.integers(0, 400 * 86400, size=n) // cfg.step_seconds * cfg.step_seconds).astype(np.int64)
    return past.astype(np.float32), metric, profile, ts


def parity(model: TemporalFusionTransformer, session, windows: dict[str, tuple]) -> dict:
    """Max abs difference between PyTorch and ONNX Runtime per window set and output."""
    result = {}
    for label, rows in windows.items():
        a = run_torch(model, *rows)
        b = run_ort(session, *rows)
        result[label] = {name: float(np.max(np.abs(x - y))) for name, x, y in zip(OUTPUT_NAMES, a, b)}
        result[label]["rows"] = int(len(rows[0]))
    return result


#: parity tolerance, |torch - ort| <= PARITY_ATOL + PARITY_RTOL * magnitude element-wise, where the
#: magnitude of a quantile is the larger of |value| and the row's largest |input| (outputs are
#: loc + scale * z in raw units: a forecast near 0 of a row at 1e4 carries float32 rounding of 1e4);
#: for the weights and the attention it is |value|. An export bug shows up orders of magnitude above this.
PARITY_ATOL, PARITY_RTOL = 1e-4, 1e-5


def parity_worst_ratio(model: TemporalFusionTransformer, session, windows: dict[str, tuple]) -> float:
    """max over all outputs and elements of |torch - ort| / (PARITY_ATOL + PARITY_RTOL * magnitude); <= 1 passes."""
    worst = 0.0
    for rows in windows.values():
        past = np.asarray(rows[0], dtype=np.float64)
        row_mag = np.where(np.isfinite(past), np.abs(past), 0.0).max(axis=1)
        outs = zip(run_torch(model, *rows), run_ort(session, *rows))
        for k, (x, y) in enumerate(outs):
            mag = np.abs(x)
            if k == 0:
                mag = np.maximum(mag, row_mag[:, None, None])
            worst = max(worst, float(np.max(np.abs(x - y) / (PARITY_ATOL + PARITY_RTOL * mag))))
    return worst


def _f32_list(a: np.ndarray) -> list:
    """Shortest decimal that round-trips to the same float32 (so Rust parses the exact input
    back); NaN becomes null."""
    return [None if not np.isfinite(v) else float(str(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def _nested(a: np.ndarray) -> list:
    return [_f32_list(row) for row in np.asarray(a, dtype=np.float32)]


def write_golden(session, model_dir_rel: str, cases: list[dict], path: Path, tolerance: float = 1e-4) -> None:
    """Golden fixture for the Rust side: inputs and ONNX Runtime's outputs for a few rows. Each
    case is {label, past_values [T] (NaN = not observed), metric, profile, last_timestamp}."""
    out_cases = []
    for case in cases:
        past = np.asarray(case["past_values"], dtype=np.float32)
        q, w, a = run_ort(session, past[None], np.array([case["metric"]]), np.array([case["profile"]]),
                          np.array([case["last_timestamp"]]))
        out_cases.append({
            "label": case["label"],
            "metric": int(case["metric"]),
            "metric_name": schema.METRICS[int(case["metric"])],
            "profile": int(case["profile"]),
            "profile_name": schema.PROFILES[int(case["profile"])],
            "last_timestamp": int(case["last_timestamp"]),
            "past_values": _f32_list(past),
            "quantiles": _nested(q[0]),
            "variable_weights": _f32_list(w[0]),
            "attention": _f32_list(a[0]),
        })
    doc = {
        "model": model_dir_rel,
        "tolerance": tolerance,
        "tolerance_note": "|expected - actual| <= tolerance * max(1, |expected|) per element",
        "layout": {
            "past_values": "[context_length] oldest first; null = NaN (not observed)",
            "quantiles": "[horizon][n_quantiles] (p10, p50, p90)",
            "variable_weights": "[n_encoder_variables] in model.json encoder_variables order",
            "attention": "[context_length] oldest first",
        },
        "cases": out_cases,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def behaviour_probes(session, cfg: TFTConfig) -> list[dict]:
    """Forecasts on hand-made odd rows (flat, spiky, shifted, far outside the training ranges,
    near-idle, short or holed histories), recorded in model.json and the card so that behaviour
    beyond the test sets is visible."""
    t = cfg.context_length
    rng = np.random.default_rng(5)
    m = {name: i for i, name in enumerate(schema.METRICS)}
    cases = []
    flat = np.full(t, 20.0)
    cases.append(("flat series", "cpu_user_pct", flat))
    spiky = flat.copy()
    spiky[::20] = 95.0
    spiky[-1] = 20.0
    cases.append(("spike to 95 every 20 steps", "cpu_user_pct", spiky))
    last = flat.copy()
    last[-1] = 95.0
    cases.append(("single spike to 95 at the last step", "cpu_user_pct", last))
    shift = np.full(t, 40.0)
    shift[-12:] = 90.0
    cases.append(("level shift 40 -> 90 in the last hour", "mem_used_pct", shift))
    cases.append(("net_in 12 GB/s, noisy", "net_in_mb_s", 12000.0 + rng.normal(0, 300, t)))
    cases.append(("steady ramp 40 -> 80 over the window", "mem_used_pct", np.linspace(40, 80, t)))
    cases.append(("all zero (host offline)", "cpu_user_pct", np.zeros(t)))
    idle = np.round(np.abs(0.3 + rng.normal(0, 0.15, t)) / 0.066) * 0.066
    cases.append(("near-idle CPU 0.1-0.7 %, quantised", "cpu_user_pct", idle))
    short = np.full(t, np.nan)
    short[-24:] = 50 + rng.normal(0, 3, 24)
    cases.append(("only the last 24 steps observed, 50 +- 3", "cpu_user_pct", short))
    full = np.concatenate([50 + rng.normal(0, 3, t - 24), short[-24:]])
    cases.append(("the same, full 288 steps observed", "cpu_user_pct", full))
    holed = 30 + 10 * np.sin(np.arange(t) * 2 * np.pi / 288) + rng.normal(0, 1, t)
    holed[100:180] = np.nan
    holed[rng.random(t) < 0.1] = np.nan
    holed[-1] = 31.0
    cases.append(("daily sine with a 80-step hole and 10 % missing", "cpu_user_pct", holed))
    cases.append(("all NaN", "cpu_user_pct", np.full(t, np.nan)))
    past = np.stack([c[2] for c in cases]).astype(np.float32)
    metric = np.array([m[c[1]] for c in cases])
    ts = np.full(len(cases), 1_770_000_000 // cfg.step_seconds * cfg.step_seconds, dtype=np.int64)
    prof = np.full(len(cases), schema.PROFILES.index("generic"), dtype=np.int64)
    q, _, _ = run_ort(session, past, metric, prof, ts)
    out = []
    for k, (label, metric_name, p) in enumerate(cases):
        finite = p[np.isfinite(p)]
        out.append({
            "case": label, "metric": metric_name, "last_value": round(float(finite[-1]), 3) if len(finite) else None,
            "first_step_p10_p50_p90": [round(float(v), 3) for v in q[k, 0]],
            "last_step_p10_p50_p90": [round(float(v), 3) for v in q[k, -1]],
        })
    return out


LOC_TEXT = {
    "last": "the last observed value (0 if none)",
    "median3": ("the median of the last three observed values, max(min(a, b), min(max(a, b), c)) with a, b, c the "
                "third-last, second-last and last observed (with fewer than three observed, the missing ones are the "
                "last observed; 0 if none)"),
    "median12": ("the median of the last twelve observed values (one hour; the mean of the 6th and 7th smallest; "
                 "with fewer than twelve observed, the missing ones are the last observed; 0 if none)"),
}
LOC_NAME = {"last": "last_observed", "median3": "median_of_last_3_observed", "median12": "median_of_last_12_observed"}
LOC_SHORT = {"last": "persistence", "median3": "the median of the last three values", "median12": "the median of the last hour"}


def normalisation_doc(cfg: TFTConfig) -> dict:
    t = cfg.context_length
    return {
        "where": "inside the graph; callers pass raw values (NaN = not observed) and get raw values back",
        "description": (
            f"per row, over the observed steps only (observed = not NaN and not +-inf): n = number observed; "
            f"mean = their mean; mad = mean |x - mean|; loc = {LOC_TEXT[cfg.loc_method]}; "
            f"scale = max(1.2533*mad, {cfg.rel_floor:g}*max(|loc|, |mean|) + {cfg.abs_floor:g}) (a tiny relative floor: "
            f"near-idle series keep their own spread, a constant series gets a tiny scale and a constant forecast); "
            f"model input z = c*tanh(((x - loc)/scale)/c) with c = {cfg.input_clip:g} on observed steps and z = 0 "
            f"(= the location) on unobserved ones, plus the observed mask; "
            f"output = clamp(loc + scale*z_out, range_low[metric], range_high[metric]). The network predicts the change "
            f"over {LOC_SHORT[cfg.loc_method]} (its head starts at zero)"
        ),
        "location": LOC_NAME[cfg.loc_method],
        "scale": f"max(1.2533*masked_mad, {cfg.rel_floor:g}*max(|loc|,|mean|) + {cfg.abs_floor:g})",
        "context_steps": t,
        "input_soft_clip": cfg.input_clip,
        "output_range_low": dict(zip(schema.METRICS, cfg.range_low)),
        "output_range_high": {m: (None if h < 0 else h) for m, h in zip(schema.METRICS, cfg.range_high)},
        "static_reals": list(STATIC_REALS),
    }


def calendar_doc(cfg: TFTConfig) -> dict:
    p = cfg.patch
    return {
        "description": (
            f"derived inside the graph from last_timestamp, once per {p}-step patch token, at the patch's last step: "
            f"token k (k = -({cfg.n_past_tokens}-1)..0 for the context, 1..{cfg.n_future_tokens} for the forecast) has "
            f"t = last_timestamp + k*{p}*step_seconds (int64 UTC seconds); day = floor(t/86400); sec = t - 86400*day; "
            "dow = (day + 3) mod 7 (Monday = 0); hour_sin = sin(2*pi*sec/86400), hour_cos = cos(2*pi*sec/86400), "
            "week_sin = sin(2*pi*(dow + sec/86400)/7), week_cos = cos(2*pi*(dow + sec/86400)/7)"
        ),
        "features": list(schema.CALENDAR_FEATURES),
        "used_in": "encoder (past patch tokens) and decoder (known future patch tokens)",
    }


def build_metadata(model: TemporalFusionTransformer, name: str, version: str, created: str, params: int,
                   flops: int, training: dict, evaluation: dict, parity_report: dict) -> dict:
    cfg = model.cfg
    inputs, outputs = io_contract(cfg)
    return {
        "format_version": FORMAT_VERSION,
        "layout": LAYOUT,
        "layout_doc": "one row = one metric of one server (channel-independent); send any subset of a server's metrics",
        "min_observed_steps": MIN_OBSERVED_STEPS,
        "name": name,
        "version": version,
        "created": created,
        "onnx_file": "model.onnx",
        "opset": 17,
        "inputs": inputs,
        "outputs": outputs,
        "metrics": list(schema.METRICS),
        "profiles": list(schema.PROFILES),
        "step_seconds": cfg.step_seconds,
        "context_length": cfg.context_length,
        "horizon": cfg.horizon,
        "quantiles": list(cfg.quantiles),
        "patch_steps": cfg.patch,
        "normalisation": normalisation_doc(cfg),
        "calendar_features": calendar_doc(cfg),
        "encoder_variables": encoder_variable_names(),
        "decoder_variables": list(schema.CALENDAR_FEATURES),
        "static_variables": ["metric", "profile", *STATIC_REALS],
        "params": int(params),
        "flops_per_row": int(flops),
        "flops_note": "2 x multiply-accumulates of all matrix products for one row (batch 1), LSTMs included; element-wise ops excluded",
        "architecture": cfg.to_json(),
        "training": training,
        "evaluation": evaluation,
        "parity": parity_report,
    }


def load_model_dir(path: str | Path) -> tuple[dict, Path]:
    """Read and check `model.json` against the ONNX graph; raise ModelDirError naming the problem."""
    path = Path(path)
    meta_path = path / "model.json"
    if not path.is_dir():
        raise ModelDirError(f"model directory {path} does not exist")
    if not meta_path.is_file():
        raise ModelDirError(f"{path}: model.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{meta_path}: format_version {meta.get('format_version')} unsupported (want {FORMAT_VERSION}, "
                            f"layout {LAYOUT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelDirError(f"{meta_path}: missing key(s) {missing}")
    problems = []
    if meta["layout"] != LAYOUT:
        problems.append(f"layout {meta['layout']!r} is not {LAYOUT!r}")
    if meta["metrics"] != list(schema.METRICS):
        problems.append("metrics differ from the fleetcast metric order")
    if meta["profiles"] != list(schema.PROFILES):
        problems.append("profiles differ from the fleetcast profile vocabulary")
    arch = meta["architecture"]
    for key in ("context_length", "horizon", "step_seconds"):
        if arch.get(key) != meta[key]:
            problems.append(f"{key} {meta[key]} disagrees with architecture.{key} {arch.get(key)}")
    if list(arch.get("quantiles", [])) != list(meta["quantiles"]):
        problems.append("quantiles disagree with architecture.quantiles")
    if meta["encoder_variables"] != encoder_variable_names():
        problems.append("encoder_variables differ from the network's")
    onnx_path = path / meta.get("onnx_file", "model.onnx")
    if not onnx_path.is_file():
        problems.append(f"{onnx_path.name} is missing")
    else:
        import onnx

        graph = onnx.load(str(onnx_path)).graph
        dtypes = {1: "float32", 7: "int64"}

        def sig(values):
            out = {}
            for v in values:
                tt = v.type.tensor_type
                dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
                out[v.name] = (dtypes.get(tt.elem_type, str(tt.elem_type)), dims)
            return out

        for kind, declared, actual in (("input", meta["inputs"], sig(graph.input)), ("output", meta["outputs"], sig(graph.output))):
            for spec in declared:
                got = actual.get(spec["name"])
                if got is None:
                    problems.append(f"graph has no {kind} {spec['name']!r}")
                elif got != (spec["dtype"], list(spec["shape"])):
                    problems.append(f"{kind} {spec['name']!r}: graph {got} vs model.json {(spec['dtype'], spec['shape'])}")
            extra = set(actual) - {s["name"] for s in declared}
            if extra:
                problems.append(f"graph has undeclared {kind}(s) {sorted(extra)}")
    if problems:
        raise ModelDirError(f"{path}: inconsistent model directory: " + "; ".join(problems))
    return meta, onnx_path


def load_torch_model(path: str | Path) -> tuple[TemporalFusionTransformer, dict]:
    """Rebuild the PyTorch model of a model directory (for --init-from)."""
    meta, _ = load_model_dir(path)
    weights = Path(path) / "weights.pt"
    if not weights.is_file():
        raise ModelDirError(f"{path}: weights.pt is missing (needed to fine-tune)")
    model = TemporalFusionTransformer(TFTConfig.from_json(meta["architecture"]))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model, meta


def bench_rows_per_cpu_second(onnx_path: Path, batch: int = 448, seconds: float = 3.0, rounds: int = 3) -> dict:
    """Rows per CPU-second under ONNX Runtime with one intra-op thread (the Rust predictor's
    setting per worker) at `batch` rows (32 servers x 14 metrics), measured with
    time.process_time() over `rounds` rounds of `seconds` CPU-seconds; returns the median and range."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    t = session.get_inputs()[0].shape[1]
    past = (40 + np.cumsum(rng.normal(0, 1, (batch, t)), axis=1)).astype(np.float32)
    past[::5, : t // 2] = np.nan  # some short histories, as in a live fleet
    feed = {"past_values": past, "metric": np.arange(batch, dtype=np.int64) % len(schema.METRICS),
            "profile": np.arange(batch, dtype=np.int64) % len(schema.PROFILES),
            "last_timestamp": np.full(batch, 1_767_571_200, dtype=np.int64)}
    for _ in range(5):
        session.run(None, feed)
    rates = []
    for _ in range(rounds):
        start, n = time.process_time(), 0
        while time.process_time() - start < seconds:
            session.run(None, feed)
            n += 1
        rates.append(n * batch / (time.process_time() - start))
    return {"rows_per_cpu_second": round(float(np.median(rates))), "min": round(min(rates)), "max": round(max(rates)),
            "batch": batch, "intra_op_threads": 1, "onnxruntime": ort.__version__}
