//! The two baselines fleetcast's alerts are measured against, as Prometheus alerting rules
//! would run them on the same samples, with the catalog's thresholds (`[alerts.metrics]`):
//!
//! - **static thresholds**: `metric >= warning for 5m` raises `warning`,
//!   `metric >= critical for 5m` raises `critical`, e.g. `cpu_user_pct > 85 for 5m`;
//! - **`predict_linear`**: the same rules on `predict_linear(metric[1h], 3600)`: a
//!   least-squares line through the last hour's samples, extended one hour ahead.
//!
//! As in Prometheus, a rule fires once its condition has held at every evaluation for the
//! `for` duration (with 5-minute samples: two samples in a row), and resolves at the first
//! evaluation where it no longer holds; a server that reports nothing (offline) has no
//! series, so its rules resolve. One alert per (server, metric), subject = the metric name.

use super::score::AlertChange;
use crate::catalog::{METRIC_COUNT, Profile};
use crate::levels::Level;
use crate::sim::{ProfileThresholds, Threshold};
use std::collections::VecDeque;

/// What a rule compares with the thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// The value now.
    Current,
    /// `predict_linear(metric[window], horizon)`.
    PredictLinear {
        /// Range of the fit, ms.
        window_ms: i64,
        /// How far ahead, ms.
        horizon_ms: i64,
    },
}

impl Signal {
    /// The baseline's name in tables: `threshold` or `predict_linear`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Current => "threshold",
            Signal::PredictLinear { .. } => "predict_linear",
        }
    }
}

/// One (server, metric) rule's state.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// The samples inside the fit window (predict_linear only).
    history: VecDeque<(i64, f64)>,
    /// Since when the warning and critical conditions have held.
    since: [Option<i64>; 2],
    level: Option<Level>,
}

/// A set of Prometheus-style rules over every server's samples.
#[derive(Debug, Clone)]
pub struct RuleBaseline {
    signal: Signal,
    for_ms: i64,
    /// The thresholds of each profile and hour (the same metrics in the same order for
    /// every profile).
    thresholds: ProfileThresholds,
    /// Per server, per threshold.
    states: Vec<Vec<RuleState>>,
}

impl RuleBaseline {
    /// Rules on `signal` for `servers` servers, firing after `for_ms`, at `thresholds`
    /// lifted for each server's profile and hour by `sigmas` ([`ProfileThresholds`]).
    pub fn new(
        signal: Signal,
        for_ms: i64,
        thresholds: &[Threshold],
        sigmas: f64,
        servers: usize,
    ) -> Self {
        RuleBaseline {
            signal,
            for_ms,
            thresholds: ProfileThresholds::new(thresholds, sigmas),
            states: vec![vec![RuleState::default(); thresholds.len()]; servers],
        }
    }

    /// The signal the rules test.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Evaluates the rules of server `index` (named `server`, of `profile`) at `ts_ms` on
    /// its sample (`None`: it reported nothing), pushing every alert change onto `out`.
    pub fn observe(
        &mut self,
        index: usize,
        server: &str,
        profile: Profile,
        ts_ms: i64,
        values: Option<&[f64; METRIC_COUNT]>,
        out: &mut Vec<AlertChange>,
    ) {
        let thresholds = self.thresholds.get(profile, ts_ms);
        for (threshold, state) in thresholds.iter().zip(&mut self.states[index]) {
            let value = values.map(|values| values[threshold.metric.index()]);
            let signal = match (self.signal, value) {
                (_, None) => None,
                (Signal::Current, Some(value)) => Some(value),
                (
                    Signal::PredictLinear {
                        window_ms,
                        horizon_ms,
                    },
                    Some(value),
                ) => {
                    state.history.push_back((ts_ms, value));
                    while state
                        .history
                        .front()
                        .is_some_and(|&(at, _)| at <= ts_ms - window_ms)
                    {
                        state.history.pop_front();
                    }
                    predict_linear(&state.history, ts_ms + horizon_ms)
                }
            };
            for (slot, bound) in [threshold.warning, threshold.critical]
                .into_iter()
                .enumerate()
            {
                let holds = signal.is_some_and(|signal| signal >= bound);
                state.since[slot] = if holds {
                    state.since[slot].or(Some(ts_ms))
                } else {
                    None
                };
            }
            let fired =
                |slot: usize| state.since[slot].is_some_and(|since| ts_ms - since >= self.for_ms);
            let level = if fired(1) {
                Some(Level::Critical)
            } else if fired(0) {
                Some(Level::Warning)
            } else {
                None
            };
            if level != state.level {
                state.level = level;
                out.push(AlertChange {
                    server: server.to_string(),
                    subject: threshold.metric.name().to_string(),
                    at_ms: ts_ms,
                    level: level.unwrap_or(Level::Healthy),
                });
            }
        }
    }
}

/// The least-squares line through `points` evaluated at `at_ms` (Prometheus's
/// `predict_linear`); `None` with fewer than two points.
pub fn predict_linear(points: &VecDeque<(i64, f64)>, at_ms: i64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let origin = points.back()?.0;
    let n = points.len() as f64;
    let xs = points.iter().map(|&(at, _)| (at - origin) as f64 / 1000.0);
    let (sum_x, sum_y) = points
        .iter()
        .zip(xs.clone())
        .fold((0.0, 0.0), |(sx, sy), (&(_, y), x)| (sx + x, sy + y));
    let (mean_x, mean_y) = (sum_x / n, sum_y / n);
    let (mut cov, mut var) = (0.0, 0.0);
    for (&(_, y), x) in points.iter().zip(xs) {
        cov += (x - mean_x) * (y - mean_y);
        var += (x - mean_x) * (x - mean_x);
    }
    let slope = if var > 0.0 { cov / var } else { 0.0 };
    let at = (at_ms - origin) as f64 / 1000.0;
    Some(mean_y + slope * (at - mean_x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Metric;
    use crate::sim::CATALOG_THRESHOLDS;

    const STEP: i64 = 300_000;

    fn values(cpu: f64) -> [f64; METRIC_COUNT] {
        let mut values = [0.0; METRIC_COUNT];
        values[Metric::CpuUserPct.index()] = cpu;
        values
    }

    fn run(signal: Signal, series: &[Option<f64>]) -> Vec<(i64, Level)> {
        let mut baseline = RuleBaseline::new(signal, STEP, &CATALOG_THRESHOLDS, 0.0, 1);
        let mut out = Vec::new();
        for (step, cpu) in series.iter().enumerate() {
            let sample = cpu.map(values);
            baseline.observe(
                0,
                "a",
                Profile::Generic,
                step as i64 * STEP,
                sample.as_ref(),
                &mut out,
            );
        }
        assert!(out.iter().all(|change| change.subject == "cpu_user_pct"));
        out.iter()
            .map(|change| (change.at_ms / STEP, change.level))
            .collect()
    }

    /// `cpu > 85 for 5m` fires on the second sample in a row above 85, critical likewise
    /// above 95, and resolves on the first sample below (or a missing one).
    #[test]
    fn static_rule_fires_after_its_for_duration() {
        let series = [
            Some(50.0),
            Some(86.0), // pending
            Some(90.0), // warning
            Some(96.0), // critical pending
            Some(97.0), // critical
            Some(80.0), // resolved
            Some(86.0),
            None, // offline: no series, nothing fires
            Some(86.0),
            Some(86.0),
        ];
        assert_eq!(
            run(Signal::Current, &series),
            [
                (2, Level::Warning),
                (4, Level::Critical),
                (5, Level::Healthy),
                (9, Level::Warning)
            ]
        );
    }

    /// `predict_linear` over the last hour sees a steady climb an hour ahead of the value.
    #[test]
    fn predict_linear_fires_ahead_of_a_ramp() {
        // +2 points per 5 minutes from 40: 85 is reached at step 23; the one-hour-ahead line
        // (+24) crosses 85 at step 11, fires at 12.
        let series: Vec<Option<f64>> = (0..30).map(|step| Some(40.0 + 2.0 * step as f64)).collect();
        let signal = Signal::PredictLinear {
            window_ms: 3_600_000,
            horizon_ms: 3_600_000,
        };
        let changes = run(signal, &series);
        assert_eq!(changes[0], (12, Level::Warning));
        let (static_first, _) = run(Signal::Current, &series)[0];
        assert_eq!(static_first, 24);
    }

    /// The fit is exact on a line and needs two points.
    #[test]
    fn predict_linear_is_least_squares() {
        let mut points = VecDeque::new();
        points.push_back((0, 1.0));
        assert_eq!(predict_linear(&points, 1000), None);
        points.push_back((1000, 2.0));
        points.push_back((2000, 3.0));
        assert!((predict_linear(&points, 5000).unwrap() - 6.0).abs() < 1e-9);
        points.push_back((3000, 3.0));
        // x = 0..3 s, y = 1, 2, 3, 3: slope 0.7, mean 2.25 at x 1.5.
        assert!((predict_linear(&points, 3000).unwrap() - 3.3).abs() < 1e-9);
    }
}
