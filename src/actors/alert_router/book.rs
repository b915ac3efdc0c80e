//! The alert book: every server's open alerts, fed risk scores and forecasts, answering with
//! the alert events to publish. Plain logic, no bus; the actor in `mod.rs` does the I/O.
//!
//! Two kinds of alert, each a [`Ladder`] per server:
//!
//! - **risk** (`subject = "risk"`): the server's risk score on the one scale (healthy /
//!   watch / warning / critical), timed by the score's `sample_ms`.
//! - **predictive, per metric** (`subject = <metric>`): the forecast's chosen quantile
//!   (`alerts.predictive_quantile`, p90 by default; the original's p50) over the first
//!   `alerts.predictive_steps` steps against the metric's warning value, and
//!   `alerts.critical_quantile` (p50) against its critical value (an upper band at
//!   critical whose median is not makes a warning), timed by the forecast's `origin_s`. One ladder per server and metric, so one open alert per
//!   server and metric however many steps exceed (the original raised one per step); it
//!   steps down `alerts.metric_hysteresis` (metric units) under a value. The values are the
//!   server's profile-aware ones at the origin's UTC hour
//!   ([`crate::catalog::profile_thresholds`]): memory at the profile's limit, and cpu_user,
//!   iowait, swap and disk lifted above the profile's normal at the hour or the one
//!   before (a risk_analytics server's evening cpu_user, a database's iowait) when that is
//!   above the warning value.
//!
//! An alert's id is `<server>-<subject>-<opened_ms>`, the same on every event of its life.

use super::ladder::{Ladder, LadderConfig, OutOfOrder, Transition};
use crate::catalog::{Metric, MetricKind, Profile, profile_thresholds, utc_hour};
use crate::levels::{Level, Scale};
use crate::settings::{AlertSettings, Quantile};
use crate::wire::{AlertAction, AlertEvent, FactorSource, Forecast, RiskScore, SCHEMA_VERSION};
use std::collections::{BTreeMap, HashMap};

/// The `subject` of risk alerts.
pub const RISK_SUBJECT: &str = "risk";

/// One predictive metric alert's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRule {
    /// The metric.
    pub metric: Metric,
    /// Warning value.
    pub warning: f64,
    /// Critical value.
    pub critical: f64,
}

/// Everything the book needs from the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BookConfig {
    /// The one scale.
    pub scale: Scale,
    /// Ladder of the risk alerts.
    pub risk: LadderConfig,
    /// Hysteresis of the metric alerts, in the metric's unit (their thresholds are per rule).
    pub hysteresis: f64,
    /// Dwell of the metric alerts, ms.
    pub dwell_ms: i64,
    /// Raise wait of the metric alerts, ms.
    pub raise_after_ms: i64,
    /// Forecast steps the metric alerts look at.
    pub predictive_steps: usize,
    /// Quantile they test against the warning value.
    pub quantile: Quantile,
    /// Quantile that must reach the critical value for critical.
    pub critical_quantile: Quantile,
    /// Metric rules.
    pub rules: Vec<MetricRule>,
    /// Standard deviations above a profile's baseline mean where its rules start (0: off).
    pub profile_normal_sigmas: f64,
}

impl BookConfig {
    /// From validated settings.
    pub fn from_settings(settings: &AlertSettings) -> BookConfig {
        let scale = settings.scale();
        let dwell_ms = i64::try_from(settings.min_dwell_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let raise_after_ms = i64::try_from(settings.raise_after_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        BookConfig {
            scale,
            risk: LadderConfig {
                thresholds: vec![scale.watch, scale.warning, scale.critical],
                hysteresis: settings.hysteresis_points,
                dwell_ms,
                raise_after_ms,
            },
            hysteresis: settings.metric_hysteresis,
            dwell_ms,
            raise_after_ms,
            predictive_steps: settings.predictive_steps as usize,
            quantile: settings.predictive_quantile,
            critical_quantile: settings.critical_quantile,
            rules: settings
                .metrics
                .iter()
                .filter_map(|(name, thresholds)| {
                    Some(MetricRule {
                        metric: Metric::from_name(name)?,
                        warning: thresholds.warning,
                        critical: thresholds.critical,
                    })
                })
                .collect(),
            profile_normal_sigmas: settings.profile_normal_sigmas,
        }
    }

    /// `rule` for a server of `profile` at UTC `hour`: lifted above the profile's normal
    /// (module doc).
    pub fn rule_for(&self, rule: &MetricRule, profile: Profile, hour: u32) -> MetricRule {
        let (warning, critical) = profile_thresholds(
            rule.metric,
            rule.warning,
            rule.critical,
            profile,
            self.profile_normal_sigmas,
            hour,
        );
        MetricRule {
            metric: rule.metric,
            warning,
            critical,
        }
    }

    fn metric_ladder(&self, rule: &MetricRule) -> LadderConfig {
        LadderConfig {
            thresholds: vec![rule.warning, rule.critical],
            hysteresis: self.hysteresis,
            dwell_ms: self.dwell_ms,
            raise_after_ms: self.raise_after_ms,
        }
    }
}

/// The largest of `values` (−∞ for none).
fn peak_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Levels of a metric ladder: none, warning, critical.
const METRIC_LEVELS: [Level; 3] = [Level::Healthy, Level::Warning, Level::Critical];

#[derive(Debug)]
struct ServerAlerts {
    risk: Ladder,
    metrics: BTreeMap<Metric, Ladder>,
    /// Origin of the latest forecast, ms.
    forecast_ms: Option<i64>,
}

/// Every server's alert state.
#[derive(Debug)]
pub struct AlertBook {
    config: BookConfig,
    servers: HashMap<String, ServerAlerts>,
}

/// The subject token an event is published under: the higher of its new and previous
/// severity, so a consumer of `alerts.critical.>` sees every event that enters or leaves
/// critical (a resolve of a critical alert included).
pub fn publish_severity(event: &AlertEvent) -> &str {
    let rank = |name: &str| name.parse::<Level>().map_or(0, Level::rank);
    if rank(&event.previous) > rank(&event.severity) {
        &event.previous
    } else {
        &event.severity
    }
}

fn action(transition: &Transition) -> AlertAction {
    match (transition.from, transition.to) {
        (0, _) => AlertAction::Raise,
        (_, 0) => AlertAction::Resolve,
        (from, to) if to > from => AlertAction::Escalate,
        _ => AlertAction::Deescalate,
    }
}

fn format_value(metric: Metric, value: f64) -> String {
    match metric.kind() {
        MetricKind::Percent => format!("{value:.1}%"),
        _ => format!("{value:.1} {}", metric.unit()),
    }
}

fn minutes(ms: i64) -> String {
    format!("{} min", ms / 60_000)
}

fn event(
    server: &str,
    profile: &str,
    subject: &str,
    transition: &Transition,
    levels: &[Level],
    value: f64,
    reason: String,
) -> AlertEvent {
    let seconds = |ms: i64| ms as f64 / 1000.0;
    AlertEvent {
        v: SCHEMA_VERSION,
        id: format!("{server}-{subject}-{}", transition.opened_ms),
        server: server.to_string(),
        profile: profile.to_string(),
        subject: subject.to_string(),
        action: action(transition),
        severity: levels[transition.to].name().to_string(),
        previous: levels[transition.from].name().to_string(),
        value,
        reason,
        opened_ms: transition.opened_ms,
        at_ms: transition.at_ms,
        open_seconds: seconds(transition.at_ms - transition.opened_ms),
        previous_seconds: seconds(transition.at_ms - transition.from_since_ms),
    }
}

impl AlertBook {
    /// An empty book.
    pub fn new(config: BookConfig) -> AlertBook {
        AlertBook {
            config,
            servers: HashMap::new(),
        }
    }

    fn server(&mut self, server: &str) -> &mut ServerAlerts {
        let config = &self.config;
        self.servers
            .entry(server.to_string())
            .or_insert_with(|| ServerAlerts {
                risk: Ladder::new(&config.risk),
                metrics: BTreeMap::new(),
                forecast_ms: None,
            })
    }

    /// Replays one event from the alert history (oldest first) into the book, so a
    /// restarted router continues open alerts under their ids instead of raising them anew.
    /// Events of subjects or severities this configuration does not know are skipped.
    pub fn restore(&mut self, event: &AlertEvent) {
        let config = self.config.clone();
        let Ok(severity) = event.severity.parse::<Level>() else {
            return;
        };
        let alerts = self.server(&event.server);
        if event.subject == RISK_SUBJECT {
            alerts.risk =
                Ladder::restored(&config.risk, severity.rank(), event.at_ms, event.opened_ms);
            return;
        }
        let Some(rule) = Metric::from_name(&event.subject)
            .and_then(|metric| config.rules.iter().find(|rule| rule.metric == metric))
        else {
            return;
        };
        let Some(level) = METRIC_LEVELS.iter().position(|&level| level == severity) else {
            return;
        };
        let ladder_config = config.metric_ladder(rule);
        alerts.metrics.insert(
            rule.metric,
            Ladder::restored(&ladder_config, level, event.at_ms, event.opened_ms),
        );
        alerts.forecast_ms = Some(alerts.forecast_ms.unwrap_or(i64::MIN).max(event.at_ms));
    }

    /// Forgets everything about `server` (its partition went to another instance, or is
    /// rebuilt from its inputs).
    pub fn forget(&mut self, server: &str) {
        self.servers.remove(server);
    }

    /// Alerts open now (risk and metric).
    pub fn open_alerts(&self) -> usize {
        self.servers
            .values()
            .map(|alerts| {
                usize::from(alerts.risk.level() > 0)
                    + alerts.metrics.values().filter(|l| l.level() > 0).count()
            })
            .sum()
    }

    /// Feeds a (checked) risk score; returns the event it causes, if any.
    ///
    /// # Errors
    /// [`OutOfOrder`] when the score's sample is older than the server's latest.
    pub fn on_risk(&mut self, risk: &RiskScore) -> Result<Option<AlertEvent>, OutOfOrder> {
        let config = self.config.clone();
        let alerts = self.server(&risk.server);
        let Some(transition) = alerts
            .risk
            .observe(&config.risk, risk.score, risk.sample_ms)?
        else {
            return Ok(None);
        };
        let to = Level::ALL[transition.to];
        let from = Level::ALL[transition.from];
        let reason = if transition.to > transition.from {
            let factors: Vec<String> = risk
                .factors
                .iter()
                .filter(|factor| factor.points > 0.0)
                .take(3)
                .map(|factor| {
                    let value = Metric::from_name(&factor.metric).map_or_else(
                        || format!("{:.1}%", factor.value),
                        |m| format_value(m, factor.value),
                    );
                    let when = match factor.source {
                        FactorSource::Current => "now",
                        FactorSource::Predicted => "predicted p90",
                    };
                    format!("{} {value} {when} +{}", factor.metric, factor.points)
                })
                .collect();
            let because = if factors.is_empty() {
                String::new()
            } else {
                format!(": {}", factors.join(", "))
            };
            format!(
                "risk {:.1} reached {to} (>= {}){because}",
                risk.score,
                config.scale.threshold(to)
            )
        } else {
            format!(
                "risk {:.1} stayed below {from} {} - {} for {}",
                risk.score,
                config.scale.threshold(from),
                config.risk.hysteresis,
                minutes(config.risk.dwell_ms)
            )
        };
        Ok(Some(event(
            &risk.server,
            &risk.profile,
            RISK_SUBJECT,
            &transition,
            &Level::ALL,
            risk.score,
            reason,
        )))
    }

    /// Feeds a (checked) forecast; returns the predictive metric events it causes, at most
    /// one per metric.
    ///
    /// # Errors
    /// [`OutOfOrder`] when the forecast's origin is older than the server's latest.
    pub fn on_forecast(&mut self, forecast: &Forecast) -> Result<Vec<AlertEvent>, OutOfOrder> {
        let config = self.config.clone();
        let at_ms = forecast.origin_s * 1000;
        let steps = forecast.step_s.len().min(config.predictive_steps);
        let horizon_ms = steps as i64 * i64::from(forecast.step_seconds) * 1000;
        let quantile = config.quantile;
        let profile = forecast
            .profile
            .parse::<Profile>()
            .unwrap_or_else(|_| Profile::infer(&forecast.server));
        let alerts = self.server(&forecast.server);
        // Refuse an old forecast before any ladder moves.
        if let Some(latest_ms) = alerts.forecast_ms
            && at_ms < latest_ms
        {
            return Err(OutOfOrder {
                at_ms,
                latest_ms,
                restored: false,
            });
        }
        alerts.forecast_ms = Some(at_ms);
        let mut events = Vec::new();
        for rule in &config.rules {
            let Some(series) = forecast.metrics.get(rule.metric.name()) else {
                continue;
            };
            let rule = &config.rule_for(rule, profile, utc_hour(at_ms));
            let over_steps = |quantile: Quantile| -> Vec<f64> {
                quantile
                    .of(series)
                    .iter()
                    .take(steps)
                    .map(|&v| f64::from(v))
                    .collect()
            };
            let values = over_steps(quantile);
            let critical_values = over_steps(config.critical_quantile);
            if values.is_empty() || critical_values.is_empty() {
                continue;
            }
            let peak = peak_of(&values);
            let critical_peak = peak_of(&critical_values);
            // The ladder's value: the warning quantile's peak, held just under critical
            // unless the critical quantile reaches critical too.
            let level_value = if critical_peak >= rule.critical {
                critical_peak
            } else {
                peak.min(rule.critical.next_down())
            };
            let ladder_config = config.metric_ladder(rule);
            let ladder = alerts
                .metrics
                .entry(rule.metric)
                .or_insert_with(|| Ladder::new(&ladder_config));
            let Some(transition) = ladder.observe(&ladder_config, level_value, at_ms)? else {
                continue;
            };
            let to = METRIC_LEVELS[transition.to];
            let from = METRIC_LEVELS[transition.from];
            let threshold = |level: Level| {
                if level == Level::Critical {
                    rule.critical
                } else {
                    rule.warning
                }
            };
            let (shown, shown_quantile, shown_peak) = if to == Level::Critical {
                (&critical_values, config.critical_quantile, critical_peak)
            } else {
                (&values, quantile, peak)
            };
            let reason = if transition.to > transition.from {
                let limit = threshold(to);
                let first = shown.iter().position(|&v| v >= limit).unwrap_or(0);
                let ahead_ms = (forecast.step_s[first] - forecast.origin_s) * 1000;
                format!(
                    "{} predicted to reach {} in about {}, {} (peak {} over the next {}; warning {}, critical {})",
                    rule.metric,
                    format_value(rule.metric, shown[first]),
                    minutes(ahead_ms),
                    shown_quantile.name(),
                    format_value(rule.metric, shown_peak),
                    minutes(horizon_ms),
                    format_value(rule.metric, rule.warning),
                    format_value(rule.metric, rule.critical),
                )
            } else {
                format!(
                    "{} predicted peak {} over the next {}, {}: below {from} {} - {} for {}",
                    rule.metric,
                    format_value(rule.metric, peak.max(critical_peak)),
                    minutes(horizon_ms),
                    if critical_peak > peak {
                        config.critical_quantile.name()
                    } else {
                        quantile.name()
                    },
                    format_value(rule.metric, threshold(from)),
                    config.hysteresis,
                    minutes(config.dwell_ms)
                )
            };
            events.push(event(
                &forecast.server,
                &forecast.profile,
                rule.metric.name(),
                &transition,
                &METRIC_LEVELS,
                shown_peak,
                reason,
            ));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::forecast;
    use crate::wire::RiskFactor;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_700_000_000_000;

    /// The settings these tests' timings are written for: hysteresis 5 (metrics too),
    /// dwell 15 min, raise after 5 min, p50 (the defaults before tuning).
    fn settings() -> AlertSettings {
        AlertSettings {
            hysteresis_points: 5.0,
            metric_hysteresis: 5.0,
            min_dwell_seconds: 900,
            raise_after_seconds: 300,
            predictive_quantile: Quantile::P50,
            ..AlertSettings::default()
        }
    }

    fn book() -> AlertBook {
        AlertBook::new(BookConfig::from_settings(&settings()))
    }

    fn risk(score: f64, minute: i64) -> RiskScore {
        RiskScore {
            v: SCHEMA_VERSION,
            server: "ppdb001".into(),
            profile: "database".into(),
            at_ms: 0,
            sample_ms: T0 + minute * MIN,
            forecast_origin_s: None,
            score,
            current: score,
            predicted: 0.0,
            level: String::new(),
            factors: vec![RiskFactor {
                metric: "mem_used_pct".into(),
                source: FactorSource::Predicted,
                value: 99.9,
                points: 30.0,
            }],
            forecast_status: "used".into(),
        }
    }

    /// A risk alert's life: raise → escalate → de-escalate → resolve, one id throughout,
    /// durations from the message times, publish severity the higher of old and new.
    #[test]
    fn risk_alert_life() {
        let mut book = book();
        let scores = [
            10.0, 45.0, 45.0, 80.0, 80.0, 50.0, 50.0, 50.0, 50.0, 5.0, 5.0, 5.0, 5.0,
        ];
        let events: Vec<AlertEvent> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, &score)| book.on_risk(&risk(score, i as i64 * 5)).unwrap())
            .collect();
        let actions: Vec<AlertAction> = events.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                AlertAction::Raise,
                AlertAction::Escalate,
                AlertAction::Deescalate,
                AlertAction::Resolve
            ]
        );
        let id = format!("ppdb001-risk-{}", T0 + 10 * MIN);
        assert!(events.iter().all(|e| e.id == id), "{events:?}");
        let raise = &events[0];
        assert_eq!(
            (raise.severity.as_str(), raise.previous.as_str()),
            ("warning", "healthy")
        );
        assert_eq!(raise.previous_seconds, 600.0);
        assert!(
            raise.reason.contains("risk 45.0 reached warning (>= 40)"),
            "{}",
            raise.reason
        );
        assert!(
            raise
                .reason
                .contains("mem_used_pct 99.9% predicted p90 +30"),
            "{}",
            raise.reason
        );
        assert_eq!(events[1].severity, "critical");
        assert_eq!(events[1].open_seconds, 600.0);
        let deescalate = &events[2];
        assert_eq!(
            (deescalate.severity.as_str(), publish_severity(deescalate)),
            ("warning", "critical")
        );
        assert!(
            deescalate
                .reason
                .contains("below critical 70 - 5 for 15 min"),
            "{}",
            deescalate.reason
        );
        let resolve = &events[3];
        assert_eq!(
            (resolve.severity.as_str(), resolve.previous.as_str()),
            ("healthy", "warning")
        );
        assert_eq!(publish_severity(resolve), "warning");
        assert_eq!(resolve.open_seconds, 50.0 * 60.0);
        assert_eq!(book.open_alerts(), 0);
        // A score older than the latest is refused.
        assert!(book.on_risk(&risk(90.0, 0)).is_err());
    }

    /// Forecast after forecast exceeding mem at many steps opens ONE alert for the metric,
    /// with the quantile and lead time in words; it escalates once and resolves once.
    /// A database's iowait forecast at 23 % (its normal: 15 ± 5 %) raises nothing, the same
    /// forecast for a generic server raises a warning, and a database heading for 45 % raises
    /// one whose reason gives the database's lifted thresholds.
    #[test]
    fn predictive_thresholds_follow_the_profile_normal() {
        let events_for = |profile: &str, server: &str, iowait: f32| {
            let mut book = book();
            (0..3)
                .flat_map(|i| {
                    let mut f = forecast(96, &[("cpu_iowait_pct", vec![iowait; 96])]);
                    f.server = server.into();
                    f.profile = profile.into();
                    f.origin_s += i * 300;
                    f.step_s.iter_mut().for_each(|s| *s += i * 300);
                    book.on_forecast(&f).unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert!(events_for("database", "ppdb001", 23.0).is_empty());
        let generic = events_for("generic", "ppgen001", 23.0);
        assert_eq!(generic.len(), 1, "{generic:?}");
        assert_eq!(generic[0].severity, "warning");
        let db = events_for("database", "ppdb001", 45.0);
        assert_eq!(db.len(), 1, "{db:?}");
        assert_eq!(db[0].severity, "critical");
        assert!(
            db[0].reason.contains("warning 27.5%, critical 36.6%"),
            "{}",
            db[0].reason
        );
    }

    /// Metric alerts step down by `metric_hysteresis` (in the metric's unit), not by the
    /// risk scale's `hysteresis_points`: a memory alert raised at 91 % resolves once the
    /// predicted peak has stayed at 88.5 % for the dwell with a 1-point band, and stays up
    /// with a 5-point one.
    #[test]
    fn metric_alerts_use_their_own_hysteresis() {
        let run = |metric_hysteresis: f64| {
            let config = BookConfig::from_settings(&AlertSettings {
                hysteresis_points: 10.0,
                metric_hysteresis,
                ..settings()
            });
            let mut book = AlertBook::new(config);
            let mut actions = Vec::new();
            for (i, level) in [91.0, 91.0, 88.5, 88.5, 88.5, 88.5, 88.5, 88.5]
                .into_iter()
                .enumerate()
            {
                let mut f = forecast(96, &[("mem_used_pct", vec![level; 96])]);
                let shift = i as i64 * 300;
                f.origin_s += shift;
                f.step_s.iter_mut().for_each(|s| *s += shift);
                actions.extend(book.on_forecast(&f).unwrap().into_iter().map(|e| e.action));
            }
            actions
        };
        assert_eq!(run(1.0), [AlertAction::Raise, AlertAction::Resolve]);
        assert_eq!(run(5.0), [AlertAction::Raise]);
    }

    /// With p90 for warning and p50 for critical, an upper band at critical whose median
    /// stays under it raises a warning (reason in p90); the median reaching critical
    /// escalates (reason in p50), and the alert steps down only when both have left.
    #[test]
    fn critical_needs_the_critical_quantile() {
        let mut book = AlertBook::new(BookConfig::from_settings(&AlertSettings {
            predictive_quantile: Quantile::P90,
            critical_quantile: Quantile::P50,
            ..settings()
        }));
        let mut feed = |i: i64, p50: f32, p90: f32| {
            let mut f = forecast(96, &[("mem_used_pct", vec![p50; 96])]);
            let series = f.metrics.get_mut("mem_used_pct").unwrap();
            series.p90 = vec![p90; 96];
            f.origin_s += i * 300;
            f.step_s.iter_mut().for_each(|s| *s += i * 300);
            book.on_forecast(&f).unwrap()
        };
        // generic: memory warning 90, critical 98.
        let raise = [feed(0, 93.0, 99.0), feed(1, 93.0, 99.0)].concat();
        assert_eq!(raise.len(), 1, "{raise:?}");
        assert_eq!(
            (raise[0].action, raise[0].severity.as_str()),
            (AlertAction::Raise, "warning")
        );
        assert!(
            raise[0].reason.contains(", p90 (peak 99.0%"),
            "{}",
            raise[0].reason
        );
        let escalate = [feed(2, 98.5, 99.5), feed(3, 98.5, 99.5)].concat();
        assert_eq!(escalate.len(), 1, "{escalate:?}");
        assert_eq!(escalate[0].severity, "critical");
        assert!(
            escalate[0].reason.contains(", p50 (peak 98.5%"),
            "{}",
            escalate[0].reason
        );
        // The median falls back but the upper band stays within the hysteresis of
        // critical: still critical.
        let held: Vec<_> = (4..12).flat_map(|i| feed(i, 93.0, 97.0)).collect();
        assert!(held.is_empty(), "{held:?}");
    }

    #[test]
    fn predictive_alert_is_one_per_server_and_metric() {
        let mut book = book();
        let mut events = Vec::new();
        for i in 0..6 {
            // Memory climbing from 91 to 96 over the 12 steps: warning from step 0.
            let memory: Vec<f32> = (0..96).map(|s| 91.0 + (s.min(11) as f32) * 0.5).collect();
            let mut f = forecast(
                96,
                &[("mem_used_pct", memory), ("cpu_user_pct", vec![10.0; 96])],
            );
            f.server = "ppdb001".into();
            f.origin_s += i * 300;
            f.step_s.iter_mut().for_each(|s| *s += i * 300);
            events.extend(book.on_forecast(&f).unwrap());
        }
        assert_eq!(events.len(), 1, "{events:?}");
        let raise = &events[0];
        assert_eq!(
            (raise.subject.as_str(), raise.action),
            ("mem_used_pct", AlertAction::Raise)
        );
        assert_eq!(raise.severity, "warning");
        assert!(
            raise
                .reason
                .starts_with("mem_used_pct predicted to reach 91.0% in about 5 min, p50"),
            "{}",
            raise.reason
        );
        assert_eq!(raise.value, 96.5);
        assert_eq!(book.open_alerts(), 1);

        // Now a forecast reaching 98.4 at step 8 (45 min ahead), twice 5 min apart → critical.
        let mut escalate = Vec::new();
        for i in 6..8 {
            let mut memory = vec![92.0f32; 96];
            memory[8] = 98.4;
            let mut f = forecast(96, &[("mem_used_pct", memory)]);
            f.server = "ppdb001".into();
            f.origin_s += i * 300;
            f.step_s.iter_mut().for_each(|s| *s += i * 300);
            escalate.extend(book.on_forecast(&f).unwrap());
        }
        assert_eq!(escalate.len(), 1);
        assert_eq!(escalate[0].action, AlertAction::Escalate);
        assert!(
            escalate[0]
                .reason
                .contains("reach 98.4% in about 45 min, p50"),
            "{}",
            escalate[0].reason
        );
        assert_eq!(escalate[0].id, raise.id);
        // A book rebuilt from these events continues the same alert: the next calm
        // forecasts resolve it under its id instead of raising anything.
        let mut rebuilt = AlertBook::new(BookConfig::from_settings(&settings()));
        for event in events.iter().chain(&escalate) {
            rebuilt.restore(event);
        }
        assert_eq!(rebuilt.open_alerts(), 1);
        let mut resolve = Vec::new();
        for i in 8..12 {
            let mut f = forecast(96, &[("mem_used_pct", vec![50.0; 96])]);
            f.server = "ppdb001".into();
            f.origin_s += i * 300;
            f.step_s.iter_mut().for_each(|s| *s += i * 300);
            resolve.extend(rebuilt.on_forecast(&f).unwrap());
        }
        assert_eq!(resolve.len(), 1, "{resolve:?}");
        assert_eq!(
            (resolve[0].action, &resolve[0].id),
            (AlertAction::Resolve, &raise.id)
        );
        // An older forecast is refused without moving anything.
        let f = forecast(96, &[("mem_used_pct", vec![10.0; 96])]);
        let mut f = f;
        f.server = "ppdb001".into();
        assert!(book.on_forecast(&f).is_err());
    }
}
