//! Scoring alerts against ground truth: pure functions over the simulation's labels and the
//! alert changes a detector produced (the pipeline's alert router or a baseline).
//!
//! A server is *alerting at level L* while any of its alerts (risk or per metric) stands at L
//! or above; each maximal stretch of that is one **alert** (what an operator is paged for),
//! raised at its start, resolved at its end. Against the [`Label`]s:
//!
//! - an alert **belongs** to an episode on its server when it is raised between
//!   `early` before the episode's start and `late` after its end (any kind of episode);
//! - the **incidents** are the `degrading`, `critical` and `cascade` episodes whose metrics
//!   reach `warning` (a `critical_issue` is a Markov jump that no forecast can see coming:
//!   counted for precision, reported, not in recall);
//! - an incident is **alerted early** when its server is alerting at some moment from `early`
//!   before its start up to its first crossing, **late** when only after that (up to `late`
//!   after its end);
//! - **lead time** of an alerted incident: its first crossing minus the raise of the alert
//!   (raised no earlier than `early` before the start), negative when late;
//! - **flapping**: the alerts raised (or open) in an alerted incident's window, per incident;
//! - **time to resolve**: from the incident's end to the last of those alerts' resolve.

use crate::levels::Level;
use crate::sim::{Label, LabelKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// One change of one alert: from `at_ms` on, `subject` on `server` stands at `level`
/// (`Healthy`: resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertChange {
    /// The server.
    pub server: String,
    /// `risk`, a metric name, or a baseline's rule.
    pub subject: String,
    /// When, unix ms.
    pub at_ms: i64,
    /// The alert's level after the change.
    pub level: Level,
}

/// One stretch of a server alerting at a level or above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The server.
    pub server: String,
    /// Raised, unix ms.
    pub start_ms: i64,
    /// Resolved (`None`: still open at the end of the run).
    pub end_ms: Option<i64>,
}

/// How to match alerts to episodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParams {
    /// The alert level that counts as alerting (the issue's: `warning`).
    pub level: Level,
    /// How long before an episode's start an alert still belongs to it, ms.
    pub early_ms: i64,
    /// How long after its end, ms.
    pub late_ms: i64,
    /// Start of the scored stretch, unix ms: alerts raised before it (during a warm-up) are
    /// not counted, though one still open alerts for the incidents after it.
    pub start_ms: i64,
    /// End of the run, unix ms (episodes still going end here).
    pub end_ms: i64,
    /// Servers × days simulated.
    pub server_days: f64,
}

/// The scores of one detector on one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Incidents reaching `warning` (degrading, critical, cascade).
    pub incidents: usize,
    /// Of those, alerted before or at the first crossing.
    pub alerted_early: usize,
    /// Alerted only after it.
    pub alerted_late: usize,
    /// `alerted_early / incidents`.
    pub recall: Option<f64>,
    /// Per episode kind: (episodes reaching warning, alerted early).
    pub by_kind: BTreeMap<String, (usize, usize)>,
    /// Alerts at the level.
    pub alerts: usize,
    /// Of those, belonging to an episode.
    pub true_alerts: usize,
    /// `true_alerts / alerts`.
    pub precision: Option<f64>,
    /// Median lead time of alerted incidents, minutes (negative: late).
    pub lead_median_min: Option<f64>,
    /// 10th percentile of the lead time, minutes.
    pub lead_p10_min: Option<f64>,
    /// Alerts belonging to no episode, per server-day, at watch, warning and critical.
    pub false_per_server_day: BTreeMap<String, f64>,
    /// Alerts per alerted incident.
    pub flapping: Option<f64>,
    /// Median minutes from an alerted incident's end to its alerts' resolve.
    pub resolve_median_min: Option<f64>,
    /// Alerted incidents whose alert was still open at the end of the run.
    pub unresolved: usize,
}

/// The stretches during which each server alerts at `level` or above, by server, in time
/// order.
pub fn alerts_at(changes: &[AlertChange], level: Level) -> BTreeMap<String, Vec<Alert>> {
    let mut ordered: Vec<&AlertChange> = changes.iter().collect();
    ordered.sort_by_key(|change| change.at_ms);
    // server -> subject -> level now
    let mut now: BTreeMap<&str, BTreeMap<&str, Level>> = BTreeMap::new();
    let mut alerts: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    for change in ordered {
        let subjects = now.entry(&change.server).or_default();
        let before = subjects.values().max().copied().unwrap_or(Level::Healthy);
        subjects.insert(&change.subject, change.level);
        let after = subjects.values().max().copied().unwrap_or(Level::Healthy);
        let list = alerts.entry(change.server.clone()).or_default();
        if before < level && after >= level {
            list.push(Alert {
                server: change.server.clone(),
                start_ms: change.at_ms,
                end_ms: None,
            });
        } else if before >= level
            && after < level
            && let Some(open) = list.last_mut()
        {
            open.end_ms = Some(change.at_ms);
        }
    }
    alerts.retain(|_, list| !list.is_empty());
    alerts
}

/// Whether `kind` counts as an incident for recall.
pub fn is_incident(kind: LabelKind) -> bool {
    matches!(
        kind,
        LabelKind::Degrading | LabelKind::Critical | LabelKind::Cascade
    )
}

/// The `q` quantile (0–1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Scores `changes` against `labels`.
pub fn score(labels: &[Label], changes: &[AlertChange], params: &ScoreParams) -> Scores {
    let minutes = |ms: i64| ms as f64 / 60_000.0;
    let end_of = |label: &Label| label.end_ms.unwrap_or(params.end_ms);
    let window = |label: &Label| {
        (
            label.start_ms - params.early_ms,
            end_of(label) + params.late_ms,
        )
    };
    let mut by_server: BTreeMap<&str, Vec<&Label>> = BTreeMap::new();
    for label in labels {
        by_server.entry(&label.server).or_default().push(label);
    }

    // Precision and false alerts, at every level.
    let belongs = |alert: &Alert| {
        by_server.get(alert.server.as_str()).is_some_and(|labels| {
            labels.iter().any(|label| {
                let (from, to) = window(label);
                (from..=to).contains(&alert.start_ms)
            })
        })
    };
    let mut false_per_server_day = BTreeMap::new();
    let (mut total, mut true_alerts) = (0, 0);
    for level in [Level::Watch, Level::Warning, Level::Critical] {
        let alerts = alerts_at(changes, level);
        let all: Vec<&Alert> = alerts
            .values()
            .flatten()
            .filter(|alert| alert.start_ms >= params.start_ms)
            .collect();
        let belonging = all.iter().filter(|alert| belongs(alert)).count();
        false_per_server_day.insert(
            level.name().to_string(),
            (all.len() - belonging) as f64 / params.server_days.max(1e-9),
        );
        if level == params.level {
            total = all.len();
            true_alerts = belonging;
        }
    }

    // Recall, lead, flapping and resolve over the incidents.
    let alerts = alerts_at(changes, params.level);
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut incidents, mut early, mut late, mut unresolved) = (0, 0, 0, 0);
    let (mut leads, mut cycles, mut resolves) = (Vec::new(), Vec::new(), Vec::new());
    for label in labels {
        let Some(crossing) = label.first_crossing(Level::Warning) else {
            continue;
        };
        let (from, to) = window(label);
        let server_alerts = alerts.get(&label.server).map_or(&[][..], Vec::as_slice);
        // Alerts open at some moment of the window.
        let overlapping: Vec<&Alert> = server_alerts
            .iter()
            .filter(|alert| alert.start_ms <= to && alert.end_ms.is_none_or(|end| end > from))
            .collect();
        let first_raise = overlapping.first().map(|alert| alert.start_ms.max(from));
        let is_early = first_raise.is_some_and(|raised| raised <= crossing.at_ms);
        let entry = by_kind.entry(label.kind.name().to_string()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(is_early);
        if !is_incident(label.kind) {
            continue;
        }
        incidents += 1;
        let Some(raised) = first_raise else {
            continue;
        };
        if is_early {
            early += 1;
        } else {
            late += 1;
        }
        leads.push(minutes(crossing.at_ms - raised));
        cycles.push(overlapping.len() as f64);
        match overlapping.last().and_then(|alert| alert.end_ms) {
            Some(resolved) if label.end_ms.is_some() => {
                resolves.push(minutes(resolved - end_of(label)));
            }
            Some(_) => {}
            None => unresolved += 1,
        }
    }
    Scores {
        incidents,
        alerted_early: early,
        alerted_late: late,
        recall: ratio(early, incidents),
        by_kind,
        alerts: total,
        true_alerts,
        precision: ratio(true_alerts, total),
        lead_median_min: quantile(&leads, 0.5),
        lead_p10_min: quantile(&leads, 0.1),
        false_per_server_day,
        flapping: (!cycles.is_empty()).then(|| cycles.iter().sum::<f64>() / cycles.len() as f64),
        resolve_median_min: quantile(&resolves, 0.5),
        unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Metric, Profile};
    use crate::sim::Crossing;

    const MIN: i64 = 60_000;

    fn label(server: &str, kind: LabelKind, start: i64, end: i64, crossing: Option<i64>) -> Label {
        Label {
            id: 0,
            server: server.into(),
            profile: Profile::WebApi,
            kind,
            source: None,
            metrics: vec![Metric::CpuUserPct],
            start_step: (start / (5 * MIN)) as u64,
            start_ms: start * MIN,
            end_step: Some((end / 5) as u64),
            end_ms: Some(end * MIN),
            peak: 1.0,
            crossings: crossing
                .map(|at| Crossing {
                    metric: Metric::CpuUserPct,
                    level: Level::Warning,
                    step: (at / 5) as u64,
                    at_ms: at * MIN,
                    value: 86.0,
                })
                .into_iter()
                .collect(),
        }
    }

    fn change(server: &str, subject: &str, at_min: i64, level: Level) -> AlertChange {
        AlertChange {
            server: server.into(),
            subject: subject.into(),
            at_ms: at_min * MIN,
            level,
        }
    }

    fn params() -> ScoreParams {
        ScoreParams {
            level: Level::Warning,
            early_ms: 30 * MIN,
            late_ms: 60 * MIN,
            start_ms: 0,
            end_ms: 10_000 * MIN,
            server_days: 10.0,
        }
    }

    /// Alerts on one server merge across subjects: the server alerts while any subject does.
    #[test]
    fn subjects_merge_into_one_alert_per_stretch() {
        let changes = [
            change("a", "risk", 10, Level::Warning),
            change("a", "cpu_user_pct", 20, Level::Critical),
            change("a", "risk", 30, Level::Healthy),
            change("a", "cpu_user_pct", 40, Level::Watch),
            change("a", "risk", 50, Level::Warning),
            change("b", "risk", 5, Level::Watch),
        ];
        let alerts = alerts_at(&changes, Level::Warning);
        let a = &alerts["a"];
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].start_ms, a[0].end_ms), (10 * MIN, Some(40 * MIN)));
        assert_eq!((a[1].start_ms, a[1].end_ms), (50 * MIN, None));
        assert!(!alerts.contains_key("b"), "watch is below warning");
        assert_eq!(alerts_at(&changes, Level::Watch)["b"].len(), 1);
    }

    /// An early alert counts for recall with its lead; a late one only as detected; a missed
    /// incident lowers recall; a stray alert lowers precision and counts as false.
    #[test]
    fn recall_precision_and_lead_on_a_small_case() {
        let labels = [
            // Alerted 40 min before its crossing (raised 10 min before the start: inside
            // the 30-minute early allowance).
            label("a", LabelKind::Critical, 100, 200, Some(140)),
            // Alerted 10 min after its crossing: late.
            label("b", LabelKind::Degrading, 100, 200, Some(120)),
            // Never alerted.
            label("c", LabelKind::Cascade, 100, 200, Some(150)),
            // Reaches no threshold: not an incident.
            label("d", LabelKind::Degrading, 100, 200, None),
        ];
        let changes = [
            change("a", "risk", 90, Level::Warning),
            change("a", "risk", 230, Level::Healthy),
            change("b", "risk", 130, Level::Warning),
            change("b", "risk", 200, Level::Healthy),
            // Stray: nothing on e.
            change("e", "risk", 500, Level::Critical),
            change("e", "risk", 520, Level::Healthy),
        ];
        let scores = score(&labels, &changes, &params());
        assert_eq!(scores.incidents, 3);
        assert_eq!((scores.alerted_early, scores.alerted_late), (1, 1));
        assert_eq!(scores.recall, Some(1.0 / 3.0));
        assert_eq!((scores.alerts, scores.true_alerts), (3, 2));
        assert_eq!(scores.precision, Some(2.0 / 3.0));
        // Leads: +50 (from 90) and -10 minutes.
        assert_eq!(scores.lead_median_min, Some(-10.0));
        assert_eq!(scores.lead_p10_min, Some(-10.0));
        assert_eq!(scores.false_per_server_day["warning"], 0.1);
        assert_eq!(scores.false_per_server_day["critical"], 0.1);
        assert_eq!(scores.flapping, Some(1.0));
        // a resolved 30 min after its end, b at its end.
        assert_eq!(scores.resolve_median_min, Some(0.0));
        assert_eq!(scores.unresolved, 0);
        assert_eq!(scores.by_kind["cascade"], (1, 0));
    }

    /// An alert raised long before the incident (a false one still open) counts as alerting
    /// but its lead is capped at the early allowance; the stray raise itself is false.
    #[test]
    fn an_old_open_alert_has_its_lead_capped() {
        let labels = [label("a", LabelKind::Critical, 1000, 1100, Some(1010))];
        let changes = [change("a", "risk", 0, Level::Warning)];
        let scores = score(&labels, &changes, &params());
        assert_eq!(scores.alerted_early, 1);
        assert_eq!(scores.lead_median_min, Some(40.0));
        assert_eq!(scores.precision, Some(0.0));
        assert_eq!(scores.unresolved, 1);
    }

    /// Raise/resolve cycles during one incident count as flapping; critical_issue episodes
    /// make alerts true but are not incidents.
    #[test]
    fn flapping_counts_cycles_per_incident() {
        let labels = [
            label("a", LabelKind::Critical, 100, 200, Some(110)),
            label("z", LabelKind::CriticalIssue, 100, 110, Some(100)),
        ];
        let changes = [
            change("a", "risk", 100, Level::Warning),
            change("a", "risk", 120, Level::Watch),
            change("a", "risk", 130, Level::Warning),
            change("a", "risk", 140, Level::Healthy),
            change("a", "risk", 150, Level::Critical),
            change("a", "risk", 260, Level::Healthy),
            change("z", "risk", 105, Level::Warning),
            change("z", "risk", 115, Level::Healthy),
        ];
        let scores = score(&labels, &changes, &params());
        assert_eq!(scores.incidents, 1);
        assert_eq!(scores.flapping, Some(3.0));
        assert_eq!(scores.resolve_median_min, Some(60.0));
        assert_eq!((scores.alerts, scores.true_alerts), (4, 4));
        assert_eq!(scores.by_kind["critical_issue"], (1, 0));
        // The healthy part of the run: nothing false.
        assert_eq!(scores.false_per_server_day["watch"], 0.0);
    }

    /// Nearest-rank quantiles.
    #[test]
    fn quantiles_by_nearest_rank() {
        let values = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&values, 0.5), Some(3.0));
        assert_eq!(quantile(&values, 0.1), Some(1.0));
        assert_eq!(quantile(&values, 1.0), Some(5.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
