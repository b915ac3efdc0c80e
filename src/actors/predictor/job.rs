//! Predict jobs: decoding one and checking it against its subject and the model's shape.
//!
//! A job passes when it is a [`PredictJob`] of the current schema version, its server name is
//! valid and equals the subject's, its profile is known, its step and window lengths are the
//! model's, its metrics are catalog metrics each named once, and its values are
//! `metrics × steps` long with nothing infinite in them (NaN means "not observed" and is
//! fine). Anything else is a [`JobRejection`] naming the problem.

use crate::catalog::{Metric, Profile, is_valid_server_name};
use crate::model::History;
use crate::subjects::Subjects;
use crate::wire::{self, PredictJob, RejectKind};

/// The lengths a job must have: the model's (equal to the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobShape {
    /// Steps in a window.
    pub context_steps: u32,
    /// Seconds per step.
    pub step_seconds: u32,
}

/// A decoded job that passed every check: the history to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    /// The server's history, metric by metric, in catalog order.
    pub history: History,
}

impl ValidJob {
    /// The key of its forecast, also its `Nats-Msg-Id`: `<server>-<origin_s>`.
    pub fn key(&self) -> String {
        forecast_key(&self.history.server, self.history.last_step_s)
    }
}

impl std::borrow::Borrow<History> for ValidJob {
    fn borrow(&self) -> &History {
        &self.history
    }
}

/// The `Nats-Msg-Id` of one server's forecast from one origin.
pub fn forecast_key(server: &str, origin_s: i64) -> String {
    format!("{server}-{origin_s}")
}

/// Why a job (or its forecast) was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRejection {
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// The reason in words.
    pub reason: String,
    /// The server, when known.
    pub server: Option<String>,
}

impl JobRejection {
    pub(crate) fn new(kind: RejectKind, reason: String, server: Option<&str>) -> Self {
        Self {
            kind,
            reason,
            server: server.map(str::to_string),
        }
    }
}

/// Decodes a job and checks it against the subject it came on and the model's shape.
///
/// # Errors
/// A [`JobRejection`] naming the problem: undecodable payload, other schema version, a
/// server name that is invalid or differs from the subject, an unknown profile, another step
/// length or window length than the model's, no metric, an unknown or repeated metric, a
/// values array of the wrong length, or an infinite value.
pub fn decode_job(
    subject: &str,
    subjects: &Subjects,
    payload: &[u8],
    shape: JobShape,
) -> Result<ValidJob, JobRejection> {
    let job: PredictJob = wire::decode(payload)
        .map_err(|error| JobRejection::new(error.kind(), error.to_string(), None))?;
    let server = Some(job.server.as_str());
    let refuse = |kind, reason: String| JobRejection::new(kind, reason, server);
    if !is_valid_server_name(&job.server) || subjects.predict_job(&job.server) != subject {
        return Err(refuse(
            RejectKind::BadServer,
            format!(
                "server `{}` is not a valid name or differs from the subject {subject}",
                job.server
            ),
        ));
    }
    let profile: Profile = job
        .profile
        .parse()
        .map_err(|reason| refuse(RejectKind::UnknownProfile, reason))?;
    if job.step_seconds != shape.step_seconds {
        return Err(refuse(
            RejectKind::BadContent,
            format!(
                "step_seconds {} differs from the model's {}",
                job.step_seconds, shape.step_seconds
            ),
        ));
    }
    if job.steps != shape.context_steps {
        return Err(refuse(
            RejectKind::BadContent,
            format!(
                "window of {} steps, the model reads {}",
                job.steps, shape.context_steps
            ),
        ));
    }
    if job.metrics.is_empty() {
        return Err(refuse(RejectKind::Empty, "the job names no metric".into()));
    }
    let mut metrics = Vec::with_capacity(job.metrics.len());
    for name in &job.metrics {
        let metric = Metric::from_name(name).ok_or_else(|| {
            refuse(
                RejectKind::UnknownMetric,
                format!("metric `{name}` is not in the catalog"),
            )
        })?;
        if metrics.contains(&metric) {
            return Err(refuse(
                RejectKind::BadContent,
                format!("metric `{name}` is named twice"),
            ));
        }
        metrics.push(metric);
    }
    let steps = shape.context_steps as usize;
    let expected = steps * metrics.len();
    if job.values.len() != expected {
        return Err(refuse(
            RejectKind::BadContent,
            format!(
                "values has {} entries, expected {} metrics x {steps} steps = {expected}",
                job.values.len(),
                metrics.len()
            ),
        ));
    }
    if let Some(index) = job.values.iter().position(|value| value.is_infinite()) {
        return Err(refuse(
            RejectKind::NonFinite,
            format!(
                "value {} at step {} of metric {} is infinite",
                job.values[index],
                index % steps,
                metrics[index / steps]
            ),
        ));
    }
    let mut series: Vec<(Metric, Vec<f32>)> = metrics
        .into_iter()
        .zip(job.values.chunks_exact(steps))
        .map(|(metric, values)| (metric, values.to_vec()))
        .collect();
    series.sort_by_key(|(metric, _)| metric.index());
    Ok(ValidJob {
        history: History {
            server: job.server,
            profile,
            last_step_s: job.last_step_s,
            series,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PREDICT_JOB_VERSION;

    const SHAPE: JobShape = JobShape {
        context_steps: 288,
        step_seconds: 300,
    };

    fn job(server: &str) -> PredictJob {
        let mut values = vec![1.5; 288 * 2];
        values[..100].fill(f32::NAN); // a short history: NaN is "not observed", not an error
        PredictJob {
            v: PREDICT_JOB_VERSION,
            server: server.into(),
            profile: "database".into(),
            last_step_s: 1_767_571_200,
            step_seconds: 300,
            steps: 288,
            metrics: vec!["mem_used_pct".into(), "cpu_user_pct".into()],
            values,
            gap_steps: 0,
        }
    }

    fn decode(job: &PredictJob) -> Result<ValidJob, JobRejection> {
        let subjects = Subjects::new("fc");
        decode_job(
            &subjects.predict_job(&job.server),
            &subjects,
            &wire::encode(job),
            SHAPE,
        )
    }

    /// A good job decodes with its profile, origin and series in catalog order, NaN kept.
    #[test]
    fn good_job_decodes() {
        let valid = decode(&job("ppdb001")).unwrap();
        let history = &valid.history;
        assert_eq!(history.profile, Profile::Database);
        assert_eq!(valid.key(), "ppdb001-1767571200");
        let order: Vec<Metric> = history.series.iter().map(|(metric, _)| *metric).collect();
        assert_eq!(order, [Metric::CpuUserPct, Metric::MemUsedPct]);
        assert_eq!(history.series[1].1.len(), 288);
        assert!(
            history.series[1].1[0].is_nan(),
            "mem_used_pct came first in the job"
        );
        assert_eq!(History::observed(&history.series[0].1), 288);
    }

    /// Each kind of bad job is refused with its own kind and a reason naming the problem.
    #[test]
    fn bad_jobs_are_refused_with_reasons() {
        let subjects = Subjects::new("fc");
        let garbage = decode_job("fc.jobs.predict.x", &subjects, b"\xc1nope", SHAPE).unwrap_err();
        assert_eq!(garbage.kind, RejectKind::Undecodable);

        let mut old = job("a");
        old.v = 1;
        let rejection = decode(&old).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::SchemaVersion);
        assert!(
            rejection.reason.contains("version 1"),
            "{}",
            rejection.reason
        );

        let mut short = job("a");
        short.values.pop();
        let rejection = decode(&short).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::BadContent);
        assert!(rejection.reason.contains("575"), "{}", rejection.reason);

        let mut infinite = job("a");
        infinite.values[288 + 5] = f32::INFINITY;
        let rejection = decode(&infinite).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::NonFinite);
        assert!(
            rejection.reason.contains("step 5 of metric cpu_user_pct"),
            "{}",
            rejection.reason
        );

        let mut unknown = job("a");
        unknown.metrics[1] = "gpu_pct".into();
        let rejection = decode(&unknown).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::UnknownMetric);
        assert!(rejection.reason.contains("gpu_pct"), "{}", rejection.reason);

        let mut twice = job("a");
        twice.metrics[1] = "mem_used_pct".into();
        assert!(decode(&twice).unwrap_err().reason.contains("named twice"));

        let mut none = job("a");
        none.metrics.clear();
        none.values.clear();
        assert_eq!(decode(&none).unwrap_err().kind, RejectKind::Empty);

        let mut profile = job("a");
        profile.profile = "mainframe".into();
        assert_eq!(
            decode(&profile).unwrap_err().kind,
            RejectKind::UnknownProfile
        );

        let mut steps = job("a");
        steps.steps = 144;
        assert!(decode(&steps).unwrap_err().reason.contains("144 steps"));

        let mut step = job("a");
        step.step_seconds = 60;
        assert!(
            decode(&step)
                .unwrap_err()
                .reason
                .contains("step_seconds 60")
        );

        let other_subject = decode_job(
            &subjects.predict_job("b"),
            &subjects,
            &wire::encode(&job("a")),
            SHAPE,
        )
        .unwrap_err();
        assert_eq!(other_subject.kind, RejectKind::BadServer);
        assert_eq!(other_subject.server.as_deref(), Some("a"));
    }
}
