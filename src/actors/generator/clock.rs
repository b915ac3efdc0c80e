//! The generator's simulated clock: backfill as fast as the `METRICS` stream stores it, then
//! one step per interval, each step computed and encoded on the blocking pool and published
//! through the stage's outbox (every sample of a step stored before the next is computed).

use super::control::Shared;
use crate::actors::stage::{Envelope, Extra, Facts, Outbox};
use crate::catalog::Metric;
use crate::ratelog::RateLimited;
use crate::sim::{Row, ServerSpec, Simulation};
use crate::wire::{self, MetricSample, SCHEMA_VERSION};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Fleets at least this large encode a step on several threads.
const PARALLEL_MIN_SERVERS: usize = 4096;

/// What the clock loop needs; moved into it when the actor starts.
pub(super) struct Clock {
    pub(super) simulation: Box<Simulation>,
    pub(super) backfill_steps: u64,
    pub(super) interval: Duration,
    /// One subject per server, in server order.
    pub(super) subjects: Arc<Vec<String>>,
    pub(super) outbox: Outbox,
    pub(super) steps: Extra,
    pub(super) facts: Facts,
    /// Turns `true` when the clock is to stop after the step in hand.
    pub(super) stop: watch::Receiver<bool>,
    /// Told when the clock has stopped.
    pub(super) stopped: oneshot::Sender<()>,
    /// Where the ground truth goes, when asked for (`generator.labels_file`).
    pub(super) labels: Option<LabelsOut>,
}

/// The ground-truth file of a live run: rewritten every `every_steps` steps (a simulated
/// hour) and when the clock stops.
pub(super) struct LabelsOut {
    pub(super) path: PathBuf,
    pub(super) seed: u64,
    pub(super) every_steps: u64,
}

impl LabelsOut {
    /// Whether the labels are written after the step before `next_step` (one that ends a
    /// simulated hour).
    fn due(&self, next_step: u64) -> bool {
        next_step > 0 && next_step.is_multiple_of(self.every_steps)
    }

    /// Writes the labels so far (on the blocking pool: the file grows with the run); a
    /// failure is logged, and the next write tries again.
    fn write(&self, simulation: &Simulation) {
        let Some(file) = simulation.labels_file(self.seed) else {
            return;
        };
        match file.write(&self.path) {
            Ok(()) => tracing::debug!(
                path = %self.path.display(),
                episodes = file.labels.len(),
                "labels written"
            ),
            Err(error) => tracing::warn!(
                path = %self.path.display(),
                %error,
                "cannot write the labels file"
            ),
        }
    }
}

/// One step's messages: the encoded sample of every server, in server order; `None` for a
/// server that is offline (it reports nothing).
type Batch = Vec<Option<Bytes>>;

/// Computes the next step and encodes every server's sample (on the blocking pool; big
/// fleets encode on several threads, as they compute).
fn compute_step(simulation: &mut Simulation) -> Batch {
    let layout = simulation.layout().clone();
    let step = simulation.step();
    let ts_ms = step.ts_ms;
    let encode = |(spec, row): (&ServerSpec, &Row)| {
        let values = row.values?;
        let sample = MetricSample {
            v: SCHEMA_VERSION,
            server: spec.name.clone(),
            ts_ms,
            profile: Some(spec.profile.name().to_string()),
            metrics: Metric::ALL
                .iter()
                .zip(values)
                .map(|(metric, value)| (metric.name().to_string(), value))
                .collect::<BTreeMap<_, _>>(),
        };
        Some(Bytes::from(wire::encode(&sample)))
    };
    let specs = layout.servers();
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get().min(16));
    if specs.len() < PARALLEL_MIN_SERVERS || threads == 1 {
        return specs.iter().zip(step.rows).map(encode).collect();
    }
    let chunk = specs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .zip(step.rows.chunks(chunk))
            .map(|(specs, rows)| {
                scope.spawn(move || specs.iter().zip(rows).map(encode).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("encoding does not panic"))
            .collect()
    })
}

/// Runs the clock until told to stop (after the step in hand) or until a step cannot be
/// computed.
pub(super) async fn run_clock(clock: Clock, shared: Arc<Shared>) {
    let Clock {
        mut simulation,
        backfill_steps,
        interval,
        subjects,
        outbox,
        steps,
        facts,
        mut stop,
        stopped,
        labels,
    } = clock;
    let labels = labels.map(Arc::new);
    let started = Instant::now();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut slow_log = RateLimited::every(Duration::from_secs(60));
    loop {
        if *stop.borrow() {
            break;
        }
        let backfilling = simulation.next_step() < backfill_steps;
        if !backfilling {
            if backfill_steps > 0 && simulation.next_step() == backfill_steps {
                tracing::info!(
                    steps = backfill_steps,
                    seconds = started.elapsed().as_secs_f64(),
                    "backfill done, going live"
                );
            }
            if interval.is_zero() {
                tokio::task::yield_now().await;
            } else {
                let ticker = ticker.get_or_insert_with(|| {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker
                });
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.changed() => break,
                }
            }
        }
        for scenario in shared.take_pending(simulation.next_step()) {
            simulation.set_scenario(scenario);
        }
        let step_started = Instant::now();
        let step_labels = labels.clone();
        let computed = tokio::task::spawn_blocking(move || {
            let batch = compute_step(&mut simulation);
            if let Some(labels) = step_labels
                && labels.due(simulation.next_step())
            {
                labels.write(&simulation);
            }
            (simulation, batch)
        })
        .await;
        let batch = match computed {
            Ok((returned, batch)) => {
                simulation = returned;
                batch
            }
            Err(error) => {
                tracing::error!(%error, "step computation failed: the clock stops");
                let _ = stopped.send(());
                return;
            }
        };
        let computed_in = step_started.elapsed();
        let samples = batch.iter().flatten().count();
        let reported = subjects
            .iter()
            .zip(batch)
            .filter_map(|(subject, payload)| Some((subject, payload?)));
        for (published, (subject, payload)) in reported.enumerate() {
            // Big fleets: let control requests and other actors in between publishes.
            if published % 1024 == 1023 {
                tokio::task::yield_now().await;
            }
            outbox
                .send(Envelope::encoded(subject.clone(), payload, true))
                .await;
        }
        // Every sample of the step stored before the next is computed: bounded memory, and a
        // backfill goes at the stream's pace.
        outbox.flush().await;
        let step = simulation.next_step() - 1;
        if backfilling && simulation.next_step() % (backfill_steps / 10).max(1) == 0 {
            tracing::info!(
                step = simulation.next_step(),
                of = backfill_steps,
                seconds = started.elapsed().as_secs_f64(),
                "backfill progress"
            );
        }
        let took = step_started.elapsed();
        tracing::debug!(
            step,
            samples,
            compute_ms = computed_in.as_secs_f64() * 1e3,
            total_ms = took.as_secs_f64() * 1e3,
            "step published"
        );
        if !backfilling
            && !interval.is_zero()
            && took > interval
            && let Some(held_back) = slow_log.check()
        {
            tracing::warn!(
                took_ms = took.as_secs_f64() * 1e3,
                interval_ms = interval.as_secs_f64() * 1e3,
                held_back,
                "a step takes longer than the step interval: the simulated clock runs slow (logged at most every 60 s)"
            );
        }
        steps.incr();
        facts.set("step", step);
        facts.set("scenario", shared.scenario());
    }
    tracing::info!(
        next_step = simulation.next_step(),
        "generator clock stopped"
    );
    // The last step's labels are already written when it ended a simulated hour.
    if let Some(labels) = labels.filter(|labels| !labels.due(simulation.next_step())) {
        let written = tokio::task::spawn_blocking(move || labels.write(&simulation)).await;
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the labels file");
        }
    }
    let _ = stopped.send(());
}
