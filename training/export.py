"""ONNX export, ONNX Runtime parity checks, golden fixtures, model.json and the model card.

A model directory `models/<name>/` holds:

* `model.onnx`   the graph (inputs past_values / last_timestamp / profile, outputs quantiles /
                 variable_weights / attention, dynamic axis `batch`);
* `model.json`   the metadata the Rust side checks at start-up (see `REQUIRED_KEYS`);
* `weights.pt`   the PyTorch state dict, for `--init-from` fine-tuning;
* `MODEL_CARD.md`.

`load_model_dir` refuses a directory whose metadata is missing, incomplete, or disagrees with
the graph, naming what is wrong.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import schema
from .model import TemporalFusionTransformer, TFTConfig, encoder_variable_names

FORMAT_VERSION = 1
INPUT_NAMES = ("past_values", "last_timestamp", "profile")
OUTPUT_NAMES = ("quantiles", "variable_weights", "attention")
REQUIRED_KEYS = (
    "format_version", "name", "version", "created", "inputs", "outputs", "metrics", "profiles",
    "step_seconds", "context_length", "horizon", "quantiles", "normalisation", "calendar_features",
    "encoder_variables", "params", "flops_per_forecast", "architecture", "training", "evaluation",
)


class ModelDirError(RuntimeError):
    """A model directory is missing files or its metadata is inconsistent."""


def io_contract(cfg: TFTConfig) -> tuple[list[dict], list[dict]]:
    t, h, m = cfg.context_length, cfg.horizon, cfg.n_metrics
    v = len(encoder_variable_names())
    inputs = [
        {"name": "past_values", "dtype": "float32", "shape": ["batch", t, m],
         "doc": "raw metric values, metric order as `metrics`, oldest step first; no NaN (carry gaps forward)"},
        {"name": "last_timestamp", "dtype": "int64", "shape": ["batch"],
         "doc": "unix seconds (UTC) of the START of the last context step"},
        {"name": "profile", "dtype": "int64", "shape": ["batch"], "doc": "index into `profiles`"},
    ]
    outputs = [
        {"name": "quantiles", "dtype": "float32", "shape": ["batch", h, m, len(cfg.quantiles)],
         "doc": "forecast for steps last_timestamp + k*step_seconds, k = 1..horizon, raw units; last axis p10/p50/p90, non-decreasing"},
        {"name": "variable_weights", "dtype": "float32", "shape": ["batch", v],
         "doc": "encoder variable-selection weights averaged over the context steps (sum 1), order as `encoder_variables`"},
        {"name": "attention", "dtype": "float32", "shape": ["batch", t],
         "doc": "attention over the context steps averaged over heads and forecast steps (sum 1), oldest first"},
    ]
    return inputs, outputs


def export_onnx(model: TemporalFusionTransformer, path: Path) -> None:
    cfg = model.cfg
    model = model.cpu().eval()
    past = torch.rand(2, cfg.context_length, cfg.n_metrics) * 50
    ts = torch.tensor([1_767_571_200, 1_767_600_000], dtype=torch.int64)
    prof = torch.tensor([0, 1], dtype=torch.int64)
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with torch.no_grad(), warnings.catch_warnings():
        # the LSTM batch-size warning does not apply: h0/c0 are computed from the batch in-graph,
        # and parity is checked at several batch sizes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (past, ts, prof), str(path), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
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


def run_ort(session, past: np.ndarray, ts: np.ndarray, prof: np.ndarray) -> list[np.ndarray]:
    return session.run(list(OUTPUT_NAMES), {
        "past_values": past.astype(np.float32), "last_timestamp": ts.astype(np.int64), "profile": prof.astype(np.int64)})


def run_torch(model: TemporalFusionTransformer, past: np.ndarray, ts: np.ndarray, prof: np.ndarray,
              batch: int = 512) -> list[np.ndarray]:
    model = model.cpu().eval()
    outs: list[list[np.ndarray]] = [[], [], []]
    with torch.no_grad():
        for i in range(0, len(past), batch):
            res = model(torch.from_numpy(past[i : i + batch]), torch.from_numpy(ts[i : i + batch]),
                        torch.from_numpy(prof[i : i + batch]))
            for k in range(3):
                outs[k].append(res[k].numpy())
    return [np.concatenate(o) for o in outs]


def random_windows(n: int, cfg: TFTConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random but plausible windows: per-metric random walks inside the physical ranges."""
    rng = np.random.default_rng(seed)
    t, m = cfg.context_length, cfg.n_metrics
    base = rng.uniform(0, 80, size=(n, 1, m))
    walk = np.cumsum(rng.normal(0, 1.0, size=(n, t, m)), axis=1)
    past = np.clip(base + walk, 0, 100).astype(np.float32)
    ts = (1_767_571_200 + rng.integers(0, 400 * 86400, size=n) // cfg.step_seconds * cfg.step_seconds).astype(np.int64)
    prof = rng.integers(0, cfg.n_profiles, size=n).astype(np.int64)
    return past, ts, prof


def parity(model: TemporalFusionTransformer, session, windows: dict[str, tuple]) -> dict:
    """Max abs difference between PyTorch and ONNX Runtime per window set and output."""
    result = {}
    for label, (past, ts, prof) in windows.items():
        a = run_torch(model, past, ts, prof)
        b = run_ort(session, past, ts, prof)
        result[label] = {name: float(np.max(np.abs(x - y))) for name, x, y in zip(OUTPUT_NAMES, a, b)}
        result[label]["windows"] = int(len(past))
    return result


#: parity tolerance, |torch - ort| <= PARITY_ATOL + PARITY_RTOL * |torch| element-wise: outputs are in
#: raw units (values up to 100 and beyond), where float32 itself resolves only ~6e-8 relative and a
#: 288-step LSTM accumulates tens of ulps; an export bug shows up orders of magnitude above this
PARITY_ATOL, PARITY_RTOL = 1e-4, 1e-5


def parity_worst_ratio(model: TemporalFusionTransformer, session, windows: dict[str, tuple]) -> float:
    """max over all outputs and elements of |torch - ort| / (PARITY_ATOL + PARITY_RTOL * |torch|); <= 1 passes."""
    worst = 0.0
    for past, ts, prof in windows.values():
        for x, y in zip(run_torch(model, past, ts, prof), run_ort(session, past, ts, prof)):
            worst = max(worst, float(np.max(np.abs(x - y) / (PARITY_ATOL + PARITY_RTOL * np.abs(x)))))
    return worst


def _f32_list(a: np.ndarray) -> list:
    # shortest decimal that round-trips to the same float32, so Rust parses the exact input back
    return [float(str(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def write_golden(session, model_dir_rel: str, cases: list[tuple[np.ndarray, int, int]], path: Path,
                 tolerance: float = 1e-4) -> None:
    """Golden fixture for the Rust side: inputs and ONNX Runtime's outputs for a few windows."""
    out_cases = []
    for past, ts, prof in cases:
        past32 = np.asarray(_f32_list(past), dtype=np.float32).reshape(past.shape)
        q, w, a = run_ort(session, past32[None], np.array([ts]), np.array([prof]))
        out_cases.append({
            "profile": int(prof),
            "profile_name": schema.PROFILES[int(prof)],
            "last_timestamp": int(ts),
            "past_values": _f32_list(past32),
            "quantiles": _f32_list(q[0]),
            "variable_weights": _f32_list(w[0]),
            "attention": _f32_list(a[0]),
        })
    doc = {
        "model": model_dir_rel,
        "tolerance": tolerance,
        "layout": {
            "past_values": "[context_length, n_metrics] row-major",
            "quantiles": "[horizon, n_metrics, n_quantiles] row-major",
            "variable_weights": "[n_encoder_variables]",
            "attention": "[context_length]",
        },
        "cases": out_cases,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def behaviour_probes(session, cfg: TFTConfig) -> list[dict]:
    """Forecasts on hand-made odd windows (flat, spiky, shifted, far outside the training ranges),
    recorded in model.json and the card so that behaviour beyond the synthetic test set is visible."""
    levels = np.array([20, 5, 1, 74, 10, 40, 1, 30, 12, 9, 2, 2, 1.5, 12], dtype=np.float32)[: cfg.n_metrics]
    flat = np.tile(levels, (cfg.context_length, 1))
    m = {name: i for i, name in enumerate(schema.METRICS)}
    cases = []

    def add(label, metric, past):
        cases.append((label, metric, past))

    add("flat series", "cpu_user_pct", flat.copy())
    spiky = flat.copy()
    spiky[::20, m["cpu_user_pct"]] = 95.0
    spiky[-1, m["cpu_user_pct"]] = 20.0
    add("spike to 95 every 20 steps", "cpu_user_pct", spiky)
    last = flat.copy()
    last[-1, m["cpu_user_pct"]] = 95.0
    add("single spike to 95 at the last step", "cpu_user_pct", last)
    shift = flat.copy()
    shift[-12:, m["mem_used_pct"]] = 90.0
    add("level shift 40 -> 90 in the last hour", "mem_used_pct", shift)
    big = flat.copy()
    big[:, m["net_in_mb_s"]] *= 1000.0
    add("net_in 1000x the training range (12 GB/s)", "net_in_mb_s", big)
    ramp = flat.copy()
    ramp[:, m["mem_used_pct"]] = np.linspace(40, 80, cfg.context_length)
    add("steady ramp 40 -> 80 over the window", "mem_used_pct", ramp)
    add("all zero (host offline)", "cpu_user_pct", np.zeros_like(flat))
    past = np.stack([c[2] for c in cases]).astype(np.float32)
    ts = np.full(len(cases), 1_770_000_000 // cfg.step_seconds * cfg.step_seconds, dtype=np.int64)
    prof = np.full(len(cases), schema.PROFILES.index("generic"), dtype=np.int64)
    q, _, _ = run_ort(session, past, ts, prof)
    out = []
    for k, (label, metric, p) in enumerate(cases):
        j = m[metric]
        out.append({
            "case": label, "metric": metric, "last_value": round(float(p[-1, j]), 3),
            "first_step_p10_p50_p90": [round(float(v), 3) for v in q[k, 0, j]],
            "last_step_p10_p50_p90": [round(float(v), 3) for v in q[k, -1, j]],
        })
    return out


def normalisation_doc(cfg: TFTConfig) -> dict:
    t = cfg.context_length
    if getattr(cfg, "scale_method", "iqr") == "mad":
        scale_text = (f"scale = max(1.2533*MAD, floor[metric]) over the {t} context steps, where MAD = mean(|x - mean(x)|) "
                      "is the mean absolute deviation around the window mean (no sort; 1.2533 = sqrt(pi/2) makes it the "
                      "standard deviation for Gaussian data)")
        scale_key = "max(1.2533*mad, floor)"
    else:
        scale_text = (f"scale = max(IQR/1.349, std/4, floor[metric]) over the {t} context steps, where "
                      f"IQR = sorted[{3 * (t - 1) // 4}] - sorted[{(t - 1) // 4}] (ascending sort along time) and std is the "
                      "population standard deviation")
        scale_key = "max(iqr/1.349, std/4, floor)"
    return {
        "where": "inside the graph; callers pass raw values and get raw values back",
        "description": (
            "per window and metric: loc = median of the last 3 context steps "
            "(max(min(x[-3], x[-2]), min(max(x[-3], x[-2]), x[-1]))); "
            + scale_text + "; model input z = c*tanh(((x - loc)/scale)/c); "
            "output = clamp(loc + scale*z_out, range_low, range_high) per metric"
        ),
        "location": "median_last_3",
        "scale": scale_key,
        "input_soft_clip": cfg.input_clip,
        "scale_floor": dict(zip(schema.METRICS, cfg.scale_floors)),
        "output_range_low": dict(zip(schema.METRICS, cfg.range_low)),
        "output_range_high": {m: (None if h < 0 else h) for m, h in zip(schema.METRICS, cfg.range_high)},
    }


def calendar_doc(cfg: TFTConfig) -> dict:
    return {
        "description": (
            "derived inside the graph from last_timestamp: for step k (k = -(context_length-1)..0 for the context, "
            "1..horizon for the forecast) t = last_timestamp + k*step_seconds (int64 UTC seconds); "
            "day = floor(t/86400); sec = t - 86400*day; dow = (day + 3) mod 7 (Monday = 0); "
            "hour_sin = sin(2*pi*sec/86400), hour_cos = cos(2*pi*sec/86400), "
            "week_sin = sin(2*pi*(dow + sec/86400)/7), week_cos = cos(2*pi*(dow + sec/86400)/7)"
        ),
        "features": list(schema.CALENDAR_FEATURES),
        "used_in": "encoder (past steps) and decoder (known future steps)",
    }


def build_metadata(model: TemporalFusionTransformer, name: str, version: str, created: str, params: int,
                   flops: int, training: dict, evaluation: dict, parity_report: dict) -> dict:
    cfg = model.cfg
    inputs, outputs = io_contract(cfg)
    return {
        "format_version": FORMAT_VERSION,
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
        "normalisation": normalisation_doc(cfg),
        "calendar_features": calendar_doc(cfg),
        "encoder_variables": encoder_variable_names(),
        "decoder_variables": list(schema.CALENDAR_FEATURES),
        "params": int(params),
        "flops_per_forecast": int(flops),
        "flops_note": "2 x multiply-accumulates of all matrix products for one window (batch 1), LSTMs included; element-wise ops excluded",
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
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelDirError(f"{meta_path}: missing key(s) {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelDirError(f"{meta_path}: format_version {meta['format_version']} unsupported (want {FORMAT_VERSION})")
    problems = []
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


def _encoder_selection_text(arch: dict) -> str:
    if arch.get("encoder_selection", "grn") == "linear":
        return (f"encoder variable selection with a linear embedding per variable (selection weights from a GRN), "
                f"decoder variable selection with per-variable GRNs of hidden {arch['var_hidden']}, "
                f"{arch.get('scale_method', 'iqr')} spread in the normalisation")
    return f"per-variable GRN hidden {arch['var_hidden']}"


def write_model_card(path: Path, meta: dict, tables: dict[str, str]) -> None:
    tr, ev = meta["training"], meta["evaluation"]
    s = ev["summary"]
    size_kb = (path.parent / "model.onnx").stat().st_size / 1024
    io_rows = "\n".join(f"| {x['name']} | {x['dtype']} | {x['shape']} | {x['doc']} |" for x in meta["inputs"])
    out_rows = "\n".join(f"| {x['name']} | {x['dtype']} | {x['shape']} | {x['doc']} |" for x in meta["outputs"])
    targets = (
        f"- mean scaled pinball {s['model_scaled_pinball']:.4f} vs best baseline ({s['best_baseline']}) "
        f"{s['best_baseline_scaled_pinball']:.4f}: {100 * s['improvement_vs_best_baseline']:.1f}% lower "
        f"(target >= 15%: {'met' if s['target_pinball_15pct_below_best_baseline'] else 'NOT met'})\n"
        f"- p10-p90 coverage {100 * s['model_coverage_p10_p90']:.1f}% "
        f"(target 75-85%: {'met' if s['target_coverage_75_85'] else 'NOT met'})"
    )
    parity_lines = "\n".join(
        f"- {label}: " + ", ".join(f"{k} {v:.2e}" for k, v in r.items() if k != "windows") + f" ({r['windows']} windows)"
        for label, r in meta["parity"].items())
    probes = meta.get("behaviour_probes", [])
    probe_table = "| window | metric | last value | p10 / p50 / p90 next step | p10 / p50 / p90 at +{h} steps |\n|---|---|---|---|---|\n".format(
        h=meta["horizon"]) + "\n".join(
        f"| {p['case']} | {p['metric']} | {p['last_value']:g} | "
        + " / ".join(f"{v:.2f}" for v in p["first_step_p10_p50_p90"]) + " | "
        + " / ".join(f"{v:.2f}" for v in p["last_step_p10_p50_p90"]) + " |" for p in probes)
    text = f"""# {meta['name']} — fleetcast Temporal Fusion Transformer

Forecasts every server's next {meta['horizon']} steps of {meta['step_seconds']} s
({meta['horizon'] * meta['step_seconds'] / 3600:g} h) for all {len(meta['metrics'])} metrics at once, as
p10/p50/p90, from the last {meta['context_length']} steps ({meta['context_length'] * meta['step_seconds'] / 3600:g} h),
the server's profile and the calendar. Runs on ONNX Runtime (`model.onnx`, opset {meta['opset']}, dynamic batch);
`model.json` is the machine-readable contract and provenance; `weights.pt` is the PyTorch state dict for
fine-tuning (`python -m training train --init-from models/{meta['name']} --data YOUR.parquet`).

## Size and cost

- parameters: {meta['params']:,}; ONNX file {size_kb:.0f} KiB
- {meta['flops_per_forecast'] / 1e6:.1f} MFLOPs per server forecast ({meta['flops_note']})
- architecture: hidden {meta['architecture']['hidden']}, {meta['architecture']['heads']} attention heads,
  {_encoder_selection_text(meta['architecture'])}, one LSTM layer each for encoder and decoder,
  dropout {meta['architecture']['dropout']}

## Interface (schema of model.json's `inputs` / `outputs`)

| input | dtype | shape | meaning |
|---|---|---|---|
{io_rows}

| output | dtype | shape | meaning |
|---|---|---|---|
{out_rows}

Encoder variables (`variable_weights` order): {', '.join(meta['encoder_variables'])}.
Profiles (`profile` index): {', '.join(f'{i} {p}' for i, p in enumerate(meta['profiles']))}.

model.json keys: `format_version` (int), `name`, `version`, `created` (ISO 8601), `onnx_file`, `opset`,
`inputs`/`outputs` (lists of {{name, dtype, shape, doc}}; shape entries are integers or `"batch"`),
`metrics`, `profiles`, `step_seconds`, `context_length`, `horizon`, `quantiles`, `normalisation`
(description + parameters per metric), `calendar_features` (formula), `encoder_variables`,
`decoder_variables`, `params`, `flops_per_forecast`, `architecture` (to rebuild the network), `training`
(data, seed, commit, command, device, epochs, wall time), `evaluation` (per method: per metric and band
pinball per quantile, mean pinball, p50 MAE, coverage; band and overall summaries; `summary` with the
targets), `parity` (PyTorch vs ONNX Runtime max abs differences).

## Normalisation (inside the graph)

{meta['normalisation']['description']}.

## Calendar features (inside the graph)

{meta['calendar_features']['description']}.

## Training

- data: {tr['data']}
- command: `{tr['command']}`
- device: {tr['device']}; seed {tr['seed']}; git commit {tr['git_commit']}
- {tr['steps']} optimiser steps ({tr['windows_seen']:,} windows, {tr['epochs']} epochs of {tr['windows_per_epoch']:,} random windows),
  batch {tr['batch_size']}, AdamW lr {tr['lr']}, wall time {tr['wall_seconds'] / 60:.1f} min
- final validation pinball (scaled units): {tr['best_val_loss']:.4f}
{('- ' + tr['notes']) if tr.get('notes') else ''}

## Evaluation

Held-out data: {ev['data']}; {ev['windows']} windows (context + horizon fully observed).
Methods: the model; persistence (last value); seasonal naive (same step one day earlier); the original
system's linear-trend heuristic (catalog §4, its own intervals). Persistence and seasonal naive get p10/p90
from their own residual quantiles on training windows (calibrated), so they are fair probabilistic baselines.
"Scaled pinball" divides each metric's pinball loss by that metric's mean per-window robust scale on the
evaluation windows (the same divisor for every method), then averages over metrics, steps and quantiles.

{tables['summary']}

Targets:
{targets}

{ev.get('notes', '')}

### Per metric and horizon band (mean pinball over p10/p50/p90, raw units)

{tables['per_metric']}

## Behaviour on odd windows (generic profile, other metrics flat)

{probe_table}

## ONNX Runtime parity (max abs difference to PyTorch)

{parity_lines}

## Limits

- Trained on synthetic fleets from `fleetcast export` only; real traces may differ. Per-window
  normalisation makes the model scale-free, so values outside the training ranges are handled by
  re-scaling, but shapes of behaviour never seen in training are not.
- A window must be {meta['context_length']} steps; the caller carries gaps forward. Long gaps (flat
  carried values) look like a flat series to the model.
- Outputs are clamped to each metric's physical range; integer metrics (close_wait, uptime) are
  forecast as real numbers.
- Trends: in the generator's data every excursion (incident ramps, heavy load, cascades) reverts,
  so the model expects a steady ramp to flatten and partly revert (see the probe table); it does not
  extrapolate a leak-like trend the way the linear heuristic does. Fine-tune on real history
  (`--init-from`) where such trends matter.
- A single spike at the last step is ignored by the location (median of the last 3 steps); two or
  more high steps are taken as a level shift.
- Calibration (p10-p90 coverage) was measured on the same generator with another seed; on real
  traces it has to be re-checked.
"""
    path.write_text(text)
