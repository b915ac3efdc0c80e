//! `[risk]`, `[alerts]` and `[summary]`: the risk score, the one alert scale and the alert
//! router's rules, the fleet summary. The file's quantile name becomes a [`Quantile`].

use super::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[risk]`: how the risk scorer blends the present and the forecast (catalog §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// Minutes of forecast whose p90 is averaged into the predicted state (the original's
    /// 30 minutes = 6 steps of 300 s).
    pub predicted_window_minutes: u32,
    /// Weight of the current points (the original's 0.7).
    pub current_weight: f64,
    /// Weight of the predicted points (the original's 0.3).
    pub predicted_weight: f64,
    /// Standard deviations above a profile's baseline mean (catalog §2), scaled by its
    /// diurnal factor at the hour (§3), where its CPU, iowait, swap and load tiers start;
    /// 0 keeps the original's tables for every profile.
    pub profile_normal_sigmas: f64,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            predicted_window_minutes: 30,
            current_weight: 0.7,
            predicted_weight: 0.3,
            profile_normal_sigmas: 2.5,
        }
    }
}

impl RiskSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            (1..=1440).contains(&self.predicted_window_minutes),
            "risk.predicted_window_minutes",
            || format!("{} is outside 1–1440", self.predicted_window_minutes),
        );
        for (key, weight) in [
            ("risk.current_weight", self.current_weight),
            ("risk.predicted_weight", self.predicted_weight),
        ] {
            problems.check((0.0..=1.0).contains(&weight), key, || {
                format!("{weight} is outside 0–1")
            });
        }
        let sum = self.current_weight + self.predicted_weight;
        problems.check((sum - 1.0).abs() < 1e-9, "risk.predicted_weight", || {
            format!("risk.current_weight + risk.predicted_weight is {sum}, not 1")
        });
        check_sigmas(
            problems,
            "risk.profile_normal_sigmas",
            self.profile_normal_sigmas,
        );
    }
}

/// A number of standard deviations above a profile's normal: 0 (off) to 10.
fn check_sigmas(problems: &mut Problems, key: &str, sigmas: f64) {
    problems.check((0.0..=10.0).contains(&sigmas), key, || {
        format!("{sigmas} is outside 0–10")
    });
}

/// Which forecast quantile the predictive alerts test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// 10th percentile.
    P10,
    /// Median (the original's choice).
    P50,
    /// 90th percentile.
    P90,
}

impl Quantile {
    /// Every quantile a forecast carries.
    pub const ALL: [Quantile; 3] = [Quantile::P10, Quantile::P50, Quantile::P90];

    /// This quantile's values in `series`.
    pub fn of(self, series: &crate::wire::QuantileSeries) -> &[f32] {
        match self {
            Quantile::P10 => &series.p10,
            Quantile::P50 => &series.p50,
            Quantile::P90 => &series.p90,
        }
    }

    /// `p10`, `p50` or `p90`.
    pub fn name(self) -> &'static str {
        match self {
            Quantile::P10 => "p10",
            Quantile::P50 => "p50",
            Quantile::P90 => "p90",
        }
    }
}

impl std::str::FromStr for Quantile {
    type Err = ();

    fn from_str(name: &str) -> Result<Quantile, ()> {
        Quantile::ALL
            .into_iter()
            .find(|quantile| quantile.name() == name)
            .ok_or(())
    }
}

/// The warning and critical values of one predictive metric alert.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricThresholds {
    /// Value from which the forecast raises a warning.
    pub warning: f64,
    /// Value from which it is critical.
    pub critical: f64,
}

/// `[alerts]` as the file and the environment say it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlertSettings {
    /// See [`AlertSettings::watch`].
    pub watch: f64,
    /// See [`AlertSettings::warning`].
    pub warning: f64,
    /// See [`AlertSettings::critical`].
    pub critical: f64,
    /// See [`AlertSettings::hysteresis_points`].
    pub hysteresis_points: f64,
    /// See [`AlertSettings::metric_hysteresis`].
    pub metric_hysteresis: f64,
    /// See [`AlertSettings::min_dwell_seconds`].
    pub min_dwell_seconds: u64,
    /// See [`AlertSettings::raise_after_seconds`].
    pub raise_after_seconds: u64,
    /// See [`AlertSettings::predictive_steps`].
    pub predictive_steps: u32,
    /// A quantile name.
    pub predictive_quantile: String,
    /// A quantile name.
    pub critical_quantile: String,
    /// See [`AlertSettings::profile_normal_sigmas`].
    pub profile_normal_sigmas: f64,
    /// See [`AlertSettings::metrics`].
    pub metrics: BTreeMap<String, MetricThresholds>,
}

impl Default for RawAlertSettings {
    fn default() -> Self {
        let defaults = AlertSettings::default();
        Self {
            watch: defaults.watch,
            warning: defaults.warning,
            critical: defaults.critical,
            hysteresis_points: defaults.hysteresis_points,
            metric_hysteresis: defaults.metric_hysteresis,
            min_dwell_seconds: defaults.min_dwell_seconds,
            raise_after_seconds: defaults.raise_after_seconds,
            predictive_steps: defaults.predictive_steps,
            predictive_quantile: defaults.predictive_quantile.name().into(),
            critical_quantile: defaults.critical_quantile.name().into(),
            profile_normal_sigmas: defaults.profile_normal_sigmas,
            metrics: defaults.metrics,
        }
    }
}

/// `[alerts]`, validated: the one alert scale, the alert router's hysteresis and dwell, and
/// the predictive per-metric thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertSettings {
    /// Lowest risk score that is `watch`.
    pub watch: f64,
    /// Lowest risk score that is `warning`.
    pub warning: f64,
    /// Lowest risk score that is `critical`.
    pub critical: f64,
    /// To go down from a level, the value must fall this far below that level's threshold.
    pub hysteresis_points: f64,
    /// The same for the predictive metric alerts, in the metric's own unit (percentage
    /// points for percentages): a predicted peak must fall this far below a metric's
    /// threshold to count as having left its level.
    pub metric_hysteresis: f64,
    /// Seconds (message time) the value must stay below a level's threshold minus the
    /// hysteresis before the alert steps down from it or resolves.
    pub min_dwell_seconds: u64,
    /// Seconds (message time) the value must stay at or above a higher level's threshold
    /// before the alert rises to it; 0 rises on the first message.
    pub raise_after_seconds: u64,
    /// Forecast steps a predictive metric alert looks at (the original's 12 = 1 hour).
    pub predictive_steps: u32,
    /// Quantile the predictive metric alerts test against the warning value.
    pub predictive_quantile: Quantile,
    /// Quantile that must reach the critical value for a predictive metric alert to be
    /// critical (when it is lower than `predictive_quantile`, an upper band that reaches
    /// critical while this one does not makes a warning).
    pub critical_quantile: Quantile,
    /// Profile-aware predictive thresholds ([`crate::catalog::profile_thresholds`]):
    /// memory follows the profile's limit, and iowait, swap, disk and cpu_user start at the
    /// profile's baseline mean plus this many standard deviations (scaled by its diurnal
    /// factor at the hour) when that is higher; 0 keeps the same thresholds for every
    /// profile.
    pub profile_normal_sigmas: f64,
    /// Predictive metric thresholds: metric name (one of the 14) → warning and critical
    /// values. Giving this table replaces the whole default set.
    pub metrics: BTreeMap<String, MetricThresholds>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        let thresholds = |warning, critical| MetricThresholds { warning, critical };
        Self {
            watch: 20.0,
            warning: 40.0,
            critical: 70.0,
            // Tuned with `fleetcast evaluate alerts` (README, "Alert evaluation"): raise at
            // the first score at a level, step down only 10 points under it after 30 min.
            hysteresis_points: 10.0,
            metric_hysteresis: 3.0,
            min_dwell_seconds: 1800,
            raise_after_seconds: 0,
            predictive_steps: 12,
            predictive_quantile: Quantile::P90,
            critical_quantile: Quantile::P50,
            profile_normal_sigmas: 2.5,
            // Catalog §5 "Alerts": (critical, warning) per metric.
            metrics: BTreeMap::from([
                ("cpu_user_pct".to_string(), thresholds(85.0, 95.0)),
                ("mem_used_pct".to_string(), thresholds(90.0, 98.0)),
                ("cpu_iowait_pct".to_string(), thresholds(20.0, 30.0)),
                ("swap_used_pct".to_string(), thresholds(25.0, 50.0)),
                ("disk_usage_pct".to_string(), thresholds(85.0, 95.0)),
            ]),
        }
    }
}

impl AlertSettings {
    /// The one alert scale these settings define.
    pub fn scale(&self) -> crate::levels::Scale {
        crate::levels::Scale {
            watch: self.watch,
            warning: self.warning,
            critical: self.critical,
        }
    }
}

impl RawAlertSettings {
    pub(super) fn validate(self, problems: &mut Problems) -> AlertSettings {
        problems.check(
            0.0 < self.watch
                && self.watch < self.warning
                && self.warning < self.critical
                && self.critical <= 100.0,
            "alerts.watch",
            || {
                format!(
                    "0 < watch ({}) < warning ({}) < critical ({}) <= 100 does not hold",
                    self.watch, self.warning, self.critical
                )
            },
        );
        problems.check(
            (0.0..=self.watch).contains(&self.hysteresis_points),
            "alerts.hysteresis_points",
            || {
                format!(
                    "{} is outside 0–{} (alerts.watch)",
                    self.hysteresis_points, self.watch
                )
            },
        );
        problems.check(
            self.metric_hysteresis.is_finite() && self.metric_hysteresis >= 0.0,
            "alerts.metric_hysteresis",
            || format!("{} is not a number of at least 0", self.metric_hysteresis),
        );
        problems.check(
            self.min_dwell_seconds <= 7 * 86_400,
            "alerts.min_dwell_seconds",
            || format!("{} is above a week", self.min_dwell_seconds),
        );
        problems.check(
            self.raise_after_seconds <= 86_400,
            "alerts.raise_after_seconds",
            || format!("{} is above a day", self.raise_after_seconds),
        );
        problems.check(
            (1..=10_000).contains(&self.predictive_steps),
            "alerts.predictive_steps",
            || format!("{} is outside 1–10000", self.predictive_steps),
        );
        let mut quantile = |key: &str, name: &str| {
            name.parse().unwrap_or_else(|()| {
                problems.add(key, format!("`{name}` is not one of p10, p50, p90"));
                Quantile::P50
            })
        };
        let predictive_quantile = quantile("alerts.predictive_quantile", &self.predictive_quantile);
        let critical_quantile = quantile("alerts.critical_quantile", &self.critical_quantile);
        check_sigmas(
            problems,
            "alerts.profile_normal_sigmas",
            self.profile_normal_sigmas,
        );
        for (metric, thresholds) in &self.metrics {
            let key = format!("alerts.metrics.{metric}");
            problems.check(
                crate::catalog::Metric::from_name(metric).is_some(),
                &key,
                || format!("`{metric}` is not a metric"),
            );
            problems.check(
                thresholds.warning.is_finite()
                    && thresholds.critical.is_finite()
                    && thresholds.warning < thresholds.critical,
                &key,
                || {
                    format!(
                        "warning ({}) must be below critical ({})",
                        thresholds.warning, thresholds.critical
                    )
                },
            );
        }
        AlertSettings {
            watch: self.watch,
            warning: self.warning,
            critical: self.critical,
            hysteresis_points: self.hysteresis_points,
            metric_hysteresis: self.metric_hysteresis,
            min_dwell_seconds: self.min_dwell_seconds,
            raise_after_seconds: self.raise_after_seconds,
            predictive_steps: self.predictive_steps,
            predictive_quantile,
            critical_quantile,
            profile_normal_sigmas: self.profile_normal_sigmas,
            metrics: self.metrics,
        }
    }
}

/// `[summary]`: the fleet summary on `summary.fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummarySettings {
    /// Wall-clock seconds between summaries (one is sent only when something changed).
    pub interval_seconds: u64,
    /// How many of the highest risks the summary lists.
    pub top: u32,
}

impl Default for SummarySettings {
    fn default() -> Self {
        Self {
            interval_seconds: 10,
            top: 10,
        }
    }
}

impl SummarySettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            self.interval_seconds >= 1,
            "summary.interval_seconds",
            || "must be at least 1".into(),
        );
        problems.check((1..=1000).contains(&self.top), "summary.top", || {
            format!("{} is outside 1–1000", self.top)
        });
    }
}
