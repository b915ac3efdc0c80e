//! From a server's step history to the model's rows, and from the rows' outputs back to one
//! [`Forecast`]: the one code path the predictor and `fleetcast forecast` share.
//!
//! A server's history is a list of metrics, each with its last `context_length` step values
//! (NaN where a step was not observed). Each metric with at least the model's
//! `min_observed_steps` observed steps becomes one row; the others are left out of the forecast
//! (never invented). The forecast carries exactly the metrics that were forecast, each with its
//! count of observed steps, so a consumer can tell a forecast from two hours of history from
//! one from a full day. Drivers and attention are the rows' variable-selection weights and
//! attention averaged over the server's metrics.

use super::runtime::{ModelBatch, ModelOutputs, OnnxModel};
use super::{ModelError, ModelMetadata, QUANTILES};
use crate::catalog::{Metric, Profile};
use crate::wire::{AttentionSummary, Driver, Forecast, QuantileSeries, RejectKind, SCHEMA_VERSION};
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Encoder variables named as drivers in a forecast.
const TOP_DRIVERS: usize = 5;

/// Past steps named in the attention summary.
const TOP_ATTENTION_STEPS: usize = 3;

/// One server's recent history, metric by metric, ready to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Server name.
    pub server: String,
    /// Its profile.
    pub profile: Profile,
    /// Start of the newest step, unix seconds: the forecast origin.
    pub last_step_s: i64,
    /// Per metric, its last `context_length` step values, oldest first, NaN where the step
    /// was not observed; catalog order, each metric at most once.
    pub series: Vec<(Metric, Vec<f32>)>,
}

impl History {
    /// Observed (finite) steps of one series.
    pub fn observed(values: &[f32]) -> usize {
        values.iter().filter(|value| value.is_finite()).count()
    }
}

/// Why a server could not be forecast; the rest of the batch is unaffected.
#[derive(Debug, Clone, PartialEq)]
pub struct Unforecastable {
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// The reason in words.
    pub reason: String,
}

/// A history's rows in a batch: the first row, and each row's metric with its observed steps.
type Rows = (usize, Vec<(Metric, u32)>);

/// A forecast, or why there is none, per history.
pub type SeriesForecast = Result<Forecast, Unforecastable>;

/// Forecasts every history in one ONNX Runtime run (blocking: call it off the async runtime;
/// keep `histories` to a few dozen servers, the batch is their metrics' rows).
///
/// # Errors
/// [`ModelError`] when the run itself fails; a history that cannot be forecast (no metric with
/// enough observed steps, a series of the wrong length, non-finite model output) gets an
/// [`Unforecastable`] in its place instead.
pub fn forecast_histories<H: Borrow<History>>(
    model: &mut OnnxModel,
    histories: &[H],
    issued_ms: i64,
) -> Result<Vec<SeriesForecast>, ModelError> {
    let metadata = model.metadata();
    let context = metadata.context_length as usize;
    let min_observed = metadata.min_observed_steps as usize;
    let mut batch = ModelBatch::default();
    // Per history: the rows it owns or why it has none.
    let mut plans: Vec<Result<Rows, Unforecastable>> = Vec::with_capacity(histories.len());
    for history in histories.iter().map(Borrow::borrow) {
        let start = batch.len();
        let mut metrics = Vec::with_capacity(history.series.len());
        let mut problem = None;
        for (metric, values) in &history.series {
            if values.len() != context {
                problem = Some(Unforecastable {
                    kind: RejectKind::BadContent,
                    reason: format!(
                        "{metric} has {} steps, the model reads {context}",
                        values.len()
                    ),
                });
                break;
            }
            let observed = History::observed(values);
            if observed >= min_observed {
                metrics.push((*metric, observed as u32));
            }
        }
        if problem.is_none() && metrics.is_empty() {
            problem = Some(Unforecastable {
                kind: RejectKind::BadContent,
                reason: format!(
                    "no metric has the {min_observed} observed steps the model needs (of {})",
                    history.series.len()
                ),
            });
        }
        if let Some(problem) = problem {
            plans.push(Err(problem));
            continue;
        }
        for (metric, values) in &history.series {
            if metrics.iter().any(|(kept, _)| kept == metric) {
                batch.push(values, *metric, history.profile, history.last_step_s);
            }
        }
        plans.push(Ok((start, metrics)));
    }
    let outputs = if batch.is_empty() {
        None
    } else {
        Some(model.run(&batch)?)
    };
    let metadata = model.metadata();
    Ok(histories
        .iter()
        .zip(plans)
        .map(|(history, plan)| {
            let (start, metrics) = plan?;
            let history = history.borrow();
            let outputs = outputs
                .as_ref()
                .expect("a history with rows makes the batch non-empty");
            assemble(history, &metrics, start, outputs, metadata, issued_ms)
        })
        .collect())
}

/// Builds one server's forecast from its rows `start..start + metrics.len()`.
fn assemble(
    history: &History,
    metrics: &[(Metric, u32)],
    start: usize,
    outputs: &ModelOutputs,
    metadata: &ModelMetadata,
    issued_ms: i64,
) -> SeriesForecast {
    let rows = start..start + metrics.len();
    for row in rows.clone() {
        for (name, values) in [
            ("quantiles", outputs.quantiles_of(row)),
            ("variable_weights", outputs.weights_of(row)),
            ("attention", outputs.attention_of(row)),
        ] {
            if let Some(index) = values.iter().position(|value| !value.is_finite()) {
                return Err(Unforecastable {
                    kind: RejectKind::NonFinite,
                    reason: format!(
                        "model {} output `{name}` for {} is {} at index {index}",
                        metadata.label(),
                        metrics[row - start].0,
                        values[index]
                    ),
                });
            }
        }
    }
    let quantile_count = QUANTILES.len();
    let series = metrics
        .iter()
        .zip(rows.clone())
        .map(|(&(metric, observed), row)| {
            let quantiles = outputs.quantiles_of(row);
            let column = |q: usize| -> Vec<f32> {
                quantiles
                    .chunks_exact(quantile_count)
                    .map(|step| step[q])
                    .collect()
            };
            (
                metric.name().to_string(),
                QuantileSeries {
                    p10: column(0),
                    p50: column(1),
                    p90: column(2),
                    observed_steps: observed,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let weights = mean_of_rows(rows.clone().map(|row| outputs.weights_of(row)));
    let attention = mean_of_rows(rows.map(|row| outputs.attention_of(row)));
    let step = i64::from(metadata.step_seconds);
    Ok(Forecast {
        v: SCHEMA_VERSION,
        server: history.server.clone(),
        profile: history.profile.name().to_string(),
        model: metadata.name.clone(),
        model_version: metadata.version.clone(),
        issued_ms,
        origin_s: history.last_step_s,
        step_seconds: metadata.step_seconds,
        step_s: (1..=outputs.horizon as i64)
            .map(|k| history.last_step_s + k * step)
            .collect(),
        metrics: series,
        drivers: top_drivers(&weights, &metadata.encoder_variables, TOP_DRIVERS),
        attention: summarise_attention(&attention, metadata.step_seconds),
    })
}

/// The element-wise mean of equally long rows.
fn mean_of_rows<'a>(rows: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    let mut count = 0_u32;
    for row in rows {
        if sum.is_empty() {
            sum = row.to_vec();
        } else {
            sum.iter_mut()
                .zip(row)
                .for_each(|(total, value)| *total += value);
        }
        count += 1;
    }
    let scale = 1.0 / count.max(1) as f32;
    sum.iter_mut().for_each(|total| *total *= scale);
    sum
}

/// The `count` encoder variables with the largest weights, largest first.
pub fn top_drivers(weights: &[f32], names: &[String], count: usize) -> Vec<Driver> {
    let mut order: Vec<usize> = (0..weights.len().min(names.len())).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    order
        .into_iter()
        .take(count)
        .map(|index| Driver {
            variable: names[index].clone(),
            weight: weights[index],
        })
        .collect()
}

/// Where the attention over the past window (oldest step first) went: the share on the most
/// recent and on the oldest quarter, and the most attended steps as hours before the origin
/// (the start of the last step, which is 0 hours ago).
pub fn summarise_attention(attention: &[f32], step_seconds: u32) -> AttentionSummary {
    let steps = attention.len();
    let total: f32 = attention.iter().sum();
    let quarter = steps / 4;
    let share = |values: &[f32]| {
        if total > 0.0 {
            values.iter().sum::<f32>() / total
        } else {
            0.0
        }
    };
    let mut order: Vec<usize> = (0..steps).collect();
    order.sort_by(|&a, &b| attention[b].total_cmp(&attention[a]));
    AttentionSummary {
        recent_share: share(&attention[steps - quarter..]),
        oldest_share: share(&attention[..quarter]),
        top_hours_ago: order
            .into_iter()
            .take(TOP_ATTENTION_STEPS)
            .map(|index| ((steps - 1 - index) as f64 * f64::from(step_seconds) / 3600.0) as f32)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> ModelMetadata {
        let json = crate::model::metadata::tests::metadata_json();
        serde_json::from_value(json).expect("metadata parses")
    }

    /// Three rows of outputs where value = row·1e6 + step·1000 + quantile.
    fn outputs() -> ModelOutputs {
        let (rows, horizon, variables) = (3, 96, 6);
        let mut quantiles = Vec::new();
        for row in 0..rows {
            for step in 0..horizon {
                for quantile in 0..3 {
                    quantiles.push((row * 1_000_000 + step * 1000 + quantile) as f32);
                }
            }
        }
        let mut weights = vec![0.0_f32; rows * variables];
        // row 1: variable 2 leads; row 2: variable 5 leads, variable 2 second
        weights[variables + 2] = 0.9;
        weights[variables + 5] = 0.1;
        weights[2 * variables + 5] = 0.7;
        weights[2 * variables + 2] = 0.3;
        let mut attention = vec![0.0_f32; rows * 288];
        attention[288 + 287] = 1.0;
        attention[2 * 288 + 287] = 1.0;
        ModelOutputs {
            rows,
            horizon,
            variables,
            context: 288,
            quantiles,
            variable_weights: weights,
            attention,
        }
    }

    fn history() -> History {
        History {
            server: "ppdb001".into(),
            profile: Profile::Database,
            last_step_s: 1_767_571_200,
            series: Vec::new(),
        }
    }

    /// Drivers are the largest weights, largest first.
    #[test]
    fn drivers_are_the_top_weights() {
        let names: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .map(String::from)
            .to_vec();
        let weights = [0.05, 0.3, 0.1, 0.2, 0.15, 0.12, 0.08];
        let drivers = top_drivers(&weights, &names, 5);
        let order: Vec<&str> = drivers.iter().map(|d| d.variable.as_str()).collect();
        assert_eq!(order, ["b", "d", "e", "f", "c"]);
        assert_eq!(drivers[0].weight, 0.3);
    }

    /// Attention shares and hours ago follow the window's layout (oldest first).
    #[test]
    fn attention_summary_reads_the_window() {
        let mut attention = vec![0.0_f32; 288];
        attention[287] = 0.5; // the last step: 0 h ago
        attention[275] = 0.3; // 12 steps earlier: 1 h ago
        attention[0] = 0.2; // the oldest: 287 steps = 23.9 h ago
        let summary = summarise_attention(&attention, 300);
        assert!((summary.recent_share - 0.8).abs() < 1e-6);
        assert!((summary.oldest_share - 0.2).abs() < 1e-6);
        assert_eq!(summary.top_hours_ago[0], 0.0);
        assert_eq!(summary.top_hours_ago[1], 1.0);
        assert!((summary.top_hours_ago[2] - 287.0 * 300.0 / 3600.0).abs() < 1e-4);
    }

    /// A forecast takes each metric from its own row, with step times after the origin, the
    /// observed counts, and drivers and attention averaged over its rows.
    #[test]
    fn forecast_is_assembled_from_its_rows() {
        let metrics = [(Metric::CpuUserPct, 24), (Metric::MemUsedPct, 288)];
        let forecast = assemble(&history(), &metrics, 1, &outputs(), &metadata(), 42).unwrap();
        assert_eq!(forecast.model, "tft-test");
        assert_eq!(forecast.issued_ms, 42);
        assert_eq!(forecast.origin_s, 1_767_571_200);
        assert_eq!(forecast.step_s.len(), 96);
        assert_eq!(forecast.step_s[0], 1_767_571_200 + 300);
        assert_eq!(forecast.step_s[95], 1_767_571_200 + 96 * 300);
        assert_eq!(forecast.metrics.len(), 2, "only the metrics forecast");
        let cpu = &forecast.metrics["cpu_user_pct"];
        assert_eq!(cpu.p10[0], 1_000_000.0);
        assert_eq!(cpu.p50[2], 1_002_001.0);
        assert_eq!(cpu.observed_steps, 24);
        let memory = &forecast.metrics["mem_used_pct"];
        assert_eq!(memory.p90[95], 2_095_002.0);
        assert_eq!(memory.observed_steps, 288);
        // mean weights: variable 2 = 0.6, variable 5 = 0.4
        let names = &metadata().encoder_variables;
        assert_eq!(forecast.drivers[0].variable, names[2]);
        assert!((forecast.drivers[0].weight - 0.6).abs() < 1e-6);
        assert_eq!(forecast.drivers[1].variable, names[5]);
        assert_eq!(forecast.attention.top_hours_ago[0], 0.0);
        assert_eq!(forecast.attention.recent_share, 1.0);
    }

    /// NaN in one of a server's rows refuses that server's forecast only, naming the metric.
    #[test]
    fn nan_output_is_refused_per_server() {
        let mut outputs = outputs();
        outputs.quantiles[2 * 96 * 3 + 7] = f32::NAN;
        let metrics = [(Metric::CpuUserPct, 24), (Metric::MemUsedPct, 288)];
        let refused = assemble(&history(), &metrics, 1, &outputs, &metadata(), 0).unwrap_err();
        assert_eq!(refused.kind, RejectKind::NonFinite);
        assert!(refused.reason.contains("quantiles"), "{}", refused.reason);
        assert!(
            refused.reason.contains("mem_used_pct"),
            "{}",
            refused.reason
        );
        let first_row_only = [(Metric::CpuUserPct, 24)];
        assert!(assemble(&history(), &first_row_only, 0, &outputs, &metadata(), 0).is_ok());
    }

    /// Observed steps count finite values only.
    #[test]
    fn observed_counts_finite_steps() {
        assert_eq!(History::observed(&[1.0, f32::NAN, 2.0, f32::NAN]), 2);
    }
}
