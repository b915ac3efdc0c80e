//! fleetcast's own alerting as a [`Detector`]: the stages' real code chained in-process, at
//! the speed of the model, with the bus left out (it carries the messages; it decides
//! nothing):
//!
//! 1. each online server's sample is encoded as the generator publishes it and ingested by
//!    the window keeper's [`Fleet`] (its validation, step aggregation, gaps); a sample that
//!    closes a step makes the keeper's predict job, encoded and decoded by the predictor's
//!    [`decode_job`];
//! 2. the risk scorer's [`assess`] scores the sample with the server's latest forecast, and
//!    the alert router's [`AlertBook`] takes the score;
//! 3. the step's jobs are forecast by [`forecast_histories`] (the predictor's code path) on
//!    ONNX Runtime, in chunks of `predictor.max_batch`, one session per
//!    `predictor.workers` on its own thread;
//! 4. each forecast goes to the alert book (predictive metric alerts) and re-scores its
//!    server's latest sample, whose score goes to the book again.
//!
//! That is the order the running pipeline sees when forecasts take less than a step: the
//! sample of step k+1 closes step k, is scored with the forecast from step k−1, and the
//! forecast from step k arrives after it.

use super::harness::{Detector, EvaluateError, StepView};
use super::score::AlertChange;
use crate::actors::alert_router::book::{AlertBook, BookConfig};
use crate::actors::predictor::job::{JobShape, decode_job};
use crate::actors::risk_scorer::scoring::{RiskConfig, assess};
use crate::actors::window_keeper::fleet::{Fleet, Verdict};
use crate::catalog::{Metric, Profile};
use crate::levels::{Level, Scale};
use crate::model::{ModelError, ModelOptions, OnnxModel, forecast_histories};
use crate::samples::IngestRules;
use crate::settings::Settings;
use crate::subjects::Subjects;
use crate::wire::{self, AlertEvent, Forecast, MetricSample, SCHEMA_VERSION};
use std::collections::{BTreeMap, HashMap};

/// What the pipeline did, for the report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PipelineCounts {
    /// Samples ingested.
    pub samples: u64,
    /// Samples the window keeper refused.
    pub rejected_samples: u64,
    /// Predict jobs made.
    pub jobs: u64,
    /// Forecasts made.
    pub forecasts: u64,
    /// Jobs the predictor could not forecast.
    pub unforecastable: u64,
    /// Risk scores computed.
    pub risk_scores: u64,
    /// Alert events.
    pub alert_events: u64,
}

/// An alert event as the scorer reads it.
fn change(event: &AlertEvent) -> AlertChange {
    AlertChange {
        server: event.server.clone(),
        subject: event.subject.clone(),
        at_ms: event.at_ms,
        level: event.severity.parse().unwrap_or(Level::Healthy),
    }
}

/// The risk scorer's view of one server.
#[derive(Debug, Default)]
struct Scored {
    profile: Option<Profile>,
    current: BTreeMap<String, f64>,
    sample_ms: Option<i64>,
    forecast: Option<Forecast>,
}

/// One alerting variant: a risk scorer's and an alert router's settings and the router's
/// state, fed the shared samples and forecasts.
struct Tail {
    name: String,
    risk: RiskConfig,
    scale: Scale,
    book: AlertBook,
}

impl Tail {
    fn new(name: String, settings: &Settings) -> Tail {
        Tail {
            name,
            risk: RiskConfig::from(&settings.risk),
            scale: settings.alerts.scale(),
            book: AlertBook::new(BookConfig::from_settings(&settings.alerts)),
        }
    }
}

/// fleetcast's window keeper → predictor → risk scorer → alert router, in-process, with one
/// or more alerting variants after the shared window keeper and predictor.
pub struct PipelineDetector {
    fleet: Fleet,
    subjects: Subjects,
    shape: JobShape,
    models: Vec<OnnxModel>,
    max_batch: usize,
    tails: Vec<Tail>,
    servers: HashMap<String, Scored>,
    counts: PipelineCounts,
}

impl PipelineDetector {
    /// Builds the stages from `settings`: the window keeper's rules, `predictor.workers`
    /// sessions of `predictor.model_dir`, the risk and alert settings (row `fleetcast`),
    /// plus one alerting row per `(name, settings)` of `variants` (their `[risk]` and
    /// `[alerts]` sections; the window keeper and model are the base's).
    ///
    /// # Errors
    /// [`ModelError`] when ONNX Runtime or the model cannot be loaded or does not fit.
    pub fn build(
        settings: &Settings,
        variants: &[(String, Settings)],
    ) -> Result<PipelineDetector, ModelError> {
        let keeper = &settings.window_keeper;
        let rules = IngestRules::from_settings(settings);

        let options = ModelOptions::from_settings(settings)?;
        let models = (0..settings.predictor.workers.max(1))
            .map(|_| OnnxModel::load(&settings.predictor.model_dir, &options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PipelineDetector {
            fleet: Fleet::new(rules),
            subjects: Subjects::new(settings.nats.prefix.clone()),
            shape: JobShape {
                context_steps: keeper.context_steps,
                step_seconds: settings.time.step_seconds,
            },
            models,
            max_batch: settings.predictor.max_batch.max(1),
            tails: std::iter::once(Tail::new("fleetcast".into(), settings))
                .chain(
                    variants
                        .iter()
                        .map(|(name, settings)| Tail::new(format!("fleetcast {name}"), settings)),
                )
                .collect(),
            servers: HashMap::new(),
            counts: PipelineCounts::default(),
        })
    }

    /// What it did so far.
    pub fn counts(&self) -> &PipelineCounts {
        &self.counts
    }

    /// Every variant's risk score of `server`'s latest sample, fed to its alert book.
    fn score(&mut self, server: &str, outs: &mut [Vec<AlertChange>]) {
        let Some(state) = self.servers.get(server) else {
            return;
        };
        let (Some(sample_ms), Some(profile)) = (state.sample_ms, state.profile) else {
            return;
        };
        for (tail, out) in self.tails.iter_mut().zip(outs.iter_mut()) {
            let assessment = assess(
                &tail.risk,
                profile,
                &state.current,
                state.forecast.as_ref(),
                sample_ms.div_euclid(1000),
            );
            let risk = assessment.into_risk_score(
                server,
                profile,
                sample_ms,
                sample_ms,
                state.forecast.as_ref(),
                &tail.scale,
            );
            self.counts.risk_scores += 1;
            if let Ok(Some(event)) = tail.book.on_risk(&risk) {
                self.counts.alert_events += 1;
                out.push(change(&event));
            }
        }
    }

    /// Forecasts `jobs` on every session at once, in chunks of `max_batch`.
    fn forecast(
        &mut self,
        jobs: &[crate::actors::predictor::job::ValidJob],
        issued_ms: i64,
    ) -> Result<Vec<Forecast>, ModelError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let share = jobs.len().div_ceil(self.models.len());
        let max_batch = self.max_batch;
        let results: Vec<Result<Vec<Forecast>, ModelError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .models
                .iter_mut()
                .zip(jobs.chunks(share))
                .map(|(model, jobs)| {
                    scope.spawn(move || {
                        let mut forecasts = Vec::with_capacity(jobs.len());
                        for chunk in jobs.chunks(max_batch) {
                            for forecast in forecast_histories(model, chunk, issued_ms)? {
                                forecasts.extend(forecast.ok());
                            }
                        }
                        Ok(forecasts)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("inference does not panic"))
                .collect()
        });
        let mut forecasts = Vec::with_capacity(jobs.len());
        for result in results {
            forecasts.extend(result?);
        }
        self.counts.unforecastable += (jobs.len() - forecasts.len()) as u64;
        Ok(forecasts)
    }
}

impl Detector for PipelineDetector {
    fn names(&self) -> Vec<String> {
        self.tails.iter().map(|tail| tail.name.clone()).collect()
    }

    fn summary(&self) -> Option<String> {
        let c = &self.counts;
        Some(format!(
            "{} samples ({} refused), {} predict jobs, {} forecasts ({} unforecastable), {} risk scores, {} alert events",
            c.samples,
            c.rejected_samples,
            c.jobs,
            c.forecasts,
            c.unforecastable,
            c.risk_scores,
            c.alert_events
        ))
    }

    fn observe(
        &mut self,
        step: &StepView,
        outs: &mut [Vec<AlertChange>],
    ) -> Result<(), EvaluateError> {
        let mut jobs = Vec::new();
        for (spec, row) in step.specs.iter().zip(step.rows) {
            let Some(values) = row.values else {
                continue;
            };
            let sample = MetricSample {
                v: SCHEMA_VERSION,
                server: spec.name.clone(),
                ts_ms: step.ts_ms,
                profile: Some(spec.profile.name().to_string()),
                metrics: Metric::ALL
                    .iter()
                    .zip(values)
                    .map(|(metric, value)| (metric.name().to_string(), value))
                    .collect(),
            };
            // Window keeper.
            self.counts.samples += 1;
            match self
                .fleet
                .ingest(&spec.name, &wire::encode(&sample), step.ts_ms)
            {
                Verdict::Accepted { job_ready, .. } => {
                    if job_ready && let Some(job) = self.fleet.job(&spec.name) {
                        let subject = self.subjects.predict_job(&spec.name);
                        match decode_job(&subject, &self.subjects, &wire::encode(&job), self.shape)
                        {
                            Ok(job) => jobs.push(job),
                            Err(_) => self.counts.unforecastable += 1,
                        }
                    }
                }
                Verdict::Rejected { .. } => self.counts.rejected_samples += 1,
            }
            // Risk scorer on the sample.
            let state = self.servers.entry(spec.name.clone()).or_default();
            state.profile = Some(spec.profile);
            state.sample_ms = Some(step.ts_ms);
            state.current = sample.metrics;
            self.score(&spec.name, outs);
        }
        // Predictor.
        self.counts.jobs += jobs.len() as u64;
        let forecasts =
            self.forecast(&jobs, step.ts_ms)
                .map_err(|error| EvaluateError::Detector {
                    detector: "fleetcast".into(),
                    source: Box::new(error),
                })?;
        self.counts.forecasts += forecasts.len() as u64;
        for forecast in forecasts {
            // Alert router on the forecast, then the risk scorer re-scores.
            for (tail, out) in self.tails.iter_mut().zip(outs.iter_mut()) {
                if let Ok(events) = tail.book.on_forecast(&forecast) {
                    self.counts.alert_events += events.len() as u64;
                    out.extend(events.iter().map(change));
                }
            }
            let server = forecast.server.clone();
            if let Some(state) = self.servers.get_mut(&server) {
                state.forecast = Some(forecast);
            }
            self.score(&server, outs);
        }
        Ok(())
    }
}
