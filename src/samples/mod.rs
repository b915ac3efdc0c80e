//! Metric samples as the pipeline's ingest judges them, shared by the stages that must agree
//! on it: the window keeper (which applies the rule to every sample it takes) and the
//! gateway (which refuses in `POST /feed/data` exactly what the keeper would refuse, and
//! shows only what it would keep). No I/O, no actor.
//!
//! - [`view`]: a [`MetricSample`](crate::wire::MetricSample) payload decoded without
//!   allocating ([`SampleView`], [`decode`]), refusing exactly what
//!   [`wire::decode`](crate::wire::decode) refuses, and the content checks.
//! - The ingest rule ([`validate`] with its [`IngestRules`]): content (server against the
//!   subject's last token, profile, every metric's name, finiteness and range), a timestamp
//!   not too far ahead of the fleet clock, and not older than its server's open step.
//! - [`WindowShape`]: how timestamps fall into steps; [`MetricMask`]: one bit per metric.

pub mod view;

pub use view::{Invalid, MetricValues, SampleView, decode};

use crate::catalog::{METRIC_COUNT, Profile};
use crate::settings::Settings;
use crate::wire::RejectKind;
use view::Problems;

/// Bit mask with one bit per metric, bit `m` for `Metric::ALL[m]`.
pub type MetricMask = u16;

/// The mask with every metric's bit set.
pub const ALL_METRICS: MetricMask = (1 << METRIC_COUNT) - 1;

/// How a step bucket is sized and how many closed steps a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    /// Closed steps kept (the model's context length), at least 1.
    pub context_steps: usize,
    /// Step length in seconds, at least 1.
    pub step_seconds: i64,
}

impl WindowShape {
    /// The step a timestamp (unix ms) falls in: whole steps since the epoch.
    pub fn step_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.step_seconds * 1000)
    }

    /// Start of a step, unix seconds.
    pub fn step_start_s(&self, step: i64) -> i64 {
        step * self.step_seconds
    }
}

/// Per-fleet limits that decide validity.
#[derive(Debug, Clone, Copy)]
pub struct IngestRules {
    /// Window size and step length.
    pub shape: WindowShape,
    /// How far ahead of the fleet's clock a timestamp may be, ms.
    pub max_future_ms: i64,
    /// Observed steps a metric needs to be forecast.
    pub min_observed: usize,
}

impl IngestRules {
    /// The rules the settings give: `window_keeper.context_steps`,
    /// `window_keeper.max_future_seconds`, `window_keeper.min_observed_steps` and
    /// `time.step_seconds`.
    pub fn from_settings(settings: &Settings) -> IngestRules {
        let keeper = &settings.window_keeper;
        IngestRules {
            shape: WindowShape {
                context_steps: keeper.context_steps as usize,
                step_seconds: i64::from(settings.time.step_seconds),
            },
            max_future_ms: i64::try_from(keeper.max_future_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            min_observed: keeper.min_observed_steps as usize,
        }
    }
}

/// A sample that passed [`validate`]: its step and the profile it names, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The step the sample falls in.
    pub step: i64,
    /// The profile the sample gives (`None`: keep or infer the server's).
    pub profile: Option<Profile>,
}

/// The ingest rule without the windows: checks a decoded sample's content (server against the
/// subject's last token, profile, every metric's name, finiteness and range), its timestamp
/// against the fleet clock `reference_ms` (the later of the wall clock and the end of the newest
/// accepted step) and against its server's `open_step` (`None` for a server not seen yet).
/// The window keeper decides with it, and so does anything that must refuse exactly what the
/// window keeper refuses before publishing (the gateway's `POST /feed/data`).
///
/// # Errors
/// [`Invalid`] with the first problem's kind and every problem in words.
pub fn validate(
    rules: &IngestRules,
    sample: &SampleView<'_>,
    subject_server: &str,
    reference_ms: i64,
    open_step: Option<i64>,
) -> Result<Checked, Invalid> {
    let mut problems = Problems::default();
    let profile = view::check_content(sample, subject_server, &mut problems);
    let shape = rules.shape;
    let step = shape.step_of(sample.ts_ms);
    if sample.ts_ms > reference_ms.saturating_add(rules.max_future_ms) {
        problems.push(
            RejectKind::FutureTimestamp,
            format_args!(
                "ts_ms = {} is {} s ahead of the fleet clock {reference_ms} (limit {} s)",
                sample.ts_ms,
                (sample.ts_ms - reference_ms) / 1000,
                rules.max_future_ms / 1000
            ),
        );
    }
    if let Some(open_step) = open_step.filter(|&open_step| step < open_step) {
        problems.push(
            RejectKind::OutOfOrder,
            format_args!(
                "ts_ms = {} falls in the step starting {} s, older than the open step starting {} s",
                sample.ts_ms,
                shape.step_start_s(step),
                shape.step_start_s(open_step)
            ),
        );
    }
    problems.into_result().map(|()| Checked { step, profile })
}
