//! `model.json`: what a model says about itself, and every way that can disagree with the
//! catalog (metric and profile vocabularies), the settings (step, context, the keeper's
//! shortest history) and the tensors fleetcast feeds and reads.

use super::tensors::{Dim, TensorKind, TensorSpec};
use super::{
    FORMAT_VERSION, INPUT_LAST_TIMESTAMP, INPUT_METRIC, INPUT_PAST_VALUES, INPUT_PROFILE,
    LAYOUT_SERIES, ModelError, OUTPUT_ATTENTION, OUTPUT_QUANTILES, OUTPUT_VARIABLE_WEIGHTS,
    QUANTILES,
};
use crate::catalog::{Metric, Profile};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// One way a model disagrees with what fleetcast needs; its `Display` names the thing.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// `format_version` is not one this build reads.
    FormatVersion {
        /// The version in `model.json`.
        found: u32,
    },
    /// `layout` is not the one-metric-per-row layout this build feeds.
    Layout {
        /// The layout in `model.json` (empty when it has none).
        found: String,
    },
    /// `min_observed_steps` is outside 1..=`context_length`.
    MinObserved {
        /// Its value.
        found: u32,
        /// The context length.
        context: u32,
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
            Mismatch::Layout { found } => write!(
                f,
                "layout: model.json says `{found}`, this build feeds one metric per row (`{LAYOUT_SERIES}`)"
            ),
            Mismatch::MinObserved { found, context } => write!(
                f,
                "min_observed_steps: model.json says {found}, it must lie in 1..={context} (the context length)"
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

/// `model.json`: the model's contract and provenance. Keys the predictor does not use are
/// kept as JSON so the file can grow without breaking older workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Format of this file ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Row layout: `series` (one metric of one server per row).
    #[serde(default)]
    pub layout: String,
    /// Fewest observed (non-NaN) context steps a row needs; callers send no row with fewer.
    #[serde(default)]
    pub min_observed_steps: u32,
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
    /// Metric names; the `metric` input is an index into this list.
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
    #[serde(default)]
    pub normalisation: serde_json::Value,
    /// The calendar features computed inside the graph.
    #[serde(default)]
    pub calendar_features: serde_json::Value,
    /// Names of the `variable_weights` entries.
    pub encoder_variables: Vec<String>,
    /// Trainable parameters.
    #[serde(default)]
    pub params: u64,
    /// Floating-point operations of one row (one metric of one server), for throughput
    /// reports.
    #[serde(default, alias = "flops_per_forecast")]
    pub flops_per_row: f64,
    /// How it was trained.
    #[serde(default)]
    pub training: serde_json::Value,
    /// How it scored on held-out data.
    #[serde(default)]
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
    /// `window_keeper.min_observed_steps`: the keeper sends a metric once it has this many
    /// observed steps, so the model must accept rows with that few.
    pub min_observed_steps: u32,
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

    /// Model name and version, e.g. `tft-v3 3.0.0`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// The tensors fleetcast feeds and reads, as this metadata's lengths make them.
    pub fn needed_tensors(&self) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let context = i64::from(self.context_length);
        let per_row = || vec![Dim::Batch];
        let inputs = vec![
            TensorSpec::new(
                INPUT_PAST_VALUES,
                "float32",
                vec![Dim::Batch, Dim::Fixed(context)],
            ),
            TensorSpec::new(INPUT_METRIC, "int64", per_row()),
            TensorSpec::new(INPUT_PROFILE, "int64", per_row()),
            TensorSpec::new(INPUT_LAST_TIMESTAMP, "int64", per_row()),
        ];
        let outputs = vec![
            TensorSpec::new(
                OUTPUT_QUANTILES,
                "float32",
                vec![
                    Dim::Batch,
                    Dim::Fixed(i64::from(self.horizon)),
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
        if self.layout != LAYOUT_SERIES {
            problems.push(Mismatch::Layout {
                found: self.layout.clone(),
            });
        }
        if self.min_observed_steps == 0 || self.min_observed_steps > self.context_length {
            problems.push(Mismatch::MinObserved {
                found: self.min_observed_steps,
                context: self.context_length,
            });
        } else if contract.min_observed_steps < self.min_observed_steps {
            problems.push(Mismatch::Setting {
                field: "min_observed_steps",
                model: self.min_observed_steps.into(),
                key: "window_keeper.min_observed_steps",
                setting: contract.min_observed_steps.into(),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::join;
    use crate::model::tensors::check_graph;
    use crate::model::tensors::tests::graph_of;

    /// A `model.json` as the training pipeline writes it: 288 steps of one metric in,
    /// 96 × 3 out.
    pub(crate) fn metadata_json() -> serde_json::Value {
        let metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
        let profiles: Vec<&str> = Profile::ALL.iter().map(|profile| profile.name()).collect();
        let variables = [
            "value", "observed", "hour_sin", "hour_cos", "dow_sin", "dow_cos",
        ];
        serde_json::json!({
            "format_version": 2,
            "layout": "series",
            "min_observed_steps": 24,
            "name": "tft-test",
            "version": "0.1.0",
            "created": "2026-12-01T00:00:00Z",
            "onnx_file": "model.onnx",
            "opset": 17,
            "inputs": [
                {"name": "past_values", "dtype": "float32", "shape": ["batch", 288], "doc": "x"},
                {"name": "metric", "dtype": "int64", "shape": ["batch"]},
                {"name": "profile", "dtype": "int64", "shape": ["batch"]},
                {"name": "last_timestamp", "dtype": "int64", "shape": ["batch"]}
            ],
            "outputs": [
                {"name": "quantiles", "dtype": "float32", "shape": ["batch", 96, 3]},
                {"name": "variable_weights", "dtype": "float32", "shape": ["batch", 6]},
                {"name": "attention", "dtype": "float32", "shape": ["batch", 288]}
            ],
            "metrics": metrics,
            "profiles": profiles,
            "step_seconds": 300,
            "context_length": 288,
            "horizon": 96,
            "quantiles": [0.1, 0.5, 0.9],
            "normalisation": {"description": "per row, over observed steps"},
            "calendar_features": {"description": "hour and weekday"},
            "encoder_variables": variables,
            "params": 12345,
            "flops_per_row": 1200000,
            "training": {},
            "evaluation": {}
        })
    }

    pub(crate) const CONTRACT: ModelContract = ModelContract {
        step_seconds: 300,
        context_steps: 288,
        min_observed_steps: 24,
    };

    fn parse(json: serde_json::Value) -> ModelMetadata {
        serde_json::from_value(json).expect("metadata parses")
    }

    fn messages(problems: &[Mismatch]) -> String {
        join(problems)
    }

    /// The training pipeline's metadata fits the default settings and its own graph.
    #[test]
    fn good_metadata_fits() {
        let metadata = parse(metadata_json());
        assert_eq!(metadata.check(&CONTRACT), vec![]);
        let (inputs, outputs) = graph_of(&metadata);
        assert_eq!(check_graph(&metadata, &inputs, &outputs), vec![]);
        assert_eq!(metadata.label(), "tft-test 0.1.0");
        assert_eq!(metadata.flops_per_row, 1.2e6);
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
            context_steps: 144,
            ..CONTRACT
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
        json["inputs"][0]["shape"] = serde_json::json!(["batch", 288, 14]);
        json["outputs"][1]["shape"] = serde_json::json!(["batch", 5]);
        json["inputs"][2]["dtype"] = "int32".into();
        json["outputs"].as_array_mut().unwrap().remove(2);
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(
            text.contains("input `past_values`: fleetcast needs float32 [batch, 288], model.json says float32 [batch, 288, 14]"),
            "{text}"
        );
        assert!(
            text.contains("output `variable_weights`: fleetcast needs float32 [batch, 6]"),
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

    /// An older (one server per row) model is refused for its format and layout, and a
    /// shortest history the settings would send below what the model accepts is named.
    #[test]
    fn old_layout_and_short_history_are_named() {
        let mut json = metadata_json();
        json["format_version"] = 1.into();
        json.as_object_mut().unwrap().remove("layout");
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(
            text.contains("format_version: model.json says 1, this build reads 2"),
            "{text}"
        );
        assert!(text.contains("layout: model.json says ``"), "{text}");
        let keeper_sends_12 = ModelContract {
            min_observed_steps: 12,
            ..CONTRACT
        };
        let text = messages(&parse(metadata_json()).check(&keeper_sends_12));
        assert!(
            text.contains("min_observed_steps: model.json says 24, setting window_keeper.min_observed_steps is 12"),
            "{text}"
        );
        let mut json = metadata_json();
        json["min_observed_steps"] = 300.into();
        let text = messages(&parse(json).check(&CONTRACT));
        assert!(
            text.contains("min_observed_steps: model.json says 300, it must lie in 1..=288"),
            "{text}"
        );
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
