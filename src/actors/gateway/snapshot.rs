//! The fleet as the gateway holds it: per server the latest sample (and the step means of the
//! last few hours), the latest forecast, the latest risk score and the open alerts; the latest
//! fleet summary and stage status. Plain state, no I/O: the actor in `mod.rs` feeds it
//! messages, the HTTP handlers read it.
//!
//! Every change bumps a version number (the snapshot's, and the server's), so a response
//! built from a server's state can be cached until that server changes.
//!
//! Samples are checked by the window keeper's own rule ([`validate`], shared in
//! [`crate::samples`]) against a mirror of the keeper's validation state ([`Gate`]: the fleet
//! clock and each server's open step), fed by the same stream in the same order. A sample the keeper would refuse is not shown, and
//! `POST /feed/data` refuses what the keeper would refuse.

use crate::catalog::{METRIC_COUNT, Metric, Profile};
use crate::levels::Scale;
use crate::samples::{self, Checked, IngestRules, Invalid, SampleView, validate};
use crate::wire::{
    self, AlertAction, AlertEvent, DecodeError, FleetSummary, Forecast, RiskScore, StageStatus,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// The window keeper's validation state without its windows: enough to refuse exactly what it
/// refuses.
#[derive(Debug)]
pub struct Gate {
    rules: IngestRules,
    /// Each server's open step (the step of its newest accepted sample).
    open_steps: HashMap<String, i64>,
    /// End of the newest step accepted from any server, unix ms (the simulated clock).
    newest_step_end_ms: i64,
}

impl Gate {
    /// A gate with the keeper's rules and no server yet.
    pub fn new(rules: IngestRules) -> Gate {
        Gate {
            rules,
            open_steps: HashMap::new(),
            newest_step_end_ms: i64::MIN,
        }
    }

    /// Checks a decoded sample that arrived (or would arrive) on the subject of
    /// `subject_server`, at wall-clock `now_ms`.
    ///
    /// # Errors
    /// [`Invalid`] as the window keeper would refuse it.
    pub fn check(
        &self,
        subject_server: &str,
        sample: &SampleView<'_>,
        now_ms: i64,
    ) -> Result<Checked, Invalid> {
        validate(
            &self.rules,
            sample,
            subject_server,
            now_ms.max(self.newest_step_end_ms),
            self.open_steps.get(sample.server).copied(),
        )
    }

    /// Records an accepted sample of `server` in `step`.
    pub fn accept(&mut self, server: &str, step: i64) {
        match self.open_steps.get_mut(server) {
            Some(open) => *open = (*open).max(step),
            None => {
                self.open_steps.insert(server.to_string(), step);
            }
        }
        let step_ms = i64::from(self.rules.shape.step_seconds as u32) * 1000;
        self.newest_step_end_ms = self
            .newest_step_end_ms
            .max((step + 1).saturating_mul(step_ms));
    }

    /// The fleet clock: end of the newest accepted step, unix ms (`None` before any sample).
    pub fn fleet_clock_ms(&self) -> Option<i64> {
        (self.newest_step_end_ms != i64::MIN).then_some(self.newest_step_end_ms)
    }

    /// The step length in seconds.
    pub fn step_seconds(&self) -> i64 {
        self.rules.shape.step_seconds
    }
}

/// One step's mean of each metric (NaN where the step had no value of it).
#[derive(Debug, Clone, PartialEq)]
pub struct StepMeans {
    /// The step number (start = step × step length).
    pub step: i64,
    /// Mean per metric, catalog order.
    pub values: [f32; METRIC_COUNT],
    counts: [u16; METRIC_COUNT],
}

/// A server's state.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// Profile (wire name), from the latest message that named one.
    pub profile: String,
    /// Time of the latest accepted sample, unix ms.
    pub sample_ms: Option<i64>,
    /// Latest value per metric (catalog order), merged over samples; meaningful where
    /// `present` has the bit.
    pub current: [f64; METRIC_COUNT],
    /// Bit `m` set once metric `m` has been reported.
    pub present: u16,
    /// Step means of the last `recent_steps` steps, oldest first.
    pub recent: VecDeque<StepMeans>,
    /// Latest forecast.
    pub forecast: Option<Arc<Forecast>>,
    /// Latest risk score.
    pub risk: Option<Arc<RiskScore>>,
    /// Open alerts by id: each one's latest event.
    pub alerts: BTreeMap<String, Arc<AlertEvent>>,
    /// Snapshot version of this server's latest change.
    pub version: u64,
}

impl ServerEntry {
    fn new(profile: String) -> ServerEntry {
        ServerEntry {
            profile,
            sample_ms: None,
            current: [f64::NAN; METRIC_COUNT],
            present: 0,
            recent: VecDeque::new(),
            forecast: None,
            risk: None,
            alerts: BTreeMap::new(),
            version: 0,
        }
    }

    /// The latest value of `metric`, when reported.
    pub fn current_of(&self, metric: Metric) -> Option<f64> {
        (self.present & (1 << metric.index()) != 0).then(|| self.current[metric.index()])
    }

    /// Risk score, 0 when none yet.
    pub fn score(&self) -> f64 {
        self.risk.as_ref().map_or(0.0, |risk| risk.score)
    }
}

/// Messages the snapshot took, by kind (the gateway's own view of the bus for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Samples accepted.
    pub samples: u64,
    /// Samples the keeper's rule refuses.
    pub samples_refused: u64,
    /// Forecasts taken.
    pub forecasts: u64,
    /// Risk scores taken.
    pub risk: u64,
    /// Alert events taken.
    pub alerts: u64,
    /// Fleet summaries taken.
    pub summaries: u64,
    /// Stage statuses taken.
    pub statuses: u64,
    /// Messages that did not decode (or were older than what was held).
    pub skipped: u64,
}

/// What a message changed, for the push events.
#[derive(Debug, Clone)]
pub enum Change {
    /// Nothing (a duplicate, an older message).
    None,
    /// A server's latest sample.
    Sample(String),
    /// A server's forecast.
    Forecast(String),
    /// A server's risk.
    Risk(Arc<RiskScore>),
    /// An alert event.
    Alert(Arc<AlertEvent>),
    /// The fleet summary.
    Summary(Arc<FleetSummary>),
    /// A stage's status.
    Status(Arc<StageStatus>),
}

/// The fleet's state.
#[derive(Debug)]
pub struct Snapshot {
    /// The one alert scale.
    pub scale: Scale,
    recent_steps: usize,
    /// Every server, by name.
    pub servers: BTreeMap<String, ServerEntry>,
    /// Latest fleet summary.
    pub summary: Option<Arc<FleetSummary>>,
    /// Latest status per stage.
    pub stages: BTreeMap<String, Arc<StageStatus>>,
    /// The keeper's validation state.
    pub gate: Gate,
    /// Bumped on every change.
    pub version: u64,
    /// What was taken, by kind.
    pub received: Received,
}

/// The last token of a subject (the server of `metrics.<server>` and the like).
pub fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new(scale: Scale, rules: IngestRules, recent_steps: usize) -> Snapshot {
        Snapshot {
            scale,
            recent_steps: recent_steps.max(1),
            servers: BTreeMap::new(),
            summary: None,
            stages: BTreeMap::new(),
            gate: Gate::new(rules),
            version: 0,
            received: Received::default(),
        }
    }

    fn touch(&mut self, server: &str, profile: &str) -> &mut ServerEntry {
        self.version += 1;
        let version = self.version;
        let entry = self
            .servers
            .entry(server.to_string())
            .or_insert_with(|| ServerEntry::new(profile.to_string()));
        if !profile.is_empty() && entry.profile != profile {
            entry.profile = profile.to_string();
        }
        entry.version = version;
        entry
    }

    /// Takes a sample from `metrics.<server>` when the window keeper's rule accepts it.
    pub fn apply_sample(&mut self, subject: &str, payload: &[u8], now_ms: i64) -> Change {
        let sample = match samples::decode(payload) {
            Ok(sample) => sample,
            Err(_) => {
                self.received.samples_refused += 1;
                return Change::None;
            }
        };
        let Ok(Checked { step, profile }) = self.gate.check(last_token(subject), &sample, now_ms)
        else {
            self.received.samples_refused += 1;
            return Change::None;
        };
        self.received.samples += 1;
        self.gate.accept(sample.server, step);
        let known_profile = self
            .servers
            .get(sample.server)
            .map(|entry| entry.profile.clone());
        let profile = profile
            .map(|profile| profile.name().to_string())
            .or(known_profile)
            .unwrap_or_else(|| Profile::infer(sample.server).name().to_string());
        let recent_steps = self.recent_steps;
        let entry = self.touch(sample.server, &profile);
        entry.sample_ms = Some(
            entry
                .sample_ms
                .map_or(sample.ts_ms, |ms| ms.max(sample.ts_ms)),
        );
        let metrics = &sample.metrics;
        for metric in Metric::ALL {
            if metrics.present & (1 << metric.index()) != 0 {
                entry.current[metric.index()] = metrics.values[metric.index()];
            }
        }
        entry.present |= metrics.present;
        add_to_recent(
            &mut entry.recent,
            step,
            &metrics.values,
            metrics.present,
            recent_steps,
        );
        Change::Sample(sample.server.to_string())
    }

    /// Takes a forecast unless an equal or newer one is held.
    pub fn apply_forecast(&mut self, payload: &[u8]) -> Result<Change, DecodeError> {
        let forecast: Forecast = wire::decode(payload)?;
        self.received.forecasts += 1;
        if let Some(held) = self
            .servers
            .get(&forecast.server)
            .and_then(|entry| entry.forecast.as_ref())
            && (held.origin_s, held.issued_ms) >= (forecast.origin_s, forecast.issued_ms)
        {
            return Ok(Change::None);
        }
        let server = forecast.server.clone();
        let profile = forecast.profile.clone();
        self.touch(&server, &profile).forecast = Some(Arc::new(forecast));
        Ok(Change::Forecast(server))
    }

    /// Takes a risk score unless a newer one is held.
    pub fn apply_risk(&mut self, payload: &[u8]) -> Result<Change, DecodeError> {
        let risk: RiskScore = wire::decode(payload)?;
        self.received.risk += 1;
        if let Some(held) = self
            .servers
            .get(&risk.server)
            .and_then(|entry| entry.risk.as_ref())
            && (held.sample_ms, held.at_ms) >= (risk.sample_ms, risk.at_ms)
        {
            return Ok(Change::None);
        }
        let risk = Arc::new(risk);
        let profile = risk.profile.clone();
        self.touch(&risk.server, &profile).risk = Some(risk.clone());
        Ok(Change::Risk(risk))
    }

    /// Takes an alert event: a resolve closes the alert, any other action opens or updates it.
    pub fn apply_alert(&mut self, payload: &[u8]) -> Result<Change, DecodeError> {
        let event: AlertEvent = wire::decode(payload)?;
        self.received.alerts += 1;
        if let Some(held) = self
            .servers
            .get(&event.server)
            .and_then(|entry| entry.alerts.get(&event.id))
            && (held.at_ms > event.at_ms
                || (held.at_ms == event.at_ms && held.action == event.action))
        {
            return Ok(Change::None);
        }
        let event = Arc::new(event);
        let profile = event.profile.clone();
        let entry = self.touch(&event.server, &profile);
        if event.action == AlertAction::Resolve {
            entry.alerts.remove(&event.id);
        } else {
            entry.alerts.insert(event.id.clone(), event.clone());
        }
        Ok(Change::Alert(event))
    }

    /// Takes a fleet summary unless a newer one is held.
    pub fn apply_summary(&mut self, payload: &[u8]) -> Result<Change, DecodeError> {
        let summary: FleetSummary = wire::decode(payload)?;
        self.received.summaries += 1;
        if self
            .summary
            .as_ref()
            .is_some_and(|held| held.at_ms > summary.at_ms)
        {
            return Ok(Change::None);
        }
        self.version += 1;
        let summary = Arc::new(summary);
        self.summary = Some(summary.clone());
        Ok(Change::Summary(summary))
    }

    /// Takes a stage's status.
    pub fn apply_status(&mut self, payload: &[u8]) -> Result<Change, DecodeError> {
        let status: StageStatus = wire::decode(payload)?;
        self.received.statuses += 1;
        self.version += 1;
        let status = Arc::new(status);
        self.stages.insert(status.stage.clone(), status.clone());
        Ok(Change::Status(status))
    }

    /// Open alerts of the whole fleet.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Arc<AlertEvent>> {
        self.servers
            .values()
            .flat_map(|entry| entry.alerts.values())
    }

    /// The fleet's "now" for history ranges: the later of the wall clock and the newest sample
    /// (a simulated clock may run ahead of the wall).
    pub fn fleet_now_ms(&self, wall_ms: i64) -> i64 {
        self.gate
            .fleet_clock_ms()
            .map_or(wall_ms, |clock| clock.max(wall_ms))
    }
}

/// Adds a sample's values to the step means, keeping the newest `keep` steps.
fn add_to_recent(
    recent: &mut VecDeque<StepMeans>,
    step: i64,
    values: &[f64; METRIC_COUNT],
    present: u16,
    keep: usize,
) {
    if recent.back().is_none_or(|last| last.step < step) {
        recent.push_back(StepMeans {
            step,
            values: [f32::NAN; METRIC_COUNT],
            counts: [0; METRIC_COUNT],
        });
        while recent.len() > keep {
            recent.pop_front();
        }
    }
    // A sample of an earlier kept step (accepted: the keeper's open step may lag) is folded in.
    let Some(means) = recent.iter_mut().rev().find(|means| means.step == step) else {
        return;
    };
    let slots = means.values.iter_mut().zip(means.counts.iter_mut());
    for (index, ((mean, count), &value)) in slots.zip(values).enumerate() {
        if present & (1 << index) == 0 {
            continue;
        }
        *count = count.saturating_add(1);
        let value = value as f32;
        *mean = if *count == 1 {
            value
        } else {
            *mean + (value - *mean) / f32::from(*count)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::WindowShape;
    use crate::wire::{MetricSample, SCHEMA_VERSION};

    const STEP_MS: i64 = 300_000;
    const T0: i64 = 1_700_000_100_000 / STEP_MS * STEP_MS;

    fn snapshot() -> Snapshot {
        Snapshot::new(
            Scale::default(),
            IngestRules {
                shape: WindowShape {
                    context_steps: 288,
                    step_seconds: 300,
                },
                max_future_ms: 600_000,
                min_observed: 24,
            },
            3,
        )
    }

    fn sample(server: &str, ts_ms: i64, cpu: f64) -> Vec<u8> {
        wire::encode(&MetricSample {
            v: SCHEMA_VERSION,
            server: server.into(),
            ts_ms,
            profile: None,
            metrics: BTreeMap::from([("cpu_user_pct".to_string(), cpu)]),
        })
    }

    /// Samples fill the current values and step means; the keeper's refusals (out of order,
    /// out of range) change nothing.
    #[test]
    fn samples_follow_the_keepers_rule() {
        let mut snapshot = snapshot();
        let subject = "fleetcast.metrics.ppdb001";
        for (step, cpu) in [(0, 10.0), (0, 20.0), (1, 30.0), (2, 40.0), (3, 50.0)] {
            let change =
                snapshot.apply_sample(subject, &sample("ppdb001", T0 + step * STEP_MS, cpu), T0);
            assert!(matches!(change, Change::Sample(_)), "{change:?}");
        }
        let entry = &snapshot.servers["ppdb001"];
        assert_eq!(entry.profile, "database");
        assert_eq!(entry.current_of(Metric::CpuUserPct), Some(50.0));
        assert_eq!(entry.current_of(Metric::MemUsedPct), None);
        let means: Vec<f32> = entry.recent.iter().map(|m| m.values[0]).collect();
        assert_eq!(means, [30.0, 40.0, 50.0], "three steps kept");
        let late = snapshot.apply_sample(subject, &sample("ppdb001", T0, 1.0), T0);
        assert!(matches!(late, Change::None));
        let bad = snapshot.apply_sample(subject, &sample("ppdb001", T0 + 3 * STEP_MS, 140.0), T0);
        assert!(matches!(bad, Change::None));
        let wrong_subject = snapshot.apply_sample(
            "fleetcast.metrics.other",
            &sample("ppdb001", T0 + 4 * STEP_MS, 1.0),
            T0,
        );
        assert!(matches!(wrong_subject, Change::None));
        assert_eq!(snapshot.received.samples_refused, 3);
        assert_eq!(
            snapshot.servers["ppdb001"].current_of(Metric::CpuUserPct),
            Some(50.0)
        );
    }

    fn alert(id: &str, action: AlertAction, at_ms: i64) -> Vec<u8> {
        wire::encode(&AlertEvent {
            v: SCHEMA_VERSION,
            id: id.into(),
            server: "a".into(),
            profile: "generic".into(),
            subject: "risk".into(),
            action,
            severity: if action == AlertAction::Resolve {
                "healthy"
            } else {
                "warning"
            }
            .into(),
            previous: "healthy".into(),
            value: 50.0,
            reason: "test".into(),
            opened_ms: 0,
            at_ms,
            open_seconds: 0.0,
            previous_seconds: 0.0,
        })
    }

    /// An alert opens on raise, a duplicate changes nothing, a resolve closes it.
    #[test]
    fn alerts_open_and_close() {
        let mut snapshot = snapshot();
        assert!(matches!(
            snapshot
                .apply_alert(&alert("x", AlertAction::Raise, 1))
                .unwrap(),
            Change::Alert(_)
        ));
        assert!(matches!(
            snapshot
                .apply_alert(&alert("x", AlertAction::Raise, 1))
                .unwrap(),
            Change::None
        ));
        assert_eq!(snapshot.open_alerts().count(), 1);
        assert!(matches!(
            snapshot
                .apply_alert(&alert("x", AlertAction::Resolve, 2))
                .unwrap(),
            Change::Alert(_)
        ));
        assert_eq!(snapshot.open_alerts().count(), 0);
        assert!(snapshot.apply_alert(b"\xc1").is_err());
    }
}
