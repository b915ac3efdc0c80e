//! Every NATS subject fleetcast uses, and the JetStream streams that hold them.
//!
//! Nothing else in the crate spells a subject or takes one apart: [`Subjects`] builds them,
//! [`Subjects::parse`] and [`Subjects::server_of`] read them. All subjects share one prefix
//! (setting `nats.prefix`, default `fleetcast`); `nats/SUBJECTS.md` documents each one's
//! payload.

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

    /// One server's alerts of every severity (`alerts.*.<server>`).
    pub fn alerts_of(&self, server: &str) -> String {
        format!("{}.alerts.*.{server}", self.prefix)
    }

    /// Periodic fleet summary: `<prefix>.summary.fleet` (payload `FleetSummary`).
    pub fn fleet_summary(&self) -> String {
        format!("{}.summary.fleet", self.prefix)
    }

    /// Periodic status of one stage: `<prefix>.status.<stage>` (e.g. warm-up progress).
    pub fn status(&self, stage: &str) -> String {
        format!("{}.status.{stage}", self.prefix)
    }

    /// Every stage's status (`status.>`).
    pub fn status_all(&self) -> String {
        format!("{}.status.>", self.prefix)
    }

    /// Request/reply: switch the generator's scenario (payload `ScenarioRequest`).
    pub fn control_scenario(&self) -> String {
        format!("{}.control.scenario", self.prefix)
    }

    /// Request/reply: load a new model into every predictor worker (payload `ModelLoadRequest`).
    pub fn control_model_load(&self) -> String {
        format!("{}.control.model.load", self.prefix)
    }

    /// A stage instance's report endpoint (NATS micro, payload `StageReport`):
    /// `<prefix>.control.report.<stage>.<service id>`.
    pub fn stage_report(&self, stage: &str, id: &str) -> String {
        format!("{}.control.report.{stage}.{id}", self.prefix)
    }

    /// Every stage's report endpoint: `<prefix>.control.report.>`.
    pub fn stage_reports_all(&self) -> String {
        format!("{}.control.report.>", self.prefix)
    }

    /// What `subject` is, when it is one of this prefix's; `None` for anything else
    /// (another prefix, an unknown family, a missing or extra token).
    pub fn parse<'a>(&self, subject: &'a str) -> Option<Subject<'a>> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        let mut tokens = rest.split('.');
        let family = tokens.next()?;
        let first = tokens.next();
        let second = tokens.next();
        let third = tokens.next();
        let parsed = match (family, first, second, third) {
            ("metrics", Some(server), None, None) => Subject::Metrics { server },
            ("rejected", Some(stage), None, None) => Subject::Rejected { stage },
            ("status", Some(stage), None, None) => Subject::Status { stage },
            ("jobs", Some("predict"), Some(server), None) => Subject::PredictJob { server },
            ("forecasts", Some(server), None, None) => Subject::Forecast { server },
            ("risk", Some(server), None, None) => Subject::Risk { server },
            ("alerts", Some(severity), Some(server), None) => Subject::Alert { severity, server },
            ("summary", Some("fleet"), None, None) => Subject::FleetSummary,
            ("control", Some("scenario"), None, None) => Subject::ControlScenario,
            ("control", Some("model"), Some("load"), None) => Subject::ControlModelLoad,
            ("control", Some("report"), Some(stage), Some(id)) if tokens.next().is_none() => {
                Subject::StageReport { stage, id }
            }
            _ => return None,
        };
        if tokens.next().is_some() || parsed.tokens().any(str::is_empty) {
            return None;
        }
        Some(parsed)
    }

    /// The server a per-server subject (`metrics`, `jobs.predict`, `forecasts`, `risk`,
    /// `alerts`) names, when it is a valid server name.
    pub fn server_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        self.parse(subject)?
            .server()
            .filter(|server| crate::catalog::is_valid_server_name(server))
    }

    /// JetStream stream names, derived from the prefix so two deployments never share one.
    pub fn stream_name(&self, kind: StreamKind) -> String {
        format!("{}{}", self.stream_prefix(), kind.suffix())
    }

    /// The durable consumer through which `stage` reads stream `kind`
    /// (`risk_scorer-metrics`, `alert_router-forecasts`, ...). Consumer names live inside
    /// their stream, so they need no prefix.
    pub fn durable_consumer(&self, stage: &str, kind: StreamKind) -> String {
        format!("{stage}-{}", kind.suffix().to_lowercase())
    }

    /// What every stream name of this deployment starts with (`FLEETCAST_`).
    pub fn stream_prefix(&self) -> String {
        format!("{}_", self.prefix.to_uppercase().replace('-', "_"))
    }

    /// The stream holding `stage`'s partitioned input (`FLEETCAST_IN_RISK_SCORER`): it
    /// sources the stage's input streams with [`Subjects::partition_transform`].
    pub fn partition_stream(&self, stage: &str) -> String {
        format!("{}IN_{}", self.stream_prefix(), stage.to_uppercase())
    }

    /// The transform (`(source, destination)`) a partitioned input stream sources stream
    /// `kind` with: `<prefix>.metrics.*` becomes
    /// `<prefix>.part.<stage>.{{partition(<count>,1)}}.<prefix>.metrics.{{wildcard(1)}}`,
    /// the partition (a stable hash of the server name) in front of the original subject.
    /// `None` for a stream whose subjects do not end in one server token.
    pub fn partition_transform(
        &self,
        stage: &str,
        count: u32,
        kind: StreamKind,
    ) -> Option<(String, String)> {
        let token = match kind {
            StreamKind::Metrics => "metrics",
            StreamKind::Forecasts => "forecasts",
            StreamKind::Risk => "risk",
            StreamKind::PredictJobs | StreamKind::Alerts => return None,
        };
        let prefix = &self.prefix;
        Some((
            format!("{prefix}.{token}.*"),
            format!(
                "{prefix}.part.{stage}.{{{{partition({count},1)}}}}.{prefix}.{token}.{{{{wildcard(1)}}}}"
            ),
        ))
    }

    /// Everything of one partition in `stage`'s partitioned input stream:
    /// `<prefix>.part.<stage>.<partition>.>`.
    pub fn partition_input(&self, stage: &str, partition: u32) -> String {
        format!("{}.part.{stage}.{partition}.>", self.prefix)
    }

    /// A subject of `stage`'s partitioned input stream taken apart: its partition and the
    /// original subject (`<prefix>.metrics.<server>`).
    pub fn partition_original<'a>(&self, stage: &str, subject: &'a str) -> Option<(u32, &'a str)> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".part.")?
            .strip_prefix(stage)?
            .strip_prefix('.')?;
        let (partition, original) = rest.split_once('.')?;
        Some((partition.parse().ok()?, original))
    }

    /// The durable consumer through which `stage` reads one partition (`risk_scorer-p3`).
    pub fn partition_consumer(&self, stage: &str, partition: u32) -> String {
        format!("{stage}-p{partition}")
    }

    /// The key-value bucket of the partitions' leases (`FLEETCAST_PARTITIONS`).
    pub fn partitions_bucket(&self) -> String {
        format!("{}PARTITIONS", self.stream_prefix())
    }

    /// The lease key of one partition of `stage` (`risk_scorer.3`); its value is the owner.
    pub fn lease_key(&self, stage: &str, partition: u32) -> String {
        format!("{stage}.{partition}")
    }

    /// The key by which an instance of `stage` says it is alive (`risk_scorer.member.<owner>`).
    pub fn member_key(&self, stage: &str, owner: &str) -> String {
        format!("{stage}.member.{owner}")
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("fleetcast")
    }
}

/// A subject taken apart by [`Subjects::parse`]; the variables borrow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// `metrics.<server>`.
    Metrics {
        /// The server token.
        server: &'a str,
    },
    /// `rejected.<stage>`.
    Rejected {
        /// The stage.
        stage: &'a str,
    },
    /// `status.<stage>`.
    Status {
        /// The stage.
        stage: &'a str,
    },
    /// `jobs.predict.<server>`.
    PredictJob {
        /// The server token.
        server: &'a str,
    },
    /// `forecasts.<server>`.
    Forecast {
        /// The server token.
        server: &'a str,
    },
    /// `risk.<server>`.
    Risk {
        /// The server token.
        server: &'a str,
    },
    /// `alerts.<severity>.<server>`.
    Alert {
        /// The severity token.
        severity: &'a str,
        /// The server token.
        server: &'a str,
    },
    /// `summary.fleet`.
    FleetSummary,
    /// `control.scenario`.
    ControlScenario,
    /// `control.model.load`.
    ControlModelLoad,
    /// `control.report.<stage>.<id>`.
    StageReport {
        /// The stage.
        stage: &'a str,
        /// The instance's service id.
        id: &'a str,
    },
}

impl<'a> Subject<'a> {
    /// The server token, for per-server subjects.
    pub fn server(self) -> Option<&'a str> {
        match self {
            Subject::Metrics { server }
            | Subject::PredictJob { server }
            | Subject::Forecast { server }
            | Subject::Risk { server }
            | Subject::Alert { server, .. } => Some(server),
            _ => None,
        }
    }

    /// The variable tokens (servers, stages, severities, ids).
    fn tokens(self) -> impl Iterator<Item = &'a str> {
        let (first, second) = match self {
            Subject::Metrics { server }
            | Subject::PredictJob { server }
            | Subject::Forecast { server }
            | Subject::Risk { server } => (Some(server), None),
            Subject::Rejected { stage } | Subject::Status { stage } => (Some(stage), None),
            Subject::Alert { severity, server } => (Some(severity), Some(server)),
            Subject::StageReport { stage, id } => (Some(stage), Some(id)),
            Subject::FleetSummary | Subject::ControlScenario | Subject::ControlModelLoad => {
                (None, None)
            }
        };
        first.into_iter().chain(second)
    }
}

/// The JetStream streams of the design's durability section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `metrics.>`: lets a restarted window keeper rebuild its windows.
    Metrics,
    /// `jobs.predict.>`: the predictor work queue, acked after the forecast is published.
    PredictJobs,
    /// `forecasts.>`: the latest `nats.forecast_history` per server (read through durable
    /// consumers by the risk scorer and the alert router; "the latest" is the last per
    /// subject).
    Forecasts,
    /// `risk.>`: the latest `nats.risk_history` per server (the alert router's durable
    /// consumer reads it).
    Risk,
    /// `alerts.>`: history, replayable.
    Alerts,
}

impl StreamKind {
    /// Every stream, in the pipeline's order.
    pub const ALL: [StreamKind; 5] = [
        StreamKind::Metrics,
        StreamKind::PredictJobs,
        StreamKind::Forecasts,
        StreamKind::Risk,
        StreamKind::Alerts,
    ];

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

    /// A partitioned input subject gives back its partition and the original subject.
    #[test]
    fn partition_subjects_round_trip() {
        let subjects = Subjects::new("fc");
        let (source, destination) = subjects
            .partition_transform("risk_scorer", 4, StreamKind::Metrics)
            .unwrap();
        assert_eq!(source, "fc.metrics.*");
        assert_eq!(
            destination,
            "fc.part.risk_scorer.{{partition(4,1)}}.fc.metrics.{{wildcard(1)}}"
        );
        assert_eq!(
            subjects.partition_original("risk_scorer", "fc.part.risk_scorer.3.fc.metrics.a-1"),
            Some((3, "fc.metrics.a-1"))
        );
        assert_eq!(
            subjects.partition_original("alert_router", "fc.part.risk_scorer.3.fc.metrics.a"),
            None
        );
        assert_eq!(
            subjects.partition_input("risk_scorer", 2),
            "fc.part.risk_scorer.2.>"
        );
        assert!(
            subjects
                .partition_transform("x", 2, StreamKind::Alerts)
                .is_none()
        );
    }

    /// A forecast subject is recognised under its own prefix only.
    #[test]
    fn forecast_subjects_are_recognised() {
        let subjects = Subjects::new("fc");
        assert!(subjects.is_forecast(&subjects.forecasts("a")));
        assert!(!subjects.is_forecast(&subjects.risk("a")));
        assert!(!subjects.is_forecast("fcx.forecasts.a"));
        assert!(!subjects.is_forecast(&Subjects::new("other").forecasts("a")));
    }

    /// Every subject the builder makes parses back to what it was built from; other
    /// prefixes, families, missing and extra tokens do not parse.
    #[test]
    fn subjects_parse_back() {
        let subjects = Subjects::new("fc");
        let cases = [
            (subjects.metrics("a"), Subject::Metrics { server: "a" }),
            (
                subjects.rejected("generator"),
                Subject::Rejected { stage: "generator" },
            ),
            (
                subjects.status("window_keeper"),
                Subject::Status {
                    stage: "window_keeper",
                },
            ),
            (
                subjects.predict_job("a"),
                Subject::PredictJob { server: "a" },
            ),
            (subjects.forecasts("a"), Subject::Forecast { server: "a" }),
            (subjects.risk("a"), Subject::Risk { server: "a" }),
            (
                subjects.alerts("critical", "a"),
                Subject::Alert {
                    severity: "critical",
                    server: "a",
                },
            ),
            (subjects.fleet_summary(), Subject::FleetSummary),
            (subjects.control_scenario(), Subject::ControlScenario),
            (subjects.control_model_load(), Subject::ControlModelLoad),
            (
                subjects.stage_report("risk_scorer", "ID1"),
                Subject::StageReport {
                    stage: "risk_scorer",
                    id: "ID1",
                },
            ),
        ];
        for (subject, expected) in cases {
            assert_eq!(subjects.parse(&subject), Some(expected), "{subject}");
        }
        for bad in [
            "fc.metrics",
            "fc.metrics.a.b",
            "fcx.metrics.a",
            "other.metrics.a",
            "fc.nothing.a",
            "fc.metrics.",
            "fc",
        ] {
            assert_eq!(subjects.parse(bad), None, "{bad}");
        }
        assert_eq!(
            subjects.server_of("fc.alerts.warning.ppdb001"),
            Some("ppdb001")
        );
        assert_eq!(subjects.server_of("fc.summary.fleet"), None);
        assert_eq!(subjects.server_of("fc.metrics.bad name"), None);
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
        assert_eq!(
            subjects.durable_consumer("risk_scorer", StreamKind::Forecasts),
            "risk_scorer-forecasts"
        );
    }
}
