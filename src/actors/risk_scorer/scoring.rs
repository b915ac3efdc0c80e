//! The risk score itself (catalog §6), as plain functions: no bus, no clock.
//!
//! `risk = clamp(0.7 · current + 0.3 · predicted, 0, 100)` (weights from `[risk]`), where
//! *current* sums the points of the latest sample's values and *predicted* the points of the
//! latest forecast's p90 averaged over the next 30 minutes. In each row the first matching
//! tier applies:
//!
//! | input | current points | predicted points |
//! |---|---|---|
//! | CPU = 100 − cpu_idle_pct (fallback cpu_user_pct) | ≥98: 60, ≥95: 40, ≥90: 25, ≥80: 15 | ≥98: 40, ≥95: 25, ≥90: 15 |
//! | mem_used_pct | profile table below (generic: ≥98: 50, ≥95: 30, ≥90: 15, ≥85: 10) | profile table below (generic: ≥98: 30, ≥95: 20) |
//! | cpu_iowait_pct | ≥30: 40, ≥20: 25, ≥10: 15 | ≥30: 25, ≥20: 15 |
//! | swap_used_pct | ≥50: 30, ≥25: 20, ≥10: 10 | – |
//! | load_average | ≥12: 20, ≥8: 10 | – |
//!
//! # Predicted values
//!
//! The predicted window is the forecast steps that have not ended by the time of the latest
//! sample, the first `ceil(predicted_window_minutes · 60 / step_seconds)` of them (6 steps of
//! 300 s for the default 30 minutes). A forecast none of whose steps is left is ignored (as
//! is a missing one): predicted points are then 0 and the score's `forecast_status` says why.
//! Each predicted value is the mean over that window of the metric's p90. For CPU, whose
//! forecast is of `cpu_idle_pct`, the p90 of *busy* is `100 − p10(idle)`, so predicted CPU
//! is `100 − mean(p10(cpu_idle_pct))`; without an idle forecast it is `mean(p90(cpu_user_pct))`.
//!
//! # Profile-aware memory
//!
//! The original documented a memory limit per profile (ML 98, DB 100, Web 85, Conductor 90,
//! Ingest 90, Risk 95, Generic 90) but scored every server on one table. fleetcast applies
//! the limit in one rule to both memory rows: **the original's table is the generic
//! profile's (limit 90), and a profile's thresholds sit at the same share of its headroom**:
//!
//! `threshold = 100 − (100 − generic_threshold) · headroom / 10`, `headroom = max(100 − limit, 1)`,
//!
//! rounded to 0.01. So the original's ≥90 tier moves to the profile's limit, the tiers above
//! it crowd into the smaller headroom of a high-limit profile and spread out in the larger
//! headroom of a low-limit one; generic, conductor and ingest keep the original's numbers.
//! The floor of 1 point of headroom keeps the database's tiers (limit 100) distinct and
//! reachable, close to the original's dead database branch (≥99: 50, ≥98: 30, ≥95: 15).
//! Points are unchanged. The resulting thresholds:
//!
//! | profile (limit) | current ≥50 | ≥30 | ≥15 | ≥10 | predicted ≥30 | ≥20 |
//! |---|---|---|---|---|---|---|
//! | generic, conductor_mgmt, data_ingest (90) | 98 | 95 | 90 | 85 | 98 | 95 |
//! | ml_compute (98) | 99.6 | 99 | 98 | 97 | 99.6 | 99 |
//! | database (100) | 99.8 | 99.5 | 99 | 98.5 | 99.8 | 99.5 |
//! | web_api (85) | 97 | 92.5 | 85 | 77.5 | 97 | 92.5 |
//! | risk_analytics (95) | 99 | 97.5 | 95 | 92.5 | 99 | 97.5 |
//!
//! # Profile-aware CPU, iowait, swap and load, by the hour
//!
//! What is normal for a profile is not a risk: a database's iowait sits at 15 ± 5 % and a
//! risk_analytics server's load at 8.2 ± 2.5 (catalog §2 baselines), and a risk_analytics
//! server's busy CPU reaches 100 % in its 16–19 h peak (catalog §3 diurnal curve). The original scored
//! both on the generic tables, so a healthy fleet raised alerts all day. The iowait, swap
//! and load rows ([`crate::catalog::PROFILE_LIFTED`]) are lifted above the profile's
//! **normal top**, its baseline mean plus `risk.profile_normal_sigmas` (2.5) standard
//! deviations, by [`crate::catalog::lift_above_normal`]: the row's lowest current tier moves
//! to the normal top and the tiers above it keep their share of the headroom to 100 % (a top
//! is capped at 99 %); load tiers shift by the difference. A profile whose normal top is
//! below the lowest tier keeps the original's numbers. With the default 2.5 σ, for example:
//! database iowait 27.5 / 35.56 / 43.61 (for 10 / 20 / 30), data_ingest iowait
//! 15.5 / 24.89 / 34.28, risk_analytics load 14.45 / 18.45, ml_compute load 11.5 / 15.5
//! (at a diurnal factor of 1). Every top is scaled by the profile's diurnal factor at the
//! latest sample's UTC hour as far as the metric follows it ([`Profile::normal_top_at`]).
//! The CPU rows move the same way above the profile's normal busy top at the hour
//! ([`Profile::normal_busy_top_at`], anchored at the 80 % tier); where that top reaches
//! 100 % the CPU rows score nothing (the profile's normal saturates: a CPU of 100 % says
//! nothing about trouble then, memory, iowait and load still do). `profile_normal_sigmas = 0`
//! turns the lift off.

use crate::catalog::{Metric, MetricKind, PROFILE_LIFTED, Profile, lift_above_normal, utc_hour};
use crate::levels::Scale;
use crate::wire::{FactorSource, Forecast, QuantileSeries, RiskFactor, RiskScore, SCHEMA_VERSION};
use std::collections::BTreeMap;

/// A table of `(lowest value, points)` rows, highest first; the first row reached applies.
pub type Tiers = [(f64, f64)];

/// CPU busy percent, current.
pub const CPU_CURRENT: [(f64, f64); 4] = [(98.0, 60.0), (95.0, 40.0), (90.0, 25.0), (80.0, 15.0)];
/// CPU busy percent, predicted.
pub const CPU_PREDICTED: [(f64, f64); 3] = [(98.0, 40.0), (95.0, 25.0), (90.0, 15.0)];
/// Memory used percent, current, for the generic profile (the original's table).
pub const MEMORY_CURRENT_GENERIC: [(f64, f64); 4] =
    [(98.0, 50.0), (95.0, 30.0), (90.0, 15.0), (85.0, 10.0)];
/// Memory used percent, predicted, for the generic profile.
pub const MEMORY_PREDICTED_GENERIC: [(f64, f64); 2] = [(98.0, 30.0), (95.0, 20.0)];
/// I/O wait percent, current.
pub const IOWAIT_CURRENT: [(f64, f64); 3] = [(30.0, 40.0), (20.0, 25.0), (10.0, 15.0)];
/// I/O wait percent, predicted.
pub const IOWAIT_PREDICTED: [(f64, f64); 2] = [(30.0, 25.0), (20.0, 15.0)];
/// Swap used percent, current only.
pub const SWAP_CURRENT: [(f64, f64); 3] = [(50.0, 30.0), (25.0, 20.0), (10.0, 10.0)];
/// Load average, current only.
pub const LOAD_CURRENT: [(f64, f64); 2] = [(12.0, 20.0), (8.0, 10.0)];

/// Name of the CPU factor (`100 − cpu_idle_pct`, or `cpu_user_pct` when idle is absent).
pub const CPU_FACTOR: &str = "cpu";

/// Points of `value` in `tiers`: the first row whose lowest value it reaches, else 0.
pub fn points(tiers: &Tiers, value: f64) -> f64 {
    tiers
        .iter()
        .find(|(lowest, _)| value >= *lowest)
        .map_or(0.0, |(_, points)| *points)
}

/// `tiers` of an input lifted above a profile's normal `top` (see the module doc), anchored
/// at `anchor`, the lowest tier of the input's current table.
pub fn lifted_tiers(tiers: &Tiers, anchor: f64, top: f64, kind: MetricKind) -> Vec<(f64, f64)> {
    tiers
        .iter()
        .map(|&(lowest, points)| (lift_above_normal(lowest, anchor, top, kind), points))
        .collect()
}

/// A table of tiers built for one server.
type Table = Vec<(f64, f64)>;

/// The profile-aware tables of one server (module doc).
struct Tables {
    cpu_current: Table,
    cpu_predicted: Table,
    iowait_current: Table,
    iowait_predicted: Table,
    memory_current: Table,
    memory_predicted: Table,
    swap: Table,
    load: Table,
}

impl Tables {
    /// The tables of a server of `profile` at UTC `hour`.
    fn new(profile: Profile, sigmas: f64, hour: u32) -> Tables {
        // `tiers` of `metric` lifted, anchored at the lowest tier of its current table.
        let lift = |metric: Metric, current: &Tiers, tiers: &Tiers| {
            let top = if sigmas > 0.0 && PROFILE_LIFTED.contains(&metric) {
                profile.normal_top_at(metric, sigmas, hour)
            } else {
                f64::NEG_INFINITY
            };
            let anchor = current.last().map_or(f64::INFINITY, |(lowest, _)| *lowest);
            lifted_tiers(tiers, anchor, top, metric.kind())
        };
        let iowait = Metric::CpuIowaitPct;
        let busy_top = if sigmas > 0.0 {
            profile.normal_busy_top_at(sigmas, hour)
        } else {
            f64::NEG_INFINITY
        };
        let cpu_anchor = CPU_CURRENT
            .last()
            .map_or(f64::INFINITY, |(lowest, _)| *lowest);
        // A profile whose normal busy reaches 100 % at this hour: its CPU says nothing.
        let cpu = |tiers: &Tiers| {
            if busy_top >= 100.0 {
                Vec::new()
            } else {
                lifted_tiers(tiers, cpu_anchor, busy_top, MetricKind::Percent)
            }
        };
        Tables {
            cpu_current: cpu(&CPU_CURRENT),
            cpu_predicted: cpu(&CPU_PREDICTED),
            iowait_current: lift(iowait, &IOWAIT_CURRENT, &IOWAIT_CURRENT),
            iowait_predicted: lift(iowait, &IOWAIT_CURRENT, &IOWAIT_PREDICTED),
            memory_current: memory_tiers(profile, &MEMORY_CURRENT_GENERIC),
            memory_predicted: memory_tiers(profile, &MEMORY_PREDICTED_GENERIC),
            swap: lift(Metric::SwapUsedPct, &SWAP_CURRENT, &SWAP_CURRENT),
            load: lift(Metric::LoadAverage, &LOAD_CURRENT, &LOAD_CURRENT),
        }
    }
}

/// `generic` memory tiers moved to `profile`'s memory limit (see the module doc).
pub fn memory_tiers(profile: Profile, generic: &Tiers) -> Vec<(f64, f64)> {
    generic
        .iter()
        .map(|&(lowest, points)| (profile.memory_threshold(lowest), points))
        .collect()
}

/// How the risk scorer weighs the present against the forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskConfig {
    /// Length of the predicted window in seconds.
    pub predicted_window_seconds: i64,
    /// Weight of current points.
    pub current_weight: f64,
    /// Weight of predicted points.
    pub predicted_weight: f64,
    /// Standard deviations above a profile's baseline mean where its CPU, iowait, swap and
    /// load tiers start (module doc); 0 or less keeps the original's tables.
    pub profile_normal_sigmas: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            predicted_window_seconds: 30 * 60,
            current_weight: 0.7,
            predicted_weight: 0.3,
            profile_normal_sigmas: 2.5,
        }
    }
}

impl From<&crate::settings::RiskSettings> for RiskConfig {
    fn from(settings: &crate::settings::RiskSettings) -> Self {
        RiskConfig {
            predicted_window_seconds: i64::from(settings.predicted_window_minutes) * 60,
            current_weight: settings.current_weight,
            predicted_weight: settings.predicted_weight,
            profile_normal_sigmas: settings.profile_normal_sigmas,
        }
    }
}

/// Whether a forecast fed the predicted points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastStatus {
    /// A forecast with steps left in the predicted window was used.
    Used,
    /// No forecast has arrived for this server yet: predicted points are 0.
    Missing,
    /// The latest forecast ended before the latest sample: ignored, predicted points are 0.
    Stale,
}

impl ForecastStatus {
    /// The wire name (`used`, `missing`, `stale`).
    pub fn name(self) -> &'static str {
        match self {
            ForecastStatus::Used => "used",
            ForecastStatus::Missing => "missing",
            ForecastStatus::Stale => "stale",
        }
    }
}

/// A scored server.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// `clamp(wc · current + wp · predicted, 0, 100)`.
    pub score: f64,
    /// Current points (raw, up to 200).
    pub current: f64,
    /// Predicted points (raw, up to 95).
    pub predicted: f64,
    /// Every input that was scored, points 0 included, most points first.
    pub factors: Vec<RiskFactor>,
    /// Whether a forecast was used.
    pub forecast_status: ForecastStatus,
}

impl Assessment {
    /// The `risk.<server>` message for this assessment of `server` at `sample_ms` (the latest
    /// sample's time), stamped `at_ms`; `forecast` is the one it was assessed with, whose
    /// origin the message names when it was used.
    pub fn into_risk_score(
        self,
        server: &str,
        profile: Profile,
        at_ms: i64,
        sample_ms: i64,
        forecast: Option<&Forecast>,
        scale: &Scale,
    ) -> RiskScore {
        let used = self.forecast_status == ForecastStatus::Used;
        RiskScore {
            v: SCHEMA_VERSION,
            server: server.to_string(),
            profile: profile.name().to_string(),
            at_ms,
            sample_ms,
            forecast_origin_s: forecast.filter(|_| used).map(|f| f.origin_s),
            score: self.score,
            current: self.current,
            predicted: self.predicted,
            level: scale.level_of(self.score).name().to_string(),
            factors: self.factors,
            forecast_status: self.forecast_status.name().to_string(),
        }
    }
}

/// Indices of the forecast steps that have not ended at `now_s`, at most `count` of them.
pub fn remaining_steps(forecast: &Forecast, now_s: i64, count: usize) -> Vec<usize> {
    let step = i64::from(forecast.step_seconds);
    forecast
        .step_s
        .iter()
        .enumerate()
        .filter(|(_, start)| **start + step > now_s)
        .map(|(index, _)| index)
        .take(count)
        .collect()
}

/// Number of steps of `step_seconds` that cover `window_seconds` (at least 1).
pub fn steps_in(window_seconds: i64, step_seconds: u32) -> usize {
    let step = i64::from(step_seconds.max(1));
    usize::try_from(((window_seconds + step - 1) / step).max(1)).unwrap_or(1)
}

fn mean_of(values: &[f32], steps: &[usize]) -> Option<f64> {
    let picked: Vec<f64> = steps
        .iter()
        .filter_map(|&index| values.get(index))
        .map(|&value| f64::from(value))
        .collect();
    (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
}

/// Scores one server from its latest values (`current`: metric name → value, any subset)
/// and its latest forecast, at `now_s` (the latest sample's time, unix seconds).
pub fn assess(
    config: &RiskConfig,
    profile: Profile,
    current: &BTreeMap<String, f64>,
    forecast: Option<&Forecast>,
    now_s: i64,
) -> Assessment {
    let mut factors = Vec::new();
    let mut add = |metric: &str, source, value: f64, tiers: &Tiers| {
        let points = points(tiers, value);
        factors.push(RiskFactor {
            metric: metric.to_string(),
            source,
            value,
            points,
        });
        points
    };
    let value = |metric: Metric| current.get(metric.name()).copied();
    let tables = Tables::new(
        profile,
        config.profile_normal_sigmas,
        utc_hour(now_s * 1000),
    );

    let mut current_points = 0.0;
    let cpu = value(Metric::CpuIdlePct)
        .map(|idle| 100.0 - idle)
        .or_else(|| value(Metric::CpuUserPct));
    if let Some(cpu) = cpu {
        current_points += add(CPU_FACTOR, FactorSource::Current, cpu, &tables.cpu_current);
    }
    let current_rows: [(Metric, &Tiers); 4] = [
        (Metric::MemUsedPct, &tables.memory_current),
        (Metric::CpuIowaitPct, &tables.iowait_current),
        (Metric::SwapUsedPct, &tables.swap),
        (Metric::LoadAverage, &tables.load),
    ];
    for (metric, tiers) in current_rows {
        if let Some(observed) = value(metric) {
            current_points += add(metric.name(), FactorSource::Current, observed, tiers);
        }
    }

    let mut predicted_points = 0.0;
    let forecast_status = match forecast {
        None => ForecastStatus::Missing,
        Some(forecast) => {
            let count = steps_in(config.predicted_window_seconds, forecast.step_seconds);
            let steps = remaining_steps(forecast, now_s, count);
            if steps.is_empty() {
                ForecastStatus::Stale
            } else {
                let series = |metric: Metric| forecast.metrics.get(metric.name());
                let cpu = series(Metric::CpuIdlePct)
                    .and_then(|idle: &QuantileSeries| mean_of(&idle.p10, &steps))
                    .map(|idle| 100.0 - idle)
                    .or_else(|| {
                        series(Metric::CpuUserPct).and_then(|user| mean_of(&user.p90, &steps))
                    });
                if let Some(cpu) = cpu {
                    predicted_points += add(
                        CPU_FACTOR,
                        FactorSource::Predicted,
                        cpu,
                        &tables.cpu_predicted,
                    );
                }
                let predicted_rows: [(Metric, &Tiers); 2] = [
                    (Metric::MemUsedPct, &tables.memory_predicted),
                    (Metric::CpuIowaitPct, &tables.iowait_predicted),
                ];
                for (metric, tiers) in predicted_rows {
                    if let Some(mean) = series(metric).and_then(|q| mean_of(&q.p90, &steps)) {
                        predicted_points +=
                            add(metric.name(), FactorSource::Predicted, mean, tiers);
                    }
                }
                ForecastStatus::Used
            }
        }
    };

    factors.sort_by(|a, b| b.points.total_cmp(&a.points));
    let score = (config.current_weight * current_points
        + config.predicted_weight * predicted_points)
        .clamp(0.0, 100.0);
    Assessment {
        score,
        current: current_points,
        predicted: predicted_points,
        factors,
        forecast_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NOW, forecast};

    fn sample(values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        values.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn factor<'a>(
        assessment: &'a Assessment,
        metric: &str,
        source: FactorSource,
    ) -> &'a RiskFactor {
        assessment
            .factors
            .iter()
            .find(|f| f.metric == metric && f.source == source)
            .unwrap_or_else(|| panic!("no {metric} {source:?} factor in {:?}", assessment.factors))
    }

    /// The first tier reached applies, the threshold itself included.
    #[test]
    fn first_tier_reached_applies() {
        assert_eq!(points(&CPU_CURRENT, 99.0), 60.0);
        assert_eq!(points(&CPU_CURRENT, 98.0), 60.0);
        assert_eq!(points(&CPU_CURRENT, 97.99), 40.0);
        assert_eq!(points(&CPU_CURRENT, 80.0), 15.0);
        assert_eq!(points(&CPU_CURRENT, 79.99), 0.0);
        assert_eq!(points(&LOAD_CURRENT, 8.0), 10.0);
    }

    /// The per-profile memory tables are the ones in the module doc.
    #[test]
    fn memory_tiers_per_profile_match_the_documented_table() {
        let table = [
            (Profile::Generic, [98.0, 95.0, 90.0, 85.0], [98.0, 95.0]),
            (
                Profile::ConductorMgmt,
                [98.0, 95.0, 90.0, 85.0],
                [98.0, 95.0],
            ),
            (Profile::DataIngest, [98.0, 95.0, 90.0, 85.0], [98.0, 95.0]),
            (Profile::MlCompute, [99.6, 99.0, 98.0, 97.0], [99.6, 99.0]),
            (Profile::Database, [99.8, 99.5, 99.0, 98.5], [99.8, 99.5]),
            (Profile::WebApi, [97.0, 92.5, 85.0, 77.5], [97.0, 92.5]),
            (
                Profile::RiskAnalytics,
                [99.0, 97.5, 95.0, 92.5],
                [99.0, 97.5],
            ),
        ];
        for (profile, current, predicted) in table {
            let got: Vec<f64> = memory_tiers(profile, &MEMORY_CURRENT_GENERIC)
                .iter()
                .map(|t| t.0)
                .collect();
            assert_eq!(got, current, "{profile} current");
            let got: Vec<f64> = memory_tiers(profile, &MEMORY_PREDICTED_GENERIC)
                .iter()
                .map(|t| t.0)
                .collect();
            assert_eq!(got, predicted, "{profile} predicted");
            // The profile's limit is where the original's ≥90 tier (15 points) begins.
            let tiers = memory_tiers(profile, &MEMORY_CURRENT_GENERIC);
            let limit = profile.memory_limit_pct().min(99.0);
            assert_eq!(points(&tiers, limit), 15.0, "{profile}");
        }
    }

    /// Generic, hand-computed: idle 3 → cpu 97 (40), mem 91 (15), iowait 12 (15), swap 30
    /// (20), load 9 (10) = 100 current; forecast idle p10 mean 4 → cpu 96 (25), mem p90
    /// mean 96 (20), iowait 25 (15) = 60 predicted; 0.7·100 + 0.3·60 = 88.
    #[test]
    fn generic_hand_computed() {
        let current = sample(&[
            ("cpu_idle_pct", 3.0),
            ("cpu_user_pct", 50.0),
            ("mem_used_pct", 91.0),
            ("cpu_iowait_pct", 12.0),
            ("swap_used_pct", 30.0),
            ("load_average", 9.0),
        ]);
        let forecast = forecast(
            96,
            &[
                ("cpu_idle_pct", vec![4.0; 96]),
                ("mem_used_pct", vec![96.0; 96]),
                ("cpu_iowait_pct", vec![25.0; 96]),
            ],
        );
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &current,
            Some(&forecast),
            NOW,
        );
        assert_eq!(a.current, 100.0);
        assert_eq!(a.predicted, 60.0);
        assert!((a.score - 88.0).abs() < 1e-9, "{}", a.score);
        assert_eq!(a.forecast_status, ForecastStatus::Used);
        assert_eq!(factor(&a, "cpu", FactorSource::Current).value, 97.0);
        assert_eq!(factor(&a, "cpu", FactorSource::Predicted).points, 25.0);
        assert_eq!(
            factor(&a, "mem_used_pct", FactorSource::Predicted).value,
            96.0
        );
        assert_eq!(a.factors[0].points, 40.0, "most points first");
    }

    /// Predicted values are the mean p90 of the first 6 steps only (30 min at 300 s): the
    /// spike at step 7 does not count, and busy CPU uses idle's p10.
    #[test]
    fn predicted_window_is_the_first_30_minutes() {
        let mut memory = vec![90.0, 92.0, 94.0, 96.0, 98.0, 100.0];
        memory.extend(vec![100.0; 90]);
        let mut f = forecast(
            96,
            &[("mem_used_pct", memory), ("cpu_idle_pct", vec![50.0; 96])],
        );
        // idle p10 = 1 while p90 = 50: busy p90 is 100 - 1 = 99.
        f.metrics.get_mut("cpu_idle_pct").unwrap().p10 = vec![1.0; 96];
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &BTreeMap::new(),
            Some(&f),
            NOW,
        );
        // mean(90..100 step 2) = 95 → 20 points; cpu 99 → 40 points.
        assert_eq!(
            factor(&a, "mem_used_pct", FactorSource::Predicted).value,
            95.0
        );
        assert_eq!(factor(&a, "cpu", FactorSource::Predicted).value, 99.0);
        assert_eq!(a.predicted, 60.0);
        assert!((a.score - 18.0).abs() < 1e-9);
        // A 60-minute window takes 12 steps: mean(90,92,94,96,98,100,100×6) = 97.5.
        let wide = RiskConfig {
            predicted_window_seconds: 3600,
            ..RiskConfig::default()
        };
        let a = assess(&wide, Profile::Generic, &BTreeMap::new(), Some(&f), NOW);
        assert_eq!(
            factor(&a, "mem_used_pct", FactorSource::Predicted).value,
            97.5
        );
    }

    /// Steps that ended before the sample are skipped; a forecast with none left is stale.
    #[test]
    fn old_steps_are_skipped_and_old_forecasts_ignored() {
        let f = forecast(
            8,
            &[(
                "mem_used_pct",
                vec![99.0, 99.0, 80.0, 80.0, 80.0, 80.0, 80.0, 80.0],
            )],
        );
        // Two steps (600 s) later, the window is steps 2..8: all 80 → 0 points.
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &BTreeMap::new(),
            Some(&f),
            NOW + 600,
        );
        assert_eq!(
            factor(&a, "mem_used_pct", FactorSource::Predicted).value,
            80.0
        );
        assert_eq!(a.forecast_status, ForecastStatus::Used);
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &BTreeMap::new(),
            Some(&f),
            NOW + 8 * 300,
        );
        assert_eq!(a.forecast_status, ForecastStatus::Stale);
        assert_eq!(a.predicted, 0.0);
        assert!(a.factors.is_empty());
    }

    /// Without a forecast predicted is 0 and only current factors appear; cpu falls back to
    /// cpu_user when idle is absent. 0.7 · (25 + 50) = 52.5.
    #[test]
    fn no_forecast_scores_current_only() {
        let current = sample(&[("cpu_user_pct", 92.0), ("mem_used_pct", 98.5)]);
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &current,
            None,
            NOW,
        );
        assert_eq!(a.forecast_status, ForecastStatus::Missing);
        assert_eq!(a.predicted, 0.0);
        assert!(a.factors.iter().all(|f| f.source == FactorSource::Current));
        assert_eq!(factor(&a, "cpu", FactorSource::Current).value, 92.0);
        assert!((a.score - 52.5).abs() < 1e-9);
    }

    /// The score is clamped to 100 (raw current can reach 200).
    #[test]
    fn score_is_clamped() {
        let current = sample(&[
            ("cpu_idle_pct", 0.0),
            ("mem_used_pct", 99.0),
            ("cpu_iowait_pct", 40.0),
            ("swap_used_pct", 60.0),
            ("load_average", 20.0),
        ]);
        let a = assess(
            &RiskConfig::default(),
            Profile::Generic,
            &current,
            None,
            NOW,
        );
        assert_eq!(a.current, 200.0);
        assert_eq!(a.score, 100.0);
    }

    /// The same memory, 93% now and 96% predicted, scores per profile as the tables say.
    #[test]
    fn memory_points_per_profile_hand_computed() {
        let current = sample(&[("mem_used_pct", 93.0)]);
        let f = forecast(12, &[("mem_used_pct", vec![96.0; 12])]);
        // (profile, current points, predicted points, score = 0.7c + 0.3p)
        let expected = [
            (Profile::Generic, 15.0, 20.0, 16.5),
            (Profile::ConductorMgmt, 15.0, 20.0, 16.5),
            (Profile::DataIngest, 15.0, 20.0, 16.5),
            (Profile::MlCompute, 0.0, 0.0, 0.0),
            (Profile::Database, 0.0, 0.0, 0.0),
            (Profile::WebApi, 30.0, 20.0, 27.0),
            (Profile::RiskAnalytics, 10.0, 0.0, 7.0),
        ];
        for (profile, current_points, predicted_points, score) in expected {
            let a = assess(&RiskConfig::default(), profile, &current, Some(&f), NOW);
            assert_eq!(a.current, current_points, "{profile} current");
            assert_eq!(a.predicted, predicted_points, "{profile} predicted");
            assert!((a.score - score).abs() < 1e-9, "{profile}: {}", a.score);
        }
        // Near the top: 99.7% now, 99.9% predicted.
        let current = sample(&[("mem_used_pct", 99.7)]);
        let f = forecast(12, &[("mem_used_pct", vec![99.9; 12])]);
        let expected = [
            (Profile::MlCompute, 50.0, 30.0),
            (Profile::Database, 30.0, 30.0),
            (Profile::WebApi, 50.0, 30.0),
            (Profile::RiskAnalytics, 50.0, 30.0),
            (Profile::Generic, 50.0, 30.0),
        ];
        for (profile, current_points, predicted_points) in expected {
            let a = assess(&RiskConfig::default(), profile, &current, Some(&f), NOW);
            assert_eq!(a.current, current_points, "{profile} current");
            assert_eq!(a.predicted, predicted_points, "{profile} predicted");
        }
    }

    /// A web server at 86% memory (above its limit of 85) scores 15 current points; a
    /// database at 99.2% scores 15 and at 98.4% nothing; ML at 97.5% scores 10.
    #[test]
    fn profile_limits_mark_the_15_point_tier() {
        let cases = [
            (Profile::WebApi, 86.0, 15.0),
            (Profile::WebApi, 84.0, 10.0),
            (Profile::Database, 99.2, 15.0),
            (Profile::Database, 98.4, 0.0),
            (Profile::MlCompute, 97.5, 10.0),
            (Profile::RiskAnalytics, 96.0, 15.0),
            (Profile::Generic, 86.0, 10.0),
        ];
        for (profile, memory, expected) in cases {
            let a = assess(
                &RiskConfig::default(),
                profile,
                &sample(&[("mem_used_pct", memory)]),
                None,
                NOW,
            );
            assert_eq!(a.current, expected, "{profile} at {memory}");
        }
    }

    /// A database's normal iowait (25 % now, 23 % predicted) and a risk_analytics server's
    /// normal load (12) score nothing; the same values on a generic
    /// server, or with `profile_normal_sigmas = 0`, score the original's points; a database
    /// in trouble (iowait 45 %) still scores.
    #[test]
    fn profile_normal_is_not_a_risk() {
        let off = RiskConfig {
            profile_normal_sigmas: 0.0,
            ..RiskConfig::default()
        };
        let iowait = sample(&[("cpu_iowait_pct", 25.0)]);
        let f = forecast(12, &[("cpu_iowait_pct", vec![23.0; 12])]);
        let db = assess(
            &RiskConfig::default(),
            Profile::Database,
            &iowait,
            Some(&f),
            NOW,
        );
        assert_eq!((db.current, db.predicted), (0.0, 0.0), "{:?}", db.factors);
        for (config, profile) in [
            (RiskConfig::default(), Profile::Generic),
            (off, Profile::Database),
        ] {
            let a = assess(&config, profile, &iowait, Some(&f), NOW);
            assert_eq!((a.current, a.predicted), (25.0, 15.0), "{profile}");
        }
        let trouble = sample(&[("cpu_iowait_pct", 45.0)]);
        let db = assess(
            &RiskConfig::default(),
            Profile::Database,
            &trouble,
            None,
            NOW,
        );
        assert_eq!(db.current, 40.0);

        let load = sample(&[("load_average", 12.0)]);
        let risk = assess(
            &RiskConfig::default(),
            Profile::RiskAnalytics,
            &load,
            None,
            NOW,
        );
        assert_eq!(risk.current, 0.0, "{:?}", risk.factors);
        let generic = assess(&RiskConfig::default(), Profile::Generic, &load, None, NOW);
        assert_eq!(generic.current, 20.0);
    }

    /// CPU follows the profile's normal at the hour: 100 % busy at 17 h UTC is a
    /// risk_analytics server's evening peak (its normal top reaches 100 %: no CPU points)
    /// but 60 points on a generic server; at 03 h its top is 82 %, so 99 % busy scores as
    /// anywhere; with `profile_normal_sigmas = 0` the evening scores too.
    #[test]
    fn cpu_follows_the_profile_normal_at_the_hour() {
        let midnight = NOW - NOW.rem_euclid(86_400);
        let (evening, night) = (midnight + 17 * 3600, midnight + 3 * 3600);
        let config = RiskConfig::default();
        let full = sample(&[("cpu_idle_pct", 0.0)]);
        let risk = assess(&config, Profile::RiskAnalytics, &full, None, evening);
        assert_eq!(risk.current, 0.0, "{:?}", risk.factors);
        let generic = assess(&config, Profile::Generic, &full, None, evening);
        assert_eq!(generic.current, 60.0);
        let off = RiskConfig {
            profile_normal_sigmas: 0.0,
            ..config
        };
        assert_eq!(
            assess(&off, Profile::RiskAnalytics, &full, None, evening).current,
            60.0
        );
        let busy = sample(&[("cpu_idle_pct", 1.0)]);
        for profile in [Profile::RiskAnalytics, Profile::Generic] {
            let a = assess(&config, profile, &busy, None, night);
            assert_eq!(a.current, 60.0, "{profile}");
        }
    }

    /// Steps needed for a window, rounding up.
    #[test]
    fn steps_in_rounds_up() {
        assert_eq!(steps_in(1800, 300), 6);
        assert_eq!(steps_in(1800, 3600), 1);
        assert_eq!(steps_in(1900, 300), 7);
        assert_eq!(steps_in(1800, 60), 30);
    }
}
