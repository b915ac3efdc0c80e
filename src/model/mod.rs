//! The forecasting model: its directory, its contract, and ONNX Runtime running it.
//!
//! A model is a folder `models/<name>/` holding `model.onnx` (the graph) and `model.json` (its
//! contract and provenance). The graph forecasts **one metric of one server per row**
//! (`layout: "series"`): a row is that metric's last `context_length` step values in raw
//! units, NaN where a step was not observed (a gap, or before the server's history began),
//! with the metric's and the server profile's index and the time of the last step. So a server
//! is forecast from whatever subset of the 14 metrics it reports and however short its
//! history is (at least `min_observed_steps` observed steps), and a metric that carries no
//! information cannot move another metric's forecast.
//!
//! - [`metadata`]: `model.json`, checked against the catalog and the settings;
//! - [`tensors`]: the graph's inputs and outputs, checked against `model.json`;
//! - [`runtime`]: finding ONNX Runtime, opening a checked model, running a batch of rows;
//! - [`series`]: from a server's step history to rows and from the rows' outputs to the
//!   [`Forecast`](crate::wire::Forecast) the predictor publishes and `fleetcast forecast`
//!   writes (one code path for both).
//!
//! Every disagreement between a model and what fleetcast needs is a [`Mismatch`] naming what
//! differs, all of them reported at once; a model that loads is one whose forecasts can be
//! trusted to mean what the wire says.

pub mod metadata;
pub mod runtime;
pub mod series;
pub mod tensors;

pub use metadata::{Mismatch, ModelContract, ModelMetadata};
pub use runtime::{
    ModelBatch, ModelOptions, ModelOutputs, OnnxModel, environment, resolve_library,
};
pub use series::{History, SeriesForecast, forecast_histories};

use std::path::PathBuf;

/// The `model.json` format this build reads (2: one metric per row).
pub const FORMAT_VERSION: u32 = 2;

/// The only row layout this build feeds: one metric of one server per row.
pub const LAYOUT_SERIES: &str = "series";

/// The quantiles fleetcast publishes (p10, p50, p90), in the order of the last output axis.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Input: `[batch, context]` one metric's raw step values, NaN where not observed.
pub const INPUT_PAST_VALUES: &str = "past_values";
/// Input: the metric's index in the catalog, one per row.
pub const INPUT_METRIC: &str = "metric";
/// Input: the profile's index, one per row.
pub const INPUT_PROFILE: &str = "profile";
/// Input: unix seconds of the start of the last context step, one per row.
pub const INPUT_LAST_TIMESTAMP: &str = "last_timestamp";
/// Output: `[batch, horizon, quantiles]` forecasts in raw units.
pub const OUTPUT_QUANTILES: &str = "quantiles";
/// Output: `[batch, encoder variables]` variable-selection weights.
pub const OUTPUT_VARIABLE_WEIGHTS: &str = "variable_weights";
/// Output: `[batch, context]` attention over the past steps.
pub const OUTPUT_ATTENTION: &str = "attention";

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

/// Every problem's text, `; `-separated.
pub(crate) fn join(problems: &[Mismatch]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
