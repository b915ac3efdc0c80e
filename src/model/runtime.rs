//! ONNX Runtime: finding its library, opening a checked model on a session, and running a
//! batch of rows.
//!
//! ONNX Runtime is a shared library loaded at run time (`load-dynamic`): see
//! [`resolve_library`] for where it is looked for, and [`ModelError::LibraryNotFound`] for what
//! an operator is told when it is missing.

use super::metadata::{ModelContract, ModelMetadata};
use super::tensors::{GraphTensor, check_graph};
use super::{
    INPUT_LAST_TIMESTAMP, INPUT_METRIC, INPUT_PAST_VALUES, INPUT_PROFILE, ModelError,
    OUTPUT_ATTENTION, OUTPUT_QUANTILES, OUTPUT_VARIABLE_WEIGHTS, QUANTILES,
};
use crate::catalog::{Metric, Profile};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A `[rows]` view of one integer per row.
fn per_row(values: &[i64]) -> Result<TensorRef<'_, i64>, ModelError> {
    TensorRef::from_array_view(([values.len()], values)).map_err(ModelError::Run)
}

/// The library file name ONNX Runtime ships as on Linux.
const LIBRARY_FILE: &str = "libonnxruntime.so";

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
                min_observed_steps: settings.window_keeper.min_observed_steps,
            },
        })
    }
}

/// Inputs of one run: `rows` series stacked in the graph's layout, one metric of one server
/// per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelBatch {
    /// `[rows, context]`, oldest step first, NaN where a step was not observed.
    pub past_values: Vec<f32>,
    /// `[rows]` metric indices (catalog order).
    pub metric: Vec<i64>,
    /// `[rows]` profile indices.
    pub profile: Vec<i64>,
    /// `[rows]` unix seconds of the start of each row's last step.
    pub last_timestamp: Vec<i64>,
}

impl ModelBatch {
    /// Adds one row: `values` (`context` long) of `metric` on a server of `profile`.
    pub fn push(&mut self, values: &[f32], metric: Metric, profile: Profile, last_timestamp: i64) {
        self.past_values.extend_from_slice(values);
        self.metric.push(metric.index() as i64);
        self.profile.push(profile.index() as i64);
        self.last_timestamp.push(last_timestamp);
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.last_timestamp.len()
    }

    /// Whether the batch holds no row.
    pub fn is_empty(&self) -> bool {
        self.last_timestamp.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.past_values.clear();
        self.metric.clear();
        self.profile.clear();
        self.last_timestamp.clear();
    }
}

/// Outputs of one run, row-major in the graph's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutputs {
    /// Rows.
    pub rows: usize,
    /// Forecast steps.
    pub horizon: usize,
    /// Encoder variables.
    pub variables: usize,
    /// Context steps.
    pub context: usize,
    /// `[rows, horizon, 3]`.
    pub quantiles: Vec<f32>,
    /// `[rows, variables]`.
    pub variable_weights: Vec<f32>,
    /// `[rows, context]`.
    pub attention: Vec<f32>,
}

impl ModelOutputs {
    /// One row's quantiles, `[horizon, 3]`.
    pub fn quantiles_of(&self, row: usize) -> &[f32] {
        let size = self.horizon * QUANTILES.len();
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
    /// with the batch, so callers keep batches to a few hundred rows.
    ///
    /// # Errors
    /// [`ModelError::Run`] when ONNX Runtime fails, [`ModelError::OutputShape`] when an
    /// output is not the size the contract says.
    ///
    /// # Panics
    /// When `batch.past_values` is not `rows × context` long (a caller bug).
    pub fn run(&mut self, batch: &ModelBatch) -> Result<ModelOutputs, ModelError> {
        let rows = batch.len();
        let context = self.metadata.context_length as usize;
        assert_eq!(batch.past_values.len(), rows * context);
        let horizon = self.metadata.horizon as usize;
        let variables = self.metadata.encoder_variables.len();
        let past_values =
            TensorRef::from_array_view(([rows, context], batch.past_values.as_slice()))
                .map_err(ModelError::Run)?;
        let outputs = self
            .session
            .run(ort::inputs![
                INPUT_PAST_VALUES => past_values,
                INPUT_METRIC => per_row(&batch.metric)?,
                INPUT_PROFILE => per_row(&batch.profile)?,
                INPUT_LAST_TIMESTAMP => per_row(&batch.last_timestamp)?,
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
            vec![rows_i, horizon_i, QUANTILES.len() as i64],
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

    /// A missing library is an error that says what to do, never a panic.
    #[test]
    fn missing_library_says_what_to_do() {
        let error = resolve_library("/nonexistent/libonnxruntime.so").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("scripts/bootstrap"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    }
}
