//! What the API returns, built from the snapshot: fleet counts, server rows and pages, alert
//! entries, and the original's level badges. Shared by the original's endpoints
//! ([`super::legacy`]) and fleetcast's own ([`super::api`]).

use super::snapshot::{ServerEntry, Snapshot};
use crate::catalog::{Metric, Profile};
use crate::levels::{Level, Scale};
use crate::settings::AlertSettings;
use crate::wire::{AlertAction, AlertEvent, Forecast};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The original's badge for a level (catalog §6, scale 1, the one fleetcast keeps):
/// colour, emoji and action label.
pub fn badge(level: Level) -> (&'static str, &'static str, &'static str) {
    match level {
        Level::Critical => ("#ff4444", "🔴", "Act Now"),
        Level::Warning => ("#ff9900", "🟠", "Investigate"),
        Level::Watch => ("#ffcc00", "🟡", "Monitor"),
        Level::Healthy => ("#44ff44", "🟢", "Normal"),
    }
}

/// A profile's display name, as the original showed it.
pub fn profile_display(profile: &str) -> &'static str {
    match profile {
        "ml_compute" => "ML Compute",
        "database" => "Database",
        "web_api" => "Web API",
        "conductor_mgmt" => "Conductor Mgmt",
        "data_ingest" => "Data Ingest",
        "risk_analytics" => "Risk Analytics",
        _ => "Generic",
    }
}

/// The level of a server: from its risk score on the one scale, healthy without one.
pub fn level_of(scale: &Scale, entry: &ServerEntry) -> Level {
    scale.level_of(entry.score())
}

/// Fleet-wide counts over the snapshot's servers.
#[derive(Debug, Clone, Serialize)]
pub struct FleetCounts {
    /// Servers known.
    pub servers: usize,
    /// Servers with a risk score.
    pub scored: usize,
    /// Servers per level (healthy, watch, warning, critical), unscored ones as healthy.
    pub counts: BTreeMap<&'static str, usize>,
    /// Mean risk score over scored servers.
    pub avg_risk: f64,
    /// Highest risk score.
    pub max_risk: f64,
    /// Open alerts per severity.
    pub open_alerts: BTreeMap<String, usize>,
}

/// Counts levels, risk and open alerts over the fleet in one pass.
pub fn fleet_counts(snapshot: &Snapshot) -> FleetCounts {
    let mut counts: BTreeMap<&'static str, usize> =
        Level::ALL.iter().map(|level| (level.name(), 0)).collect();
    let mut open_alerts: BTreeMap<String, usize> = BTreeMap::new();
    let (mut scored, mut sum, mut max) = (0, 0.0, 0.0_f64);
    for entry in snapshot.servers.values() {
        *counts
            .get_mut(level_of(&snapshot.scale, entry).name())
            .expect("every level counted") += 1;
        if let Some(risk) = &entry.risk {
            scored += 1;
            sum += risk.score;
            max = max.max(risk.score);
        }
        for alert in entry.alerts.values() {
            *open_alerts.entry(alert.severity.clone()).or_default() += 1;
        }
    }
    FleetCounts {
        servers: snapshot.servers.len(),
        scored,
        counts,
        avg_risk: if scored == 0 {
            0.0
        } else {
            sum / scored as f64
        },
        max_risk: max,
        open_alerts,
    }
}

/// The `top` servers by risk, highest first (ties by name): `(name, entry)`.
pub fn top_risks(snapshot: &Snapshot, top: usize) -> Vec<(&str, &ServerEntry)> {
    let mut ranked: Vec<(&str, &ServerEntry)> = snapshot
        .servers
        .iter()
        .filter(|(_, entry)| entry.risk.is_some())
        .map(|(name, entry)| (name.as_str(), entry))
        .collect();
    let by_risk = |a: &(&str, &ServerEntry), b: &(&str, &ServerEntry)| {
        b.1.score().total_cmp(&a.1.score()).then(a.0.cmp(b.0))
    };
    if ranked.len() > top {
        ranked.select_nth_unstable_by(top, by_risk);
        ranked.truncate(top);
    }
    ranked.sort_by(by_risk);
    ranked
}

/// One row of `/api/v1/servers`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow<'a> {
    /// Name.
    pub server: &'a str,
    /// Profile (wire name).
    pub profile: &'a str,
    /// Risk score (null before the first).
    pub score: Option<f64>,
    /// Level on the one scale (`healthy` before the first score).
    pub level: &'static str,
    /// Current points of the score.
    pub current: Option<f64>,
    /// Predicted points of the score.
    pub predicted: Option<f64>,
    /// Whether a forecast fed the score (`used`, `missing`, `stale`).
    pub forecast_status: Option<&'a str>,
    /// Time of the latest sample, unix ms.
    pub sample_ms: Option<i64>,
    /// Origin of the latest forecast, unix s.
    pub forecast_origin_s: Option<i64>,
    /// Metrics in the latest forecast.
    pub forecast_metrics: usize,
    /// Open alerts.
    pub open_alerts: usize,
    /// Highest severity among the open alerts.
    pub alert_severity: Option<&'a str>,
}

/// The row of one server.
pub fn server_row<'a>(scale: &Scale, name: &'a str, entry: &'a ServerEntry) -> ServerRow<'a> {
    let risk = entry.risk.as_deref();
    ServerRow {
        server: name,
        profile: &entry.profile,
        score: risk.map(|risk| risk.score),
        level: level_of(scale, entry).name(),
        current: risk.map(|risk| risk.current),
        predicted: risk.map(|risk| risk.predicted),
        forecast_status: risk.map(|risk| risk.forecast_status.as_str()),
        sample_ms: entry.sample_ms,
        forecast_origin_s: entry.forecast.as_ref().map(|forecast| forecast.origin_s),
        forecast_metrics: entry.forecast.as_ref().map_or(0, |f| f.metrics.len()),
        open_alerts: entry.alerts.len(),
        alert_severity: entry
            .alerts
            .values()
            .max_by_key(|alert| severity_rank(&alert.severity))
            .map(|alert| alert.severity.as_str()),
    }
}

/// 0 (healthy) to 3 (critical); unknown names rank lowest.
pub fn severity_rank(severity: &str) -> usize {
    severity.parse::<Level>().map_or(0, Level::rank)
}

/// A server's latest merged sample.
#[derive(Debug, Serialize)]
pub struct LatestSample {
    /// Time of the latest sample, unix ms.
    pub ts_ms: i64,
    /// Latest value of each metric reported.
    pub metrics: BTreeMap<&'static str, f64>,
}

/// Step means of the recent past.
#[derive(Debug, Serialize)]
pub struct Recent {
    /// Step length.
    pub step_seconds: i64,
    /// Start of each step, unix s.
    pub step_s: Vec<i64>,
    /// Per metric reported, the mean per step (null where the step had none).
    pub metrics: BTreeMap<&'static str, Vec<Option<f32>>>,
}

/// A server's page: latest sample, recent step means, forecast, risk and open alerts.
#[derive(Debug, Serialize)]
pub struct ServerDetail<'a> {
    /// Name.
    pub server: &'a str,
    /// Profile (wire name).
    pub profile: &'a str,
    /// Profile as the original showed it.
    pub profile_display: &'static str,
    /// Level on the one scale.
    pub level: &'static str,
    /// Snapshot version of the server's latest change.
    pub version: u64,
    /// Latest sample.
    pub latest_sample: Option<LatestSample>,
    /// Recent step means.
    pub recent: Recent,
    /// Latest forecast as published.
    pub forecast: Option<&'a Forecast>,
    /// Latest risk score as published.
    pub risk: Option<&'a crate::wire::RiskScore>,
    /// Open alerts, most severe first.
    pub alerts: Vec<&'a AlertEvent>,
    /// Unit of each metric.
    pub units: BTreeMap<&'static str, &'static str>,
}

/// The page of server `name`.
pub fn server_detail<'a>(
    snapshot: &Snapshot,
    name: &'a str,
    entry: &'a ServerEntry,
) -> ServerDetail<'a> {
    let step_seconds = snapshot.gate.step_seconds();
    let latest_sample = entry.sample_ms.map(|ts_ms| LatestSample {
        ts_ms,
        metrics: Metric::ALL
            .into_iter()
            .filter_map(|metric| Some((metric.name(), entry.current_of(metric)?)))
            .collect(),
    });
    let recent = Recent {
        step_seconds,
        step_s: entry
            .recent
            .iter()
            .map(|means| means.step * step_seconds)
            .collect(),
        metrics: Metric::ALL
            .into_iter()
            .filter(|metric| entry.present & (1 << metric.index()) != 0)
            .map(|metric| {
                let values = entry
                    .recent
                    .iter()
                    .map(|means| Some(means.values[metric.index()]).filter(|v| v.is_finite()))
                    .collect();
                (metric.name(), values)
            })
            .collect(),
    };
    let mut alerts: Vec<&AlertEvent> = entry.alerts.values().map(|a| a.as_ref()).collect();
    alerts.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then(a.opened_ms.cmp(&b.opened_ms))
    });
    ServerDetail {
        server: name,
        profile: &entry.profile,
        profile_display: profile_display(&entry.profile),
        level: level_of(&snapshot.scale, entry).name(),
        version: entry.version,
        latest_sample,
        recent,
        forecast: entry.forecast.as_deref(),
        risk: entry.risk.as_deref(),
        alerts,
        units: Metric::ALL
            .into_iter()
            .map(|metric| (metric.name(), metric.unit()))
            .collect(),
    }
}

/// The threshold an alert's subject crossed at its severity: a metric's value from
/// `[alerts.metrics]`, the scale's score for a risk alert.
pub fn alert_threshold(settings: &AlertSettings, event: &AlertEvent) -> Option<f64> {
    let level = event.severity.parse::<Level>().ok()?;
    if event.subject == "risk" {
        return Some(settings.scale().threshold(level));
    }
    let rule = settings.metrics.get(&event.subject)?;
    match level {
        Level::Critical => Some(rule.critical),
        Level::Warning | Level::Watch => Some(rule.warning),
        Level::Healthy => None,
    }
}

/// The first forecast step (1-based, within `alerts.predictive_steps`) whose tested quantile
/// reaches `threshold` for `metric`.
pub fn steps_ahead(
    settings: &AlertSettings,
    forecast: &Forecast,
    metric: &str,
    threshold: f64,
) -> Option<usize> {
    let series = forecast.metrics.get(metric)?;
    settings
        .predictive_quantile
        .of(series)
        .iter()
        .take(settings.predictive_steps as usize)
        .position(|&value| f64::from(value) >= threshold)
        .map(|index| index + 1)
}

/// An open alert as the original's `/alerts/active` listed it (server, metric, severity,
/// predicted_value, threshold, steps_ahead, minutes_ahead), with fleetcast's fields beside.
pub fn active_alert(
    settings: &AlertSettings,
    step_seconds: i64,
    event: &AlertEvent,
    entry: Option<&ServerEntry>,
) -> Value {
    let threshold = alert_threshold(settings, event);
    let steps = match (threshold, entry.and_then(|entry| entry.forecast.as_deref())) {
        (Some(threshold), Some(forecast)) if event.subject != "risk" => {
            steps_ahead(settings, forecast, &event.subject, threshold)
        }
        _ => None,
    };
    json!({
        "server": event.server,
        "metric": event.subject,
        "severity": event.severity,
        "predicted_value": event.value,
        "threshold": threshold,
        "steps_ahead": steps,
        "minutes_ahead": steps.map(|steps| steps as i64 * step_seconds / 60),
        "id": event.id,
        "profile": event.profile,
        "action": event.action,
        "reason": event.reason,
        "opened_ms": event.opened_ms,
        "at_ms": event.at_ms,
        "open_seconds": event.open_seconds,
    })
}

/// Every open alert, critical first, then the soonest, then the oldest.
pub fn active_alerts(settings: &AlertSettings, snapshot: &Snapshot) -> Vec<Value> {
    let step_seconds = snapshot.gate.step_seconds();
    let mut events: Vec<&AlertEvent> = snapshot.open_alerts().map(|event| event.as_ref()).collect();
    events.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then(a.opened_ms.cmp(&b.opened_ms))
            .then(a.id.cmp(&b.id))
    });
    events
        .into_iter()
        .map(|event| {
            active_alert(
                settings,
                step_seconds,
                event,
                snapshot.servers.get(&event.server),
            )
        })
        .collect()
}

/// The original's history `event_type` for an action.
pub fn event_type(action: AlertAction) -> &'static str {
    match action {
        AlertAction::Raise => "raised",
        AlertAction::Escalate => "escalation",
        AlertAction::Deescalate => "de-escalation",
        AlertAction::Resolve => "resolved",
    }
}

/// RFC 3339 (UTC, milliseconds) of unix ms.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One alert event in the original's history shape (`/historical/alerts`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The alert's id (the same on every event of its life).
    pub id: String,
    /// When the event happened.
    pub timestamp: String,
    /// Server.
    pub server_name: String,
    /// Profile.
    pub profile: String,
    /// `risk` or the metric.
    pub metric: String,
    /// `raised`, `escalation`, `de-escalation`, `resolved`.
    pub event_type: &'static str,
    /// Severity before.
    pub previous_level: String,
    /// Severity after (`healthy` on resolve).
    pub new_level: String,
    /// Risk score, for risk alerts.
    pub risk_score: Option<f64>,
    /// Risk score or predicted metric value.
    pub value: f64,
    /// When it resolved (resolve events).
    pub resolved_at: Option<String>,
    /// Minutes from opening to resolving (resolve events).
    pub resolution_duration_minutes: Option<f64>,
    /// The reason in words.
    pub notes: String,
    /// When the event happened, unix ms.
    pub at_ms: i64,
}

impl HistoryEntry {
    /// From an alert event.
    pub fn from_event(event: &AlertEvent) -> HistoryEntry {
        let resolved = event.action == AlertAction::Resolve;
        HistoryEntry {
            id: event.id.clone(),
            timestamp: rfc3339_ms(event.at_ms),
            server_name: event.server.clone(),
            profile: event.profile.clone(),
            metric: event.subject.clone(),
            event_type: event_type(event.action),
            previous_level: event.previous.clone(),
            new_level: event.severity.clone(),
            risk_score: (event.subject == "risk").then_some(event.value),
            value: event.value,
            resolved_at: resolved.then(|| rfc3339_ms(event.at_ms)),
            resolution_duration_minutes: resolved.then(|| event.open_seconds / 60.0),
            notes: event.reason.clone(),
            at_ms: event.at_ms,
        }
    }
}

/// History entries as CSV, with a header row.
pub fn history_csv(entries: &[HistoryEntry]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "id",
        "timestamp",
        "server_name",
        "profile",
        "metric",
        "event_type",
        "previous_level",
        "new_level",
        "risk_score",
        "value",
        "resolved_at",
        "resolution_duration_minutes",
        "notes",
    ]);
    let optional = |value: Option<f64>| value.map(|v| format!("{v:.2}")).unwrap_or_default();
    for entry in entries {
        let _ = writer.write_record([
            entry.id.as_str(),
            &entry.timestamp,
            &entry.server_name,
            &entry.profile,
            &entry.metric,
            entry.event_type,
            &entry.previous_level,
            &entry.new_level,
            &optional(entry.risk_score),
            &format!("{:.2}", entry.value),
            entry.resolved_at.as_deref().unwrap_or(""),
            &optional(entry.resolution_duration_minutes),
            &entry.notes,
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Whether `profile` is one of the 7 (for filters).
pub fn is_profile(profile: &str) -> bool {
    Profile::ALL.iter().any(|known| known.name() == profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SCHEMA_VERSION;

    fn event(subject: &str, severity: &str, action: AlertAction) -> AlertEvent {
        AlertEvent {
            v: SCHEMA_VERSION,
            id: format!("a-{subject}-1"),
            server: "a".into(),
            profile: "generic".into(),
            subject: subject.into(),
            action,
            severity: severity.into(),
            previous: "warning".into(),
            value: 96.5,
            reason: "mem, \"quoted\"".into(),
            opened_ms: 0,
            at_ms: 1_800_000,
            open_seconds: 1800.0,
            previous_seconds: 60.0,
        }
    }

    /// A metric alert's threshold is its rule's value at the severity; a risk alert's the
    /// scale's.
    #[test]
    fn thresholds_follow_the_settings() {
        let settings = AlertSettings::default();
        let mem = event("mem_used_pct", "critical", AlertAction::Escalate);
        assert_eq!(alert_threshold(&settings, &mem), Some(98.0));
        let risk = event("risk", "warning", AlertAction::Raise);
        assert_eq!(alert_threshold(&settings, &risk), Some(40.0));
    }

    /// A resolve becomes a `resolved` history entry with its duration, and CSV quotes what
    /// needs quoting.
    #[test]
    fn history_entries_and_csv() {
        let resolved = HistoryEntry::from_event(&event("risk", "healthy", AlertAction::Resolve));
        assert_eq!(resolved.event_type, "resolved");
        assert_eq!(resolved.resolution_duration_minutes, Some(30.0));
        assert_eq!(resolved.risk_score, Some(96.5));
        let csv = history_csv(&[resolved]);
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("id,timestamp,server_name")
        );
        let row = lines.next().unwrap();
        assert!(row.contains("\"mem, \"\"quoted\"\"\""), "{row}");
        assert!(row.contains("1970-01-01T00:30:00.000Z"), "{row}");
    }
}
