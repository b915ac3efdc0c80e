//! Every NATS subject fleetcast uses, and the JetStream streams that hold them.
//!
//! Nothing else in the crate spells a subject. All subjects share one prefix (setting
//! `nats.prefix`, default `fleetcast`); `nats/SUBJECTS.md` documents each one's payload.

/// Subject builder for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix` (validated by the settings: letters, digits, `-`, `_`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One server's samples: `<prefix>.metrics.<server>` (payload `MetricSample`).
    pub fn metrics(&self, server: &str) -> String {
        format!("{}.metrics.{server}", self.prefix)
    }

    /// Every server's samples: `<prefix>.metrics.>`.
    pub fn metrics_all(&self) -> String {
        format!("{}.metrics.>", self.prefix)
    }

    /// Dead letters of one stage: `<prefix>.rejected.<stage>` (payload `Rejection`).
    pub fn rejected(&self, stage: &str) -> String {
        format!("{}.rejected.{stage}", self.prefix)
    }

    /// Every stage's dead letters: `<prefix>.rejected.>`.
    pub fn rejected_all(&self) -> String {
        format!("{}.rejected.>", self.prefix)
    }

    /// Forecast jobs for the predictor workers: `<prefix>.jobs.predict.<server>`
    /// (payload `PredictJob`).
    pub fn predict_job(&self, server: &str) -> String {
        format!("{}.jobs.predict.{server}", self.prefix)
    }

    /// Every forecast job: `<prefix>.jobs.predict.>`.
    pub fn predict_jobs_all(&self) -> String {
        format!("{}.jobs.predict.>", self.prefix)
    }

    /// One server's forecasts: `<prefix>.forecasts.<server>` (payload `Forecast`).
    pub fn forecasts(&self, server: &str) -> String {
        format!("{}.forecasts.{server}", self.prefix)
    }

    /// Whether `subject` is a forecast's (`<prefix>.forecasts.…`); no allocation, for the
    /// per-message dispatch of stages that consume forecasts beside something else.
    pub fn is_forecast(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with(".forecasts."))
    }

    /// Every forecast: `<prefix>.forecasts.>`.
    pub fn forecasts_all(&self) -> String {
        format!("{}.forecasts.>", self.prefix)
    }

    /// One server's risk: `<prefix>.risk.<server>` (payload `RiskScore`).
    pub fn risk(&self, server: &str) -> String {
        format!("{}.risk.{server}", self.prefix)
    }

    /// Every risk score: `<prefix>.risk.>`.
    pub fn risk_all(&self) -> String {
        format!("{}.risk.>", self.prefix)
    }

    /// Alert events: `<prefix>.alerts.<severity>.<server>` (payload `AlertEvent`).
    pub fn alerts(&self, severity: &str, server: &str) -> String {
        format!("{}.alerts.{severity}.{server}", self.prefix)
    }

    /// Every alert event: `<prefix>.alerts.>`.
    pub fn alerts_all(&self) -> String {
        format!("{}.alerts.>", self.prefix)
    }

    /// Periodic fleet summary: `<prefix>.summary.fleet` (payload `FleetSummary`).
    pub fn fleet_summary(&self) -> String {
        format!("{}.summary.fleet", self.prefix)
    }

    /// Periodic status of one stage: `<prefix>.status.<stage>` (e.g. warm-up progress).
    pub fn status(&self, stage: &str) -> String {
        format!("{}.status.{stage}", self.prefix)
    }

    /// Request/reply: switch the generator's scenario (payload `ScenarioRequest`).
    pub fn control_scenario(&self) -> String {
        format!("{}.control.scenario", self.prefix)
    }

    /// Request/reply: load a new model into every predictor worker (payload `ModelLoadRequest`).
    pub fn control_model_load(&self) -> String {
        format!("{}.control.model.load", self.prefix)
    }

    /// JetStream stream names, derived from the prefix so two deployments never share one.
    pub fn stream_name(&self, kind: StreamKind) -> String {
        format!(
            "{}_{}",
            self.prefix.to_uppercase().replace('-', "_"),
            kind.suffix()
        )
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("fleetcast")
    }
}

/// The JetStream streams of the design's durability section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `metrics.>`: lets a restarted window keeper rebuild its windows.
    Metrics,
    /// `jobs.predict.>`: the predictor work queue, acked after the forecast is published.
    PredictJobs,
    /// `forecasts.>`: latest per server.
    Forecasts,
    /// `risk.>`: latest per server.
    Risk,
    /// `alerts.>`: history, replayable.
    Alerts,
}

impl StreamKind {
    fn suffix(self) -> &'static str {
        match self {
            StreamKind::Metrics => "METRICS",
            StreamKind::PredictJobs => "PREDICT_JOBS",
            StreamKind::Forecasts => "FORECASTS",
            StreamKind::Risk => "RISK",
            StreamKind::Alerts => "ALERTS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forecast subject is recognised under its own prefix only.
    #[test]
    fn forecast_subjects_are_recognised() {
        let subjects = Subjects::new("fc");
        assert!(subjects.is_forecast(&subjects.forecasts("a")));
        assert!(!subjects.is_forecast(&subjects.risk("a")));
        assert!(!subjects.is_forecast("fcx.forecasts.a"));
        assert!(!subjects.is_forecast(&Subjects::new("other").forecasts("a")));
    }

    /// Subjects carry the prefix and the server token where the design says.
    #[test]
    fn subjects_follow_the_design() {
        let subjects = Subjects::new("fc");
        assert_eq!(subjects.metrics("ppdb001"), "fc.metrics.ppdb001");
        assert_eq!(subjects.alerts("critical", "a"), "fc.alerts.critical.a");
        assert_eq!(
            subjects.stream_name(StreamKind::PredictJobs),
            "FC_PREDICT_JOBS"
        );
        assert_eq!(
            Subjects::new("my-fleet").stream_name(StreamKind::Metrics),
            "MY_FLEET_METRICS"
        );
    }
}
