//! Tensor declarations (`model.json`'s `inputs` / `outputs`) and the graph's own description of
//! its tensors, and every way the two disagree.

use super::ModelMetadata;
use super::metadata::Mismatch;
use ort::value::{TensorElementType, ValueType};
use serde::{Deserialize, Serialize};
use std::fmt;

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
    pub(crate) fn new(name: &str, dtype: &str, shape: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            dtype: dtype.into(),
            shape,
        }
    }

    pub(crate) fn shape_text(&self) -> String {
        format!(
            "[{}]",
            self.shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    pub(crate) fn full_text(&self) -> String {
        format!("{} {}", self.dtype, self.shape_text())
    }
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
    pub(crate) fn from_outlet(outlet: &ort::value::Outlet) -> GraphTensor {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::join;
    use crate::model::metadata::tests::metadata_json;

    fn parse(json: serde_json::Value) -> ModelMetadata {
        serde_json::from_value(json).expect("metadata parses")
    }

    fn messages(problems: &[Mismatch]) -> String {
        join(problems)
    }

    /// The graph's description of the tensors a correct export has.
    pub(crate) fn graph_of(metadata: &ModelMetadata) -> (Vec<GraphTensor>, Vec<GraphTensor>) {
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

    /// A graph whose tensors differ from model.json is refused, naming both shapes.
    #[test]
    fn graph_mismatch_is_named() {
        let metadata = parse(metadata_json());
        let (mut inputs, mut outputs) = graph_of(&metadata);
        inputs[0].dims[1] = 144;
        inputs[3].dtype = "int32".into();
        outputs.remove(0);
        inputs.push(GraphTensor {
            name: "mask".into(),
            dtype: "float32".into(),
            dims: vec![-1],
            symbols: vec![String::new()],
        });
        let text = messages(&check_graph(&metadata, &inputs, &outputs));
        assert!(
            text.contains(
                "input `past_values`: model.json says [batch, 288], the graph has [batch, 144]"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "input `last_timestamp`: model.json says int64 [batch], the graph has int32 [batch]"
            ),
            "{text}"
        );
        assert!(
            text.contains("output `quantiles`: model.json says float32 [batch, 96, 3], the graph has no such output"),
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
}
