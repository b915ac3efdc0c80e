//! Payloads for the unit tests of more than one module (the risk scorer's scoring and
//! summary, the alert router's book, the shared checks), so no test imports another
//! actor's tests.

use crate::wire::{AttentionSummary, Forecast, QuantileSeries, SCHEMA_VERSION};

/// "Now" of those tests, unix seconds.
pub const NOW: i64 = 1_700_000_000;

/// A forecast whose first step starts at `NOW`, every step of every metric constant
/// except where `series` gives per-step p90 (p10 = p50 = p90 unless stated).
pub fn forecast(steps: usize, series: &[(&str, Vec<f32>)]) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        server: "ppgen001".into(),
        profile: "generic".into(),
        model: "test".into(),
        model_version: "0".into(),
        issued_ms: NOW * 1000,
        origin_s: NOW - 300,
        step_seconds: 300,
        step_s: (0..steps as i64).map(|i| NOW + i * 300).collect(),
        metrics: series
            .iter()
            .map(|(name, values)| {
                (
                    name.to_string(),
                    QuantileSeries {
                        p10: values.clone(),
                        p50: values.clone(),
                        p90: values.clone(),
                        observed_steps: 288,
                    },
                )
            })
            .collect(),
        drivers: vec![],
        attention: AttentionSummary {
            recent_share: 0.0,
            oldest_share: 0.0,
            top_hours_ago: vec![],
        },
    }
}
