//! The model directory and the ONNX Runtime session that runs it.
//!
//! A model is a folder `models/<name>/` holding `model.onnx` (the graph) and `model.json` (its
//! contract and provenance). [`OnnxModel::load`] reads the metadata, checks everything the
//! predictor relies on against the catalog and the settings (metric order, profile
//! vocabulary, step length, context length, quantiles, tensor names, dtypes and shapes), opens
//! the graph on ONNX Runtime and checks the graph's own inputs and outputs against
//! `model.json`. Every disagreement is a [`Mismatch`] naming what differs, all of them
//! reported at once; a model that loads is one whose forecasts can be trusted to mean what
//! the wire says.
//!
//! ONNX Runtime itself is a shared library loaded at run time (`load-dynamic`): see
//! [`resolve_library`] for where it is looked for, and [`ModelError::LibraryNotFound`] for
//! what an operator is told when it is missing.

use crate::catalog::{Metric, Profile};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `model.json` format this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// The quantiles fleetcast publishes (p10, p50, p90), in the order of the last output axis.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Input names of the graph.
pub const INPUT_PAST_VALUES: &str = "past_values";
/// Unix seconds of the start of the last context step, one per row.
pub const INPUT_LAST_TIMESTAMP: &str = "last_timestamp";
/// Profile index, one per row.
pub const INPUT_PROFILE: &str = "profile";
/// Output: `[batch, horizon, metrics, quantiles]` forecasts in raw units.
pub const OUTPUT_QUANTILES: &str = "quantiles";
/// Output: `[batch, encoder variables]` variable-selection weights.
pub const OUTPUT_VARIABLE_WEIGHTS: &str = "variable_weights";
/// Output: `[batch, context]` attention over the past steps.
pub const OUTPUT_ATTENTION: &str = "attention";

/// The library file name ONNX Runtime ships as on Linux.
const LIBRARY_FILE: &str = "libonnxruntime.so";

/// Why a model (or ONNX Runtime itself) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No ONNX Runtime shared library where fleetcast looked.
    #[error(
        "ONNX Runtime library not found at {looked}: run scripts/bootstrap or set predictor.ort_library / ORT_DYLIB_PATH"
    )]
    LibraryNotFound {
        /// Every place looked, comma-separated.
        looked: String,
    },
    /// The library exists but could not be loaded (wrong architecture, too old, ...).
    #[error("cannot load ONNX Runtime from {path}: {detail}")]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// What the loader said.
        detail: String,
    },
    /// ONNX Runtime refused to set up an environment or a session.
    #[error("onnx runtime refused to set up")]
    Runtime(#[source] ort::Error),
    /// A file of the model directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// `model.json` is not JSON, or lacks a key, or a key has the wrong type.
    #[error("{path} is not a valid model.json")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What the parser said (it names the key).
        #[source]
        source: serde_json::Error,
    },
    /// The graph file is not a model ONNX Runtime can load (corrupt, truncated, wrong opset).
    #[error("{path}: not a loadable ONNX graph")]
    Graph {
        /// The graph file.
        path: PathBuf,
        /// What ONNX Runtime said.
        #[source]
        source: ort::Error,
    },
    /// The model disagrees with the catalog, the settings or its own graph.
    #[error("model {dir} does not fit fleetcast: {}", join(problems))]
    Mismatch {
        /// The model directory.
        dir: PathBuf,
        /// Every disagreement found.
        problems: Vec<Mismatch>,
    },
    /// A run failed inside ONNX Runtime.
    #[error("inference failed")]
    Run(#[source] ort::Error),
    /// A run returned an output of another size than the contract says.
    #[error("output `{name}` has shape {found:?}, expected {expected:?}")]
    OutputShape {
        /// The output.
        name: &'static str,
        /// What the contract says.
        expected: Vec<i64>,
        /// What came back.
        found: Vec<i64>,
    },
}

/// An error with its causes, `outer: inner: innermost`, for replies and logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn join(problems: &[Mismatch]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a tensor is a graph input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// A graph input.
    Input,
    /// A graph output.
    Output,
}

impl fmt::Display for TensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TensorKind::Input => "input",
            TensorKind::Output => "output",
        })
    }
}

/// One way a model disagrees with what fleetcast needs; its `Display` names the thing.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// `format_version` is not one this build reads.
    FormatVersion {
        /// The version in `model.json`.
        found: u32,
    },
    /// `metrics` or `profiles` differ from the catalog's names and order.
    Vocabulary {
        /// `metrics` or `profiles`.
        field: &'static str,
        /// Where they first differ.
        detail: String,
    },
    /// A length in `model.json` differs from the setting the deployment runs with.
    Setting {
        /// The `model.json` key.
        field: &'static str,
        /// Its value.
        model: u64,
        /// The setting's key.
        key: &'static str,
        /// The setting's value.
        setting: u64,
    },
    /// The quantiles are not p10/p50/p90.
    Quantiles {
        /// What `model.json` lists.
        found: Vec<f64>,
    },
    /// A key that must not be empty or zero is.
    Empty {
        /// The key.
        field: &'static str,
    },
    /// `onnx_file` is not a plain file name in the model directory.
    GraphFile {
        /// Its value.
        found: String,
    },
    /// `model.json` declares a tensor otherwise than fleetcast feeds or reads it.
    Contract {
        /// Input or output.
        kind: TensorKind,
        /// Tensor name.
        name: String,
        /// What fleetcast needs, e.g. `float32 [batch, 288, 14]`.
        needed: String,
        /// What `model.json` says, `None` when it does not declare the tensor.
        declared: Option<String>,
    },
    /// `model.json` declares an input fleetcast does not feed.
    UnknownInput {
        /// Tensor name.
        name: String,
    },
    /// The graph's tensor differs from its declaration in `model.json`.
    Graph {
        /// Input or output.
        kind: TensorKind,
        /// Tensor name.
        name: String,
        /// What `model.json` says.
        declared: String,
        /// What the graph has, `None` when the graph lacks the tensor.
        graph: Option<String>,
    },
    /// The graph has a tensor `model.json` does not declare.
    Undeclared {
        /// Input or output.
        kind: TensorKind,
        /// Tensor name.
        name: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::FormatVersion { found } => write!(
                f,
                "format_version: model.json says {found}, this build reads {FORMAT_VERSION}"
            ),
            Mismatch::Vocabulary { field, detail } => write!(f, "{field}: {detail}"),
            Mismatch::Setting {
                field,
                model,
                key,
                setting,
            } => write!(
                f,
                "{field}: model.json says {model}, setting {key} is {setting}"
            ),
            Mismatch::Quantiles { found } => write!(
                f,
                "quantiles: model.json says {found:?}, fleetcast publishes p10/p50/p90 {QUANTILES:?}"
            ),
            Mismatch::Empty { field } => write!(f, "{field}: must not be empty or zero"),
            Mismatch::GraphFile { found } => write!(
                f,
                "onnx_file: `{found}` is not a file name inside the model directory"
            ),
            Mismatch::Contract {
                kind,
                name,
                needed,
                declared: Some(declared),
            } => write!(
                f,
                "{kind} `{name}`: fleetcast needs {needed}, model.json says {declared}"
            ),
            Mismatch::Contract {
                kind,
                name,
                needed,
                declared: None,
            } => write!(
                f,
                "{kind} `{name}`: fleetcast needs {needed}, model.json does not declare it"
            ),
            Mismatch::UnknownInput { name } => write!(
                f,
                "input `{name}`: model.json declares it, fleetcast does not feed it"
            ),
            Mismatch::Graph {
                kind,
                name,
                declared,
                graph: Some(graph),
            } => write!(
                f,
                "{kind} `{name}`: model.json says {declared}, the graph has {graph}"
            ),
            Mismatch::Graph {
                kind,
                name,
                declared,
                graph: None,
            } => write!(
                f,
                "{kind} `{name}`: model.json says {declared}, the graph has no such {kind}"
            ),
            Mismatch::Undeclared { kind, name } => write!(
                f,
                "{kind} `{name}`: the graph has it, model.json does not declare it"
            ),
        }
    }
}

/// One axis of a declared tensor shape: a fixed length or the dynamic batch axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// The dynamic batch axis (`"batch"` in `model.json`).
    Batch,
    /// A fixed length.
    Fixed(i64),
    /// Any other symbolic name (refused: only the batch axis may be dynamic).
    Named(String),
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Batch => serializer.serialize_str("batch"),
            Dim::Fixed(length) => serializer.serialize_i64(*length),
            Dim::Named(name) => serializer.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Length(i64),
            Name(String),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Length(length) => Dim::Fixed(length),
            Raw::Name(name) if name == "batch" => Dim::Batch,
            Raw::Name(name) => Dim::Named(name),
        })
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("batch"),
            Dim::Fixed(length) => write!(f, "{length}"),
            Dim::Named(name) => f.write_str(name),
        }
    }
}

/// A tensor as `model.json` declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// `float32` or `int64`.
    pub dtype: String,
    /// Axes; the first is `batch`.
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    fn new(name: &str, dtype: &str, shape: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            dtype: dtype.into(),
            shape,
        }
    }

    fn shape_text(&self) -> String {
        format!(
            "[{}]",
            self.shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn full_text(&self) -> String {
        format!("{} {}", self.dtype, self.shape_text())
    }
}

/// `model.json`: the model's contract and provenance. Keys the predictor does not use are
/// kept as JSON so the file can grow without breaking older workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Format of this file ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model name (published in every forecast).
    pub name: String,
    /// Model version (published in every forecast).
    pub version: String,
    /// When it was made, ISO 8601.
    pub created: String,
    /// The graph's file name in the model directory.
    #[serde(default = "default_onnx_file")]
    pub onnx_file: String,
    /// Graph inputs.
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs.
    pub outputs: Vec<TensorSpec>,
    /// Metric names in the order of the metric axes.
    pub metrics: Vec<String>,
    /// Profile names; the `profile` input is an index into this list.
    pub profiles: Vec<String>,
    /// Step length in seconds.
    pub step_seconds: u32,
    /// Past steps the model reads.
    pub context_length: u32,
    /// Future steps it forecasts.
    pub horizon: u32,
    /// Quantiles of the last output axis.
    pub quantiles: Vec<f64>,
    /// How values are normalised inside the graph.
    pub normalisation: serde_json::Value,
    /// The calendar features computed inside the graph.
    pub calendar_features: serde_json::Value,
    /// Names of the `variable_weights` entries.
    pub encoder_variables: Vec<String>,
    /// Trainable parameters.
    pub params: u64,
    /// Floating-point operations of one forecast (matrix products), for throughput reports.
    pub flops_per_forecast: f64,
    /// How it was trained.
    pub training: serde_json::Value,
    /// How it scored on held-out data.
    pub evaluation: serde_json::Value,
}

fn default_onnx_file() -> String {
    "model.onnx".into()
}

/// What the deployment expects of a model: the settings it must agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelContract {
    /// `time.step_seconds`.
    pub step_seconds: u32,
    /// `window_keeper.context_steps`.
    pub context_steps: u32,
}

impl ModelMetadata {
    /// Reads and parses `<dir>/model.json` (no checks beyond the keys and their types).
    ///
    /// # Errors
    /// [`ModelError::Read`] for a missing or unreadable file, [`ModelError::Metadata`] for
    /// bad JSON or a missing key.
    pub fn read(dir: &Path) -> Result<ModelMetadata, ModelError> {
        let path = dir.join("model.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ModelError::Metadata { path, source })
    }

    /// Model name and version, e.g. `tft-v2 2.0.0`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// The tensors fleetcast feeds and reads, as this metadata's lengths make them.
    pub fn needed_tensors(&self) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let context = i64::from(self.context_length);
        let metrics = Metric::ALL.len() as i64;
        let inputs = vec![
            TensorSpec::new(
                INPUT_PAST_VALUES,
                "float32",
                vec![Dim::Batch, Dim::Fixed(context), Dim::Fixed(metrics)],
            ),
            TensorSpec::new(INPUT_LAST_TIMESTAMP, "int64", vec![Dim::Batch]),
            TensorSpec::new(INPUT_PROFILE, "int64", vec![Dim::Batch]),
        ];
        let outputs = vec![
            TensorSpec::new(
                OUTPUT_QUANTILES,
                "float32",
                vec![
                    Dim::Batch,
                    Dim::Fixed(i64::from(self.horizon)),
                    Dim::Fixed(metrics),
                    Dim::Fixed(QUANTILES.len() as i64),
                ],
            ),
            TensorSpec::new(
                OUTPUT_VARIABLE_WEIGHTS,
                "float32",
                vec![Dim::Batch, Dim::Fixed(self.encoder_variables.len() as i64)],
            ),
            TensorSpec::new(
                OUTPUT_ATTENTION,
                "float32",
                vec![Dim::Batch, Dim::Fixed(context)],
            ),
        ];
        (inputs, outputs)
    }

    /// Everything in this metadata that disagrees with the catalog, the settings or the
    /// tensors fleetcast feeds and reads; empty when the metadata fits.
    pub fn check(&self, contract: &ModelContract) -> Vec<Mismatch> {
        let mut problems = Vec::new();
        if self.format_version != FORMAT_VERSION {
            problems.push(Mismatch::FormatVersion {
                found: self.format_version,
            });
        }
        let catalog_metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
        if let Some(detail) = vocabulary_difference(&self.metrics, &catalog_metrics) {
            problems.push(Mismatch::Vocabulary {
                field: "metrics",
                detail,
            });
        }
        let catalog_profiles: Vec<&str> =
            Profile::ALL.iter().map(|profile| profile.name()).collect();
        if let Some(detail) = vocabulary_difference(&self.profiles, &catalog_profiles) {
            problems.push(Mismatch::Vocabulary {
                field: "profiles",
                detail,
            });
        }
        if self.step_seconds != contract.step_seconds {
            problems.push(Mismatch::Setting {
                field: "step_seconds",
                model: self.step_seconds.into(),
                key: "time.step_seconds",
                setting: contract.step_seconds.into(),
            });
        }
        if self.context_length != contract.context_steps {
            problems.push(Mismatch::Setting {
                field: "context_length",
                model: self.context_length.into(),
                key: "window_keeper.context_steps",
                setting: contract.context_steps.into(),
            });
        }
        let quantiles_match = self.quantiles.len() == QUANTILES.len()
            && self
                .quantiles
                .iter()
                .zip(QUANTILES)
                .all(|(found, wanted)| (found - wanted).abs() < 1e-9);
        if !quantiles_match {
            problems.push(Mismatch::Quantiles {
                found: self.quantiles.clone(),
            });
        }
        if self.horizon == 0 {
            problems.push(Mismatch::Empty { field: "horizon" });
        }
        if self.encoder_variables.is_empty() {
            problems.push(Mismatch::Empty {
                field: "encoder_variables",
            });
        }
        if self.onnx_file.is_empty()
            || self.onnx_file.contains('/')
            || self.onnx_file.contains('\\')
            || self.onnx_file.starts_with('.')
        {
            problems.push(Mismatch::GraphFile {
                found: self.onnx_file.clone(),
            });
        }
        let (needed_inputs, needed_outputs) = self.needed_tensors();
        for (kind, needed, declared) in [
            (TensorKind::Input, &needed_inputs, &self.inputs),
            (TensorKind::Output, &needed_outputs, &self.outputs),
        ] {
            for need in needed {
                let found = declared.iter().find(|spec| spec.name == need.name);
                if found != Some(need) {
                    problems.push(Mismatch::Contract {
                        kind,
                        name: need.name.clone(),
                        needed: need.full_text(),
                        declared: found.map(TensorSpec::full_text),
                    });
                }
            }
        }
        for spec in &self.inputs {
            if !needed_inputs.iter().any(|need| need.name == spec.name) {
                problems.push(Mismatch::UnknownInput {
                    name: spec.name.clone(),
                });
            }
        }
        problems
    }
}

/// Where two name lists first differ, in words; `None` when equal.
fn vocabulary_difference(model: &[String], catalog: &[&str]) -> Option<String> {
    if let Some(position) = model
        .iter()
        .zip(catalog)
        .position(|(found, wanted)| found != wanted)
    {
        return Some(format!(
            "position {position} is `{}` in model.json, `{}` in fleetcast's catalog",
            model[position], catalog[position]
        ));
    }
    (model.len() != catalog.len()).then(|| {
        format!(
            "model.json lists {} names, fleetcast's catalog has {}",
            model.len(),
            catalog.len()
        )
    })
}

/// A tensor as the graph itself describes it: name, dtype name and axes (`-1` = dynamic,
/// with its symbol when the graph names one).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphTensor {
    /// Tensor name.
    pub name: String,
    /// `float32`, `int64`, or another ONNX element type in lower case.
    pub dtype: String,
    /// Axis lengths, `-1` for a dynamic one.
    pub dims: Vec<i64>,
    /// Axis symbols (empty strings where the graph gives none).
    pub symbols: Vec<String>,
}

impl GraphTensor {
    fn from_outlet(outlet: &ort::value::Outlet) -> GraphTensor {
        match outlet.dtype() {
            ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } => GraphTensor {
                name: outlet.name().to_string(),
                dtype: dtype_name(*ty),
                dims: shape.to_vec(),
                symbols: dimension_symbols.to_vec(),
            },
            other => GraphTensor {
                name: outlet.name().to_string(),
                dtype: format!("{other:?}"),
                dims: Vec::new(),
                symbols: Vec::new(),
            },
        }
    }

    fn shape_text(&self) -> String {
        let axes: Vec<String> = self
            .dims
            .iter()
            .enumerate()
            .map(|(axis, &length)| {
                let symbol = self.symbols.get(axis).map_or("", String::as_str);
                match (length, symbol) {
                    (length, _) if length >= 0 => length.to_string(),
                    (_, "") => "?".to_string(),
                    (_, symbol) => symbol.to_string(),
                }
            })
            .collect();
        format!("[{}]", axes.join(", "))
    }

    /// Whether this graph tensor is what `spec` declares: same dtype, same rank, the batch
    /// axis dynamic, every other axis the declared length.
    fn matches(&self, spec: &TensorSpec) -> bool {
        self.dtype == spec.dtype
            && self.dims.len() == spec.shape.len()
            && self
                .dims
                .iter()
                .zip(&spec.shape)
                .all(|(&length, dim)| match dim {
                    Dim::Batch => length < 0,
                    Dim::Fixed(fixed) => length == *fixed,
                    Dim::Named(_) => false,
                })
    }
}

fn dtype_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Int64 => "int64".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Every disagreement between the graph's tensors and `model.json`'s declarations.
pub fn check_graph(
    metadata: &ModelMetadata,
    graph_inputs: &[GraphTensor],
    graph_outputs: &[GraphTensor],
) -> Vec<Mismatch> {
    let mut problems = Vec::new();
    for (kind, declared, graph) in [
        (TensorKind::Input, &metadata.inputs, graph_inputs),
        (TensorKind::Output, &metadata.outputs, graph_outputs),
    ] {
        for spec in declared {
            let found = graph.iter().find(|tensor| tensor.name == spec.name);
            match found {
                Some(tensor) if tensor.matches(spec) => {}
                Some(tensor) => {
                    let (declared, graph) = if tensor.dtype == spec.dtype {
                        (spec.shape_text(), tensor.shape_text())
                    } else {
                        (
                            spec.full_text(),
                            format!("{} {}", tensor.dtype, tensor.shape_text()),
                        )
                    };
                    problems.push(Mismatch::Graph {
                        kind,
                        name: spec.name.clone(),
                        declared,
                        graph: Some(graph),
                    });
                }
                None => problems.push(Mismatch::Graph {
                    kind,
                    name: spec.name.clone(),
                    declared: spec.full_text(),
                    graph: None,
                }),
            }
        }
        for tensor in graph {
            // An undeclared output is harmless (never read); an undeclared input cannot be fed.
            if kind == TensorKind::Input && !declared.iter().any(|spec| spec.name == tensor.name) {
                problems.push(Mismatch::Undeclared {
                    kind,
                    name: tensor.name.clone(),
                });
            }
        }
    }
    problems
}

/// Finds `libonnxruntime.so`: `configured` (the `predictor.ort_library` setting) when
/// non-empty, else `ORT_DYLIB_PATH`, else `.tools/lib/libonnxruntime.so` under the current
/// directory, else under the crate's directory (where `scripts/bootstrap` puts it).
///
/// # Errors
/// [`ModelError::LibraryNotFound`] naming every place looked.
pub fn resolve_library(configured: &str) -> Result<PathBuf, ModelError> {
    let explicit = if configured.is_empty() {
        std::env::var("ORT_DYLIB_PATH")
            .ok()
            .filter(|path| !path.is_empty())
    } else {
        Some(configured.to_string())
    };
    let candidates: Vec<PathBuf> = match explicit {
        Some(path) => vec![PathBuf::from(path)],
        None => {
            let mut candidates = vec![Path::new(".tools/lib").join(LIBRARY_FILE)];
            if let Some(root) = option_env!("CARGO_MANIFEST_DIR") {
                candidates.push(Path::new(root).join(".tools/lib").join(LIBRARY_FILE));
            }
            candidates
        }
    };
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| ModelError::LibraryNotFound {
            looked: candidates
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The process's one ONNX Runtime environment (ONNX Runtime allows one per process).
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` (once per process; later calls reuse the first) and
/// returns the process's environment.
///
/// # Errors
/// [`ModelError::LibraryLoad`] when the library does not load, [`ModelError::Runtime`] when
/// the environment cannot be created.
pub fn environment(library: &Path) -> Result<Environment, ModelError> {
    let mut slot = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    if !library.is_file() {
        return Err(ModelError::LibraryNotFound {
            looked: library.display().to_string(),
        });
    }
    let environment = ort::init_from(library)
        .map_err(|error| ModelError::LibraryLoad {
            path: library.to_path_buf(),
            detail: error.to_string(),
        })?
        .with_name("fleetcast")
        .with_telemetry(false)
        .build()
        .map_err(ModelError::Runtime)?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// How to open a model: where ONNX Runtime is, how many threads it may use, and what the
/// deployment expects of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// `libonnxruntime.so` (see [`resolve_library`]).
    pub library: PathBuf,
    /// Threads inside one operator.
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin waiting for work (lower latency on an idle
    /// machine, wasted cores on a shared one; off by default).
    pub intra_spinning: bool,
    /// The settings the model must agree with.
    pub contract: ModelContract,
}

impl ModelOptions {
    /// The options the settings give.
    ///
    /// # Errors
    /// [`ModelError::LibraryNotFound`] when no ONNX Runtime library is found.
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<ModelOptions, ModelError> {
        Ok(ModelOptions {
            library: resolve_library(&settings.predictor.ort_library)?,
            intra_threads: settings.predictor.intra_threads,
            intra_spinning: false,
            contract: ModelContract {
                step_seconds: settings.time.step_seconds,
                context_steps: settings.window_keeper.context_steps,
            },
        })
    }
}

/// Inputs of one run: `rows` windows stacked in the graph's layout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelBatch {
    /// `[rows, context, 14]`, step-major, oldest first.
    pub past_values: Vec<f32>,
    /// `[rows]` unix seconds of the start of each window's last step.
    pub last_timestamp: Vec<i64>,
    /// `[rows]` profile indices.
    pub profile: Vec<i64>,
}

impl ModelBatch {
    /// Adds one window (`context × 14` values).
    pub fn push(&mut self, values: &[f32], last_timestamp: i64, profile: Profile) {
        self.past_values.extend_from_slice(values);
        self.last_timestamp.push(last_timestamp);
        self.profile.push(profile.index() as i64);
    }

    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.last_timestamp.len()
    }

    /// Whether the batch holds no window.
    pub fn is_empty(&self) -> bool {
        self.last_timestamp.is_empty()
    }
}

/// Outputs of one run, row-major in the graph's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutputs {
    /// Rows (windows).
    pub rows: usize,
    /// Forecast steps.
    pub horizon: usize,
    /// Encoder variables.
    pub variables: usize,
    /// Context steps.
    pub context: usize,
    /// `[rows, horizon, 14, 3]`.
    pub quantiles: Vec<f32>,
    /// `[rows, variables]`.
    pub variable_weights: Vec<f32>,
    /// `[rows, context]`.
    pub attention: Vec<f32>,
}

impl ModelOutputs {
    /// One row's quantiles, `[horizon, 14, 3]`.
    pub fn quantiles_of(&self, row: usize) -> &[f32] {
        let size = self.horizon * Metric::ALL.len() * QUANTILES.len();
        &self.quantiles[row * size..(row + 1) * size]
    }

    /// One row's variable weights, `[variables]`.
    pub fn weights_of(&self, row: usize) -> &[f32] {
        &self.variable_weights[row * self.variables..(row + 1) * self.variables]
    }

    /// One row's attention over the past, `[context]`, oldest first.
    pub fn attention_of(&self, row: usize) -> &[f32] {
        &self.attention[row * self.context..(row + 1) * self.context]
    }
}

/// A checked model on an ONNX Runtime session.
#[derive(Debug)]
pub struct OnnxModel {
    session: Session,
    metadata: ModelMetadata,
    dir: PathBuf,
}

impl OnnxModel {
    /// Loads `dir`, checks `model.json` against the catalog and `options.contract`, opens the
    /// graph (all graph optimisations, `options.intra_threads` threads, memory patterns for
    /// the repeated batch shapes) and checks the graph
    /// against `model.json`. Blocking: call it off the async runtime.
    ///
    /// # Errors
    /// [`ModelError::LibraryNotFound`] / [`ModelError::LibraryLoad`] without a usable ONNX
    /// Runtime, [`ModelError::Read`] / [`ModelError::Metadata`] for a missing or malformed
    /// `model.json`, [`ModelError::Graph`] for a graph ONNX Runtime cannot load, and
    /// [`ModelError::Mismatch`] listing every disagreement.
    pub fn load(dir: &Path, options: &ModelOptions) -> Result<OnnxModel, ModelError> {
        let environment = environment(&options.library)?;
        let metadata = ModelMetadata::read(dir)?;
        let problems = metadata.check(&options.contract);
        if !problems.is_empty() {
            return Err(ModelError::Mismatch {
                dir: dir.to_path_buf(),
                problems,
            });
        }
        let graph_path = dir.join(&metadata.onnx_file);
        if !graph_path.is_file() {
            return Err(ModelError::Read {
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                path: graph_path,
            });
        }
        let session = Session::builder(&environment)
            .and_then(|builder| {
                Ok(builder
                    .with_optimization_level(GraphOptimizationLevel::All)?
                    .with_intra_threads(options.intra_threads)?
                    .with_intra_op_spinning(options.intra_spinning)?
                    .with_inter_threads(1)?
                    .with_memory_pattern(true)?)
            })
            .map_err(ModelError::Runtime)?
            .commit_from_file(&graph_path)
            .map_err(|source| ModelError::Graph {
                path: graph_path.clone(),
                source,
            })?;
        let graph_inputs: Vec<GraphTensor> = session
            .inputs()
            .iter()
            .map(GraphTensor::from_outlet)
            .collect();
        let graph_outputs: Vec<GraphTensor> = session
            .outputs()
            .iter()
            .map(GraphTensor::from_outlet)
            .collect();
        let problems = check_graph(&metadata, &graph_inputs, &graph_outputs);
        if !problems.is_empty() {
            return Err(ModelError::Mismatch {
                dir: dir.to_path_buf(),
                problems,
            });
        }
        Ok(OnnxModel {
            session,
            metadata,
            dir: dir.to_path_buf(),
        })
    }

    /// The checked metadata.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs one batch. Blocking (CPU-bound): call it off the async runtime. Memory grows
    /// with the batch, so callers keep batches to a few dozen windows.
    ///
    /// # Errors
    /// [`ModelError::Run`] when ONNX Runtime fails, [`ModelError::OutputShape`] when an
    /// output is not the size the contract says.
    ///
    /// # Panics
    /// When `batch.past_values` is not `rows × context × 14` long (a caller bug).
    pub fn run(&mut self, batch: &ModelBatch) -> Result<ModelOutputs, ModelError> {
        let rows = batch.len();
        let context = self.metadata.context_length as usize;
        let metrics = Metric::ALL.len();
        assert_eq!(batch.past_values.len(), rows * context * metrics);
        let horizon = self.metadata.horizon as usize;
        let variables = self.metadata.encoder_variables.len();
        let past_values =
            TensorRef::from_array_view(([rows, context, metrics], batch.past_values.as_slice()))
                .map_err(ModelError::Run)?;
        let last_timestamp = TensorRef::from_array_view(([rows], batch.last_timestamp.as_slice()))
            .map_err(ModelError::Run)?;
        let profile = TensorRef::from_array_view(([rows], batch.profile.as_slice()))
            .map_err(ModelError::Run)?;
        let outputs = self
            .session
            .run(ort::inputs![
                INPUT_PAST_VALUES => past_values,
                INPUT_LAST_TIMESTAMP => last_timestamp,
                INPUT_PROFILE => profile,
            ])
            .map_err(ModelError::Run)?;
        let extract = |name: &'static str, expected: Vec<i64>| -> Result<Vec<f32>, ModelError> {
            let value = outputs.get(name).ok_or_else(|| ModelError::OutputShape {
                name,
                expected: expected.clone(),
                found: Vec::new(),
            })?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(ModelError::Run)?;
            if **shape != *expected {
                return Err(ModelError::OutputShape {
                    name,
                    expected,
                    found: shape.to_vec(),
                });
            }
            Ok(data.to_vec())
        };
        let (rows_i, horizon_i, context_i) = (rows as i64, horizon as i64, context as i64);
        let quantiles = extract(
            OUTPUT_QUANTILES,
            vec![rows_i, horizon_i, metrics as i64, QUANTILES.len() as i64],
        )?;
        let variable_weights = extract(OUTPUT_VARIABLE_WEIGHTS, vec![rows_i, variables as i64])?;
        let attention = extract(OUTPUT_ATTENTION, vec![rows_i, context_i])?;
        Ok(ModelOutputs {
            rows,
            horizon,
            variables,
            context,
            quantiles,
            variable_weights,
            attention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `model.json` as the training pipeline writes it, for 288 × 14 → 96 × 14 × 3.
    pub(crate) fn metadata_json() -> serde_json::Value {
        let metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
        let profiles: Vec<&str> = Profile::ALL.iter().map(|profile| profile.name()).collect();
        let mut variables: Vec<String> = metrics.iter().map(ToString::to_string).collect();
        variables.extend(["hour_sin", "hour_cos", "dow_sin", "dow_cos"].map(String::from));
        serde_json::json!({
            "format_version": 1,
            "name": "tft-test",
            "version": "0.1.0",
            "created": "2026-11-27T00:00:00Z",
            "onnx_file": "model.onnx",
            "opset": 17,
            "inputs": [
                {"name": "past_values", "dtype": "float32", "shape": ["batch", 288, 14], "doc": "x"},
                {"name": "last_timestamp", "dtype": "int64", "shape": ["batch"]},
                {"name": "profile", "dtype": "int64", "shape": ["batch"]}
            ],
            "outputs": [
                {"name": "quantiles", "dtype": "float32", "shape": ["batch", 96, 14, 3]},
                {"name": "variable_weights", "dtype": "float32", "shape": ["batch", 18]},
                {"name": "attention", "dtype": "float32", "shape": ["batch", 288]}
            ],
            "metrics": metrics,
            "profiles": profiles,
            "step_seconds": 300,
            "context_length": 288,
            "horizon": 96,
            "quantiles": [0.1, 0.5, 0.9],
            "normalisation": {"description": "per window"},
            "calendar_features": {"description": "hour and weekday"},
            "encoder_variables": variables,
            "decoder_variables": ["hour_sin", "hour_cos", "dow_sin", "dow_cos"],
            "params": 12345,
            "flops_per_forecast": 25600000,
            "training": {},
            "evaluation": {}
        })
    }

    const CONTRACT: ModelContract = ModelContract {
        step_seconds: 300,
        context_steps: 288,
    };

    fn parse(json: serde_json::Value) -> ModelMetadata {
        serde_json::from_value(json).expect("metadata parses")
    }

    fn messages(problems: &[Mismatch]) -> String {
        join(problems)
    }

    /// The graph's description of the tensors a correct export has.
    fn graph_of(metadata: &ModelMetadata) -> (Vec<GraphTensor>, Vec<GraphTensor>) {
        let convert = |specs: &[TensorSpec]| -> Vec<GraphTensor> {
            specs
                .iter()
                .map(|spec| GraphTensor {
                    name: spec.name.clone(),
                    dtype: spec.dtype.clone(),
                    dims: spec
                        .shape
                        .iter()
                        .map(|dim| match dim {
                            Dim::Fixed(length) => *length,
                            _ => -1,
                        })
                        .collect(),
                    symbols: spec
                        .shape
                        .iter()
                        .map(|dim| match dim {
                            Dim::Batch => "batch".to_string(),
                            _ => String::new(),
                        })
                        .collect(),
                })
                .collect()
        };
        (convert(&metadata.inputs), convert(&metadata.outputs))
    }

    /// The training pipeline's metadata fits the default settings and its own graph.
    #[test]
    fn good_metadata_fits() {
        let metadata = parse(metadata_json());
        assert_eq!(metadata.check(&CONTRACT), vec![]);
        let (inputs, outputs) = graph_of(&metadata);
        assert_eq!(check_graph(&metadata, &inputs, &outputs), vec![]);
        assert_eq!(metadata.label(), "tft-test 0.1.0");
        assert_eq!(metadata.flops_per_forecast, 25.6e6);
    }

    /// A missing key is refused by name.
    #[test]
    fn missing_key_is_named() {
        let mut json = metadata_json();
        json.as_object_mut().unwrap().remove("horizon");
        let error = serde_json::from_value::<ModelMetadata>(json).unwrap_err();
        assert!(error.to_string().contains("horizon"), "{error}");
    }

    /// Swapped metrics, another profile list, other step and context lengths and other
    /// quantiles are each named.
    #[test]
    fn vocabulary_and_settings_mismatches_are_named() {
        let mut json = metadata_json();
        json["metrics"].as_array_mut().unwrap().swap(3, 5);
        json["profiles"].as_array_mut().unwrap().pop();
        json["step_seconds"] = 600.into();
        json["quantiles"] = serde_json::json!([0.05, 0.5, 0.95]);
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(
            text.contains("metrics: position 3 is `mem_used_pct` in model.json, `cpu_idle_pct`"),
            "{text}"
        );
        assert!(
            text.contains("profiles: model.json lists 6 names, fleetcast's catalog has 7"),
            "{text}"
        );
        assert!(
            text.contains("step_seconds: model.json says 600, setting time.step_seconds is 300"),
            "{text}"
        );
        assert!(text.contains("quantiles: model.json says [0.05"), "{text}");
        let other = ModelContract {
            step_seconds: 300,
            context_steps: 144,
        };
        let text = messages(&parse(metadata_json()).check(&other));
        assert!(
            text.contains(
                "context_length: model.json says 288, setting window_keeper.context_steps is 144"
            ),
            "{text}"
        );
    }

    /// A declared tensor that differs from what fleetcast feeds is named with both shapes.
    #[test]
    fn declared_tensor_mismatch_is_named() {
        let mut json = metadata_json();
        json["inputs"][0]["shape"] = serde_json::json!(["batch", 288, 13]);
        json["outputs"][1]["shape"] = serde_json::json!(["batch", 17]);
        json["inputs"][2]["dtype"] = "int32".into();
        json["outputs"].as_array_mut().unwrap().remove(2);
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(
            text.contains("input `past_values`: fleetcast needs float32 [batch, 288, 14], model.json says float32 [batch, 288, 13]"),
            "{text}"
        );
        assert!(
            text.contains("output `variable_weights`: fleetcast needs float32 [batch, 18]"),
            "{text}"
        );
        assert!(
            text.contains(
                "input `profile`: fleetcast needs int64 [batch], model.json says int32 [batch]"
            ),
            "{text}"
        );
        assert!(
            text.contains("output `attention`: fleetcast needs float32 [batch, 288], model.json does not declare it"),
            "{text}"
        );
    }

    /// A graph whose tensors differ from model.json is refused, naming both shapes.
    #[test]
    fn graph_mismatch_is_named() {
        let metadata = parse(metadata_json());
        let (mut inputs, mut outputs) = graph_of(&metadata);
        inputs[0].dims[1] = 144;
        inputs[1].dtype = "int32".into();
        outputs.remove(0);
        inputs.push(GraphTensor {
            name: "mask".into(),
            dtype: "float32".into(),
            dims: vec![-1],
            symbols: vec![String::new()],
        });
        let text = messages(&check_graph(&metadata, &inputs, &outputs));
        assert!(
            text.contains("input `past_values`: model.json says [batch, 288, 14], the graph has [batch, 144, 14]"),
            "{text}"
        );
        assert!(
            text.contains(
                "input `last_timestamp`: model.json says int64 [batch], the graph has int32 [batch]"
            ),
            "{text}"
        );
        assert!(
            text.contains("output `quantiles`: model.json says float32 [batch, 96, 14, 3], the graph has no such output"),
            "{text}"
        );
        assert!(
            text.contains("input `mask`: the graph has it, model.json does not declare it"),
            "{text}"
        );
    }

    /// A graph with a fixed batch axis is refused: fleetcast batches.
    #[test]
    fn fixed_batch_axis_is_refused() {
        let metadata = parse(metadata_json());
        let (mut inputs, outputs) = graph_of(&metadata);
        inputs[2].dims[0] = 1;
        let text = messages(&check_graph(&metadata, &inputs, &outputs));
        assert!(
            text.contains("input `profile`: model.json says [batch], the graph has [1]"),
            "{text}"
        );
    }

    /// A missing library is an error that says what to do, never a panic.
    #[test]
    fn missing_library_says_what_to_do() {
        let error = resolve_library("/nonexistent/libonnxruntime.so").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("scripts/bootstrap"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    }

    /// The graph file must stay inside the model directory.
    #[test]
    fn graph_file_must_be_a_plain_name() {
        let mut json = metadata_json();
        json["onnx_file"] = "../other/model.onnx".into();
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(text.contains("onnx_file"), "{text}");
    }
}
