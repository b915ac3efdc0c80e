//! Every server's window and the ingest rule, with no I/O: payload in, verdict out.
//!
//! [`Fleet::ingest`] decodes a payload, validates it (content, then the timestamp against the
//! fleet's clock and the server's open step) and adds it to its server's window. A sample with
//! any problem is refused whole and touches no window.
//!
//! **Future timestamps.** A sample is refused when it is stamped more than
//! `max_future_seconds` after the *later* of the wall clock and the end of the newest step the
//! keeper has accepted from any server. The generator runs a simulated clock many times faster
//! than real time, so the wall clock alone would refuse it; the fleet's own newest step lets a
//! simulated clock advance step by step while a single sample stamped days ahead is still
//! refused.

use super::window::{Added, ServerWindow};
use crate::catalog::{Metric, Profile};
use crate::samples::{self, Checked, IngestRules, Invalid, validate};
use crate::wire::{PREDICT_JOB_VERSION, PredictJob, RejectKind};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// What became of one payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Added to its server's window.
    Accepted {
        /// The sample closed its server's open step.
        closed_step: bool,
        /// Gap steps it revealed (steps with no sample before it).
        gap_steps: u64,
        /// A step closed and some metric of the server has enough observed steps: time for a
        /// predict job.
        job_ready: bool,
    },
    /// Refused.
    Rejected {
        /// The server, when it could be read.
        server: Option<String>,
        /// What was wrong (the first problem).
        kind: RejectKind,
        /// Every problem in words.
        reason: String,
    },
}

/// Every server's window, keyed by name.
#[derive(Debug)]
pub struct Fleet {
    rules: IngestRules,
    servers: HashMap<Box<str>, ServerWindow, BuildHasherDefault<FnvHasher>>,
    /// End of the newest step accepted from any server, unix ms (the simulated clock).
    newest_step_end_ms: i64,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(rules: IngestRules) -> Self {
        Self {
            rules,
            servers: HashMap::default(),
            newest_step_end_ms: i64::MIN,
        }
    }

    /// The rules it validates with.
    pub fn rules(&self) -> IngestRules {
        self.rules
    }

    /// Decodes, validates and aggregates one payload that arrived on a subject whose last
    /// token is `subject_server`, at wall-clock `now_ms`.
    pub fn ingest(&mut self, subject_server: &str, payload: &[u8], now_ms: i64) -> Verdict {
        let sample = match samples::decode(payload) {
            Ok(sample) => sample,
            Err(error) => {
                return Verdict::Rejected {
                    server: None,
                    kind: error.kind(),
                    reason: error.to_string(),
                };
            }
        };
        let known = self.servers.get(sample.server);
        let is_new = known.is_none();
        let open_step = known.and_then(ServerWindow::open_step);
        let checked = match validate(
            &self.rules,
            &sample,
            subject_server,
            now_ms.max(self.newest_step_end_ms),
            open_step,
        ) {
            Ok(checked) => checked,
            Err(Invalid { kind, reason }) => {
                let server = (!sample.server.is_empty()).then(|| sample.server.to_string());
                return Verdict::Rejected {
                    server,
                    kind,
                    reason,
                };
            }
        };
        let Checked {
            step,
            profile: given_profile,
        } = checked;
        let shape = self.rules.shape;
        if is_new {
            let profile = given_profile.unwrap_or_else(|| Profile::infer(sample.server));
            self.servers.insert(
                sample.server.into(),
                ServerWindow::new(profile, shape.context_steps),
            );
        }
        let window = self
            .servers
            .get_mut(sample.server)
            .expect("inserted above when new");
        if let Some(profile) = given_profile {
            window.profile = profile;
        }
        let Added {
            closed_step,
            gap_steps,
        } = window
            .add(step, &sample.metrics.values, sample.metrics.present)
            .expect("order checked above");
        let step_end_ms = (step + 1).saturating_mul(shape.step_seconds * 1000);
        self.newest_step_end_ms = self.newest_step_end_ms.max(step_end_ms);
        Verdict::Accepted {
            closed_step,
            gap_steps,
            job_ready: closed_step && window.is_ready(self.rules.min_observed),
        }
    }

    /// One server's window.
    pub fn window(&self, server: &str) -> Option<&ServerWindow> {
        self.servers.get(server)
    }

    /// Every server and its window, in no particular order.
    pub fn windows(&self) -> impl Iterator<Item = (&str, &ServerWindow)> {
        self.servers
            .iter()
            .map(|(server, window)| (&**server, window))
    }

    /// Servers tracked.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether no server is tracked.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Servers ready to forecast (some metric with enough observed steps), and fleet warm-up
    /// 0–100: the mean over servers of their progress to their first forecast (observed steps
    /// of their best metric over the steps needed, at most 1).
    pub fn warmup(&self) -> (usize, f64) {
        if self.servers.is_empty() {
            return (0, 0.0);
        }
        let needed = self.rules.min_observed.max(1) as f64;
        let mut ready = 0;
        let mut progress = 0.0;
        for window in self.servers.values() {
            ready += usize::from(window.is_ready(self.rules.min_observed));
            progress += (window.observed_most() as f64 / needed).min(1.0);
        }
        (ready, 100.0 * progress / self.servers.len() as f64)
    }

    /// The newest closed step of `server` (steps since the epoch), when it has one.
    pub fn newest_closed_step(&self, server: &str) -> Option<i64> {
        self.servers.get(server)?.newest_closed_step()
    }

    /// The predict job for a server's current window: every metric with enough observed steps,
    /// each over the full context (NaN where not observed); `None` when no metric has enough.
    pub fn job(&self, server: &str) -> Option<PredictJob> {
        let window = self.servers.get(server)?;
        let forecastable = window.forecastable(self.rules.min_observed);
        if forecastable == 0 {
            return None;
        }
        let shape = self.rules.shape;
        let metrics: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|metric| forecastable & (1 << metric.index()) != 0)
            .collect();
        let mut values = Vec::with_capacity(window.capacity() * metrics.len());
        for &metric in &metrics {
            window.series_into(metric, &mut values);
        }
        Some(PredictJob {
            v: PREDICT_JOB_VERSION,
            server: server.to_string(),
            profile: window.profile.name().to_string(),
            last_step_s: shape.step_start_s(window.newest_closed_step()?),
            step_seconds: shape.step_seconds as u32,
            steps: window.capacity() as u32,
            metrics: metrics
                .iter()
                .map(|metric| metric.name().to_string())
                .collect(),
            values,
            gap_steps: window.gap_steps() as u32,
        })
    }

    /// Bytes held by the windows and the map (keys and table included), an estimate from the
    /// data structures' sizes.
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(Box<str>, ServerWindow)>() + 1;
        self.servers.capacity() * entry
            + self
                .servers
                .iter()
                .map(|(server, window)| server.len() + window.memory_bytes())
                .sum::<usize>()
    }
}

/// FNV-1a: server names are short, and SipHash's flood resistance buys nothing here that a
/// bounded, validated name space does not (names are subject tokens of at most 128 bytes).
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Metric;
    use crate::samples::WindowShape;
    use crate::wire::{self, MetricSample, SCHEMA_VERSION};

    const STEP_MS: i64 = 300_000;
    const T0: i64 = 1_700_000_100_000 / STEP_MS * STEP_MS;

    fn fleet(context_steps: usize) -> Fleet {
        Fleet::new(IngestRules {
            shape: WindowShape {
                context_steps,
                step_seconds: 300,
            },
            max_future_ms: 600_000,
            min_observed: 2,
        })
    }

    fn payload_of(server: &str, ts_ms: i64, value: f64, metrics: &[Metric]) -> Vec<u8> {
        wire::encode(&MetricSample {
            v: SCHEMA_VERSION,
            server: server.into(),
            ts_ms,
            profile: None,
            metrics: metrics
                .iter()
                .map(|metric| (metric.name().to_string(), value))
                .collect(),
        })
    }

    fn payload(server: &str, ts_ms: i64, value: f64) -> Vec<u8> {
        payload_of(server, ts_ms, value, &Metric::ALL)
    }

    fn kind(verdict: Verdict) -> RejectKind {
        match verdict {
            Verdict::Rejected { kind, .. } => kind,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// A job appears when a step closes and a metric has `min_observed` steps, each metric's
    /// context oldest first, padded with NaN in front.
    #[test]
    fn job_after_min_observed_steps() {
        let mut fleet = fleet(3);
        for step in 0..2 {
            let verdict = fleet.ingest(
                "ppdb001",
                &payload("ppdb001", T0 + step * STEP_MS, step as f64),
                T0,
            );
            assert!(matches!(
                verdict,
                Verdict::Accepted {
                    job_ready: false,
                    ..
                }
            ));
        }
        let verdict = fleet.ingest("ppdb001", &payload("ppdb001", T0 + 2 * STEP_MS, 2.0), T0);
        assert!(matches!(
            verdict,
            Verdict::Accepted {
                job_ready: true,
                ..
            }
        ));
        let job = fleet.job("ppdb001").unwrap();
        assert_eq!(job.metrics.len(), 14);
        assert_eq!(job.steps, 3);
        assert_eq!(job.values.len(), 3 * 14);
        assert!(job.values[0].is_nan(), "before the first step");
        assert_eq!(&job.values[1..3], &[0.0, 1.0]);
        assert_eq!(job.last_step_s, (T0 + STEP_MS) / 1000);
        assert_eq!(job.profile, "database");
        assert_eq!(job.gap_steps, 0);
    }

    /// A server reporting only CPU and memory gets jobs for exactly those two metrics.
    #[test]
    fn job_carries_only_reported_metrics() {
        let mut fleet = fleet(3);
        let reported = [Metric::CpuUserPct, Metric::MemUsedPct];
        for step in 0..3 {
            let sample = payload_of("web001", T0 + step * STEP_MS, 40.0, &reported);
            fleet.ingest("web001", &sample, T0);
        }
        let job = fleet.job("web001").unwrap();
        assert_eq!(job.metrics, ["cpu_user_pct", "mem_used_pct"]);
        assert_eq!(job.values.len(), 2 * 3);
        assert_eq!(job.values[5], 40.0);
    }

    /// The fleet clock follows accepted steps, so a fast simulated clock is not refused, but a
    /// jump far ahead is; a refused sample leaves the window untouched.
    #[test]
    fn future_is_relative_to_the_fleet_clock() {
        let mut fleet = fleet(3);
        let wall = T0;
        for step in 0..20 {
            let verdict = fleet.ingest("a", &payload("a", T0 + step * STEP_MS, 1.0), wall);
            assert!(
                matches!(verdict, Verdict::Accepted { .. }),
                "{step}: {verdict:?}"
            );
        }
        let verdict = fleet.ingest("a", &payload("a", T0 + 100 * STEP_MS, 1.0), wall);
        assert_eq!(kind(verdict), RejectKind::FutureTimestamp);
        assert_eq!(
            fleet.window("a").unwrap().open_step(),
            Some(T0 / STEP_MS + 19)
        );
    }

    /// Samples older than the open step are refused as out of order.
    #[test]
    fn old_samples_are_out_of_order() {
        let mut fleet = fleet(3);
        fleet.ingest("a", &payload("a", T0 + STEP_MS, 1.0), T0);
        let verdict = fleet.ingest("a", &payload("a", T0, 1.0), T0);
        assert_eq!(kind(verdict), RejectKind::OutOfOrder);
        let verdict = fleet.ingest("a", &payload("a", T0 + STEP_MS + 1, 1.0), T0);
        assert!(matches!(verdict, Verdict::Accepted { .. }));
    }
}
