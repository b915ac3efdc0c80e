//! The fleet summary (catalog §5 "Environment metrics" and the prediction output's summary),
//! as plain functions over the latest score and forecast of every server.
//!
//! Per server and forecast, for each "high is bad" metric with its (warning, critical) pair
//! (cpu_user 80/90, cpu_sys 50/70, iowait 20/40, mem 85/95, swap 10/30, disk 80/90,
//! java 70/85), and for cpu_idle as "low is bad" (< 20, < 10, tested on p50 only):
//!
//! - **30 minutes**: over the first 6 remaining steps (30 minutes of `step_seconds`), +0.25
//!   when the max p50 exceeds critical or the max p90 exceeds critical + 5, else +0.10 when
//!   the max p50 exceeds warning or the max p90 exceeds warning + 5;
//! - **8 hours**: the same test over every remaining step up to 8 hours, +0.20 / +0.08, only
//!   when at least 20 steps remain.
//!
//! Each server's sum is capped at 1; `prob_30m` and `prob_8h` are the means over servers
//! with a usable forecast (0 when none has one), `high_risk_servers` counts servers whose
//! 30-minute sum exceeds 0.5, and `fleet_health` is critical above a `prob_30m` of 0.6,
//! warning above 0.3, else healthy. Counts per level, the average and the top risks come
//! from the servers' risk scores on the one scale.

use super::scoring::{remaining_steps, steps_in};
use crate::catalog::Metric;
use crate::levels::{Level, Scale};
use crate::wire::{FleetSummary, Forecast, SCHEMA_VERSION};
use std::collections::BTreeMap;

/// "High is bad" metrics with their (warning, critical) values (catalog §5).
pub const HIGH_IS_BAD: [(Metric, f64, f64); 7] = [
    (Metric::CpuUserPct, 80.0, 90.0),
    (Metric::CpuSysPct, 50.0, 70.0),
    (Metric::CpuIowaitPct, 20.0, 40.0),
    (Metric::MemUsedPct, 85.0, 95.0),
    (Metric::SwapUsedPct, 10.0, 30.0),
    (Metric::DiskUsagePct, 80.0, 90.0),
    (Metric::JavaCpuPct, 70.0, 85.0),
];

/// cpu_idle_pct is "low is bad": warning below 20, critical below 10 (p50 only).
pub const IDLE_WARNING: f64 = 20.0;
/// See [`IDLE_WARNING`].
pub const IDLE_CRITICAL: f64 = 10.0;

/// A server's 30-minute and 8-hour incident probabilities from one forecast at `now_s`.
/// `None` when no step of the forecast is left.
pub fn incident_probability(forecast: &Forecast, now_s: i64) -> Option<(f64, f64)> {
    let short = remaining_steps(forecast, now_s, steps_in(30 * 60, forecast.step_seconds));
    if short.is_empty() {
        return None;
    }
    let long = remaining_steps(forecast, now_s, steps_in(8 * 3600, forecast.step_seconds));
    let probability = |steps: &[usize], critical_points: f64, warning_points: f64| {
        let max_of = |values: &[f32]| {
            steps
                .iter()
                .filter_map(|&index| values.get(index))
                .map(|&value| f64::from(value))
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let mut sum = 0.0;
        for (metric, warning, critical) in HIGH_IS_BAD {
            let Some(series) = forecast.metrics.get(metric.name()) else {
                continue;
            };
            let (p50, p90) = (max_of(&series.p50), max_of(&series.p90));
            if p50 > critical || p90 > critical + 5.0 {
                sum += critical_points;
            } else if p50 > warning || p90 > warning + 5.0 {
                sum += warning_points;
            }
        }
        if let Some(idle) = forecast.metrics.get(Metric::CpuIdlePct.name()) {
            let lowest = steps
                .iter()
                .filter_map(|&index| idle.p50.get(index))
                .map(|&value| f64::from(value))
                .fold(f64::INFINITY, f64::min);
            if lowest < IDLE_CRITICAL {
                sum += critical_points;
            } else if lowest < IDLE_WARNING {
                sum += warning_points;
            }
        }
        f64::min(sum, 1.0)
    };
    let prob_30m = probability(&short, 0.25, 0.10);
    let prob_8h = if long.len() >= 20 {
        probability(&long, 0.20, 0.08)
    } else {
        0.0
    };
    Some((prob_30m, prob_8h))
}

/// One server as the summary sees it.
#[derive(Debug, Clone, Copy)]
pub struct ServerView<'a> {
    /// Server name.
    pub server: &'a str,
    /// Latest risk score.
    pub score: f64,
    /// Latest forecast, if any.
    pub forecast: Option<&'a Forecast>,
    /// Time of the latest sample, unix seconds (the "now" of the forecast's steps).
    pub now_s: i64,
}

/// The fleet summary of `servers` at wall time `at_ms`, listing the `top` highest risks.
pub fn summarize<'a>(
    servers: impl IntoIterator<Item = ServerView<'a>>,
    scale: &Scale,
    top: usize,
    at_ms: i64,
) -> FleetSummary {
    let mut counts: BTreeMap<String, u32> = Level::ALL
        .iter()
        .map(|level| (level.name().to_string(), 0))
        .collect();
    let mut risks = Vec::new();
    let (mut sum_30m, mut sum_8h, mut forecasts, mut high_risk) = (0.0, 0.0, 0u32, 0u32);
    for view in servers {
        *counts
            .entry(scale.level_of(view.score).name().to_string())
            .or_default() += 1;
        risks.push((view.server.to_string(), view.score));
        if let Some((prob_30m, prob_8h)) = view
            .forecast
            .and_then(|forecast| incident_probability(forecast, view.now_s))
        {
            sum_30m += prob_30m;
            sum_8h += prob_8h;
            forecasts += 1;
            if prob_30m > 0.5 {
                high_risk += 1;
            }
        }
    }
    let servers = u32::try_from(risks.len()).unwrap_or(u32::MAX);
    let avg_risk = if risks.is_empty() {
        0.0
    } else {
        risks.iter().map(|(_, score)| score).sum::<f64>() / risks.len() as f64
    };
    risks.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    risks.truncate(top);
    let mean = |sum: f64| {
        if forecasts == 0 {
            0.0
        } else {
            sum / f64::from(forecasts)
        }
    };
    let prob_30m = mean(sum_30m);
    FleetSummary {
        v: SCHEMA_VERSION,
        at_ms,
        servers,
        prob_30m,
        prob_8h: mean(sum_8h),
        fleet_health: fleet_health(prob_30m).to_string(),
        counts,
        top_risks: risks,
        avg_risk,
        high_risk_servers: high_risk,
    }
}

/// `critical` above a 30-minute probability of 0.6, `warning` above 0.3, else `healthy`.
pub fn fleet_health(prob_30m: f64) -> &'static str {
    if prob_30m > 0.6 {
        "critical"
    } else if prob_30m > 0.3 {
        "warning"
    } else {
        "healthy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::forecast;

    const NOW: i64 = 1_700_000_000;

    /// Hand-computed: mem p50 peaks at 96 in the first 6 steps (critical, +0.25), iowait p90
    /// 26 (> 20 + 5, warning, +0.10), idle p50 15 (warning, +0.10) → 0.45 in 30 min; over 96
    /// steps the same three plus swap 40 later on (critical) → 0.20 + 0.08 + 0.08 + 0.20.
    #[test]
    fn probability_hand_computed() {
        let mut swap = vec![0.0; 96];
        swap[50] = 40.0;
        let mut f = forecast(
            96,
            &[
                ("mem_used_pct", vec![96.0; 96]),
                ("cpu_iowait_pct", vec![18.0; 96]),
                ("cpu_idle_pct", vec![15.0; 96]),
                ("swap_used_pct", swap),
            ],
        );
        f.metrics.get_mut("cpu_iowait_pct").unwrap().p90 = vec![26.0; 96];
        let (prob_30m, prob_8h) = incident_probability(&f, NOW).unwrap();
        assert!((prob_30m - 0.45).abs() < 1e-9, "{prob_30m}");
        assert!((prob_8h - 0.56).abs() < 1e-9, "{prob_8h}");
    }

    /// Fewer than 20 remaining steps give no 8-hour probability; sums cap at 1; a forecast
    /// with nothing left gives none.
    #[test]
    fn short_forecasts_and_caps() {
        let hot = [
            ("cpu_user_pct", vec![99.0; 10]),
            ("cpu_sys_pct", vec![99.0; 10]),
            ("mem_used_pct", vec![99.0; 10]),
            ("swap_used_pct", vec![99.0; 10]),
            ("disk_usage_pct", vec![99.0; 10]),
        ];
        let f = forecast(10, &hot);
        assert_eq!(incident_probability(&f, NOW), Some((1.0, 0.0)));
        assert_eq!(incident_probability(&f, NOW + 3000), None);
    }

    /// Counts per level, average, top risks (highest first, cut at `top`) and fleet health
    /// from the mean 30-minute probability.
    #[test]
    fn summary_counts_and_health() {
        let hot = forecast(
            96,
            &[
                ("mem_used_pct", vec![99.0; 96]),
                ("cpu_user_pct", vec![99.0; 96]),
                ("cpu_iowait_pct", vec![50.0; 96]),
            ],
        );
        let calm = forecast(96, &[("mem_used_pct", vec![30.0; 96])]);
        let views = [
            ServerView {
                server: "a",
                score: 75.0,
                forecast: Some(&hot),
                now_s: NOW,
            },
            ServerView {
                server: "b",
                score: 45.0,
                forecast: Some(&calm),
                now_s: NOW,
            },
            ServerView {
                server: "c",
                score: 10.0,
                forecast: None,
                now_s: NOW,
            },
            ServerView {
                server: "d",
                score: 20.0,
                forecast: None,
                now_s: NOW,
            },
        ];
        let summary = summarize(views, &Scale::default(), 2, 5);
        assert_eq!(summary.servers, 4);
        assert_eq!(summary.counts["critical"], 1);
        assert_eq!(summary.counts["warning"], 1);
        assert_eq!(summary.counts["watch"], 1);
        assert_eq!(summary.counts["healthy"], 1);
        assert_eq!(
            summary.top_risks,
            vec![("a".to_string(), 75.0), ("b".to_string(), 45.0)]
        );
        assert!((summary.avg_risk - 37.5).abs() < 1e-9);
        // a: 0.75 in 30 min, b: 0 → mean over the two with forecasts 0.375 → warning.
        assert!(
            (summary.prob_30m - 0.375).abs() < 1e-9,
            "{}",
            summary.prob_30m
        );
        assert_eq!(summary.fleet_health, "warning");
        assert_eq!(summary.high_risk_servers, 1);
        assert_eq!(fleet_health(0.61), "critical");
        assert_eq!(fleet_health(0.3), "healthy");
    }
}
