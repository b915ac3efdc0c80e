//! The keeper's input: its own connection, the ordered consumer on the `METRICS` stream, the
//! start-up replay, and what one message does to the windows and the counters.

use super::fleet::{Fleet, FnvHasher, Verdict};
use super::{STAGE, WindowKeeperError};
use crate::actors::stage::{Extra, Reject, Stage, StageCounters};
use crate::bus::{Bus, BusError};
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subject, Subjects};
use crate::wire::{self, PredictJob};
use async_nats::jetstream::{
    self,
    consumer::{
        DeliverPolicy,
        pull::{Ordered, OrderedConfig},
    },
};
use futures::StreamExt;
use std::hash::Hasher;
use std::time::{Duration, Instant};

/// The longest pull request of the keeper's ordered consumer; its idle heartbeats come every
/// half of it, and two missed ones (8 s) make the client open the consumer again.
const ORDERED_EXPIRES: Duration = Duration::from_secs(4);

/// Longest wait for the next replayed message before the rebuild is given up as failed.
const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// The keeper's own counters, as extras of its stage counters.
pub(super) const EXTRAS: [&str; 6] = [
    "steps_closed",
    "gap_steps",
    "replayed",
    "jobs_published",
    "jobs_between",
    "consumer_errors",
];

/// Handles on [`EXTRAS`].
pub(super) struct Extras {
    pub(super) steps_closed: Extra,
    pub(super) gap_steps: Extra,
    pub(super) replayed: Extra,
    pub(super) jobs_published: Extra,
    /// Steps that closed with a job ready but between the server's forecast steps
    /// (`window_keeper.forecast_every_steps`), so no job was made.
    pub(super) jobs_between: Extra,
    pub(super) consumer_errors: Extra,
}

impl Extras {
    pub(super) fn of(counters: &StageCounters) -> Extras {
        let [
            steps_closed,
            gap_steps,
            replayed,
            jobs_published,
            jobs_between,
            consumer_errors,
        ] = EXTRAS.map(|name| counters.extra(name));
        Extras {
            steps_closed,
            gap_steps,
            replayed,
            jobs_published,
            jobs_between,
            consumer_errors,
        }
    }
}

/// Whether a message is live or part of the start-up replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Live,
    Replay,
}

/// What a live message asks the keeper to publish.
pub(super) enum Outgoing {
    /// A predict job for a server.
    Job(String, PredictJob),
    /// A refused sample.
    Reject(Reject),
}

/// The fleet plus what ingesting needs around it; shared by the replay and the actor.
pub(super) struct Ingest {
    pub(super) fleet: Fleet,
    pub(super) counters: StageCounters,
    pub(super) extras: Extras,
    pub(super) subjects: Subjects,
    pub(super) publish_jobs: bool,
    /// A server's job every this many closed steps (`window_keeper.forecast_every_steps`).
    pub(super) forecast_every: u64,
}

impl Ingest {
    /// Adds one message to the windows; returns what to publish for it (nothing for a
    /// replayed one: its jobs are stale and its rejection was published the first time).
    pub(super) fn message(
        &mut self,
        subject: &str,
        payload: &[u8],
        now_ms: i64,
        source: Source,
    ) -> Option<Outgoing> {
        match source {
            Source::Live => self.counters.received(),
            Source::Replay => self.extras.replayed.incr(),
        }
        // A subject that is not `<prefix>.metrics.<one token>` names no server: the sample's
        // own server then differs from it and the sample is refused.
        let subject_server = match self.subjects.parse(subject) {
            Some(Subject::Metrics { server }) => server,
            _ => "",
        };
        match self.fleet.ingest(subject_server, payload, now_ms) {
            Verdict::Accepted {
                closed_step,
                gap_steps,
                job_ready,
            } => {
                self.counters.accepted();
                self.extras.steps_closed.add(u64::from(closed_step));
                self.extras.gap_steps.add(gap_steps);
                if job_ready && self.publish_jobs && source == Source::Live {
                    if !self.forecast_due(subject_server) {
                        self.extras.jobs_between.incr();
                        return None;
                    }
                    let job = self.fleet.job(subject_server)?;
                    return Some(Outgoing::Job(subject_server.to_string(), job));
                }
                None
            }
            Verdict::Rejected {
                server,
                kind,
                reason,
            } => Some(Outgoing::Reject(Reject {
                server,
                kind,
                reason,
            })),
        }
    }

    /// Whether `server`'s newest closed step is one of its forecast steps: every step with
    /// `forecast_every` 1, else every `forecast_every`-th, offset by a hash of the name so
    /// that a fleet's jobs spread evenly over the steps instead of coming all at once.
    fn forecast_due(&self, server: &str) -> bool {
        if self.forecast_every <= 1 {
            return true;
        }
        let Some(step) = self.fleet.newest_closed_step(server) else {
            return false;
        };
        let mut hasher = FnvHasher::default();
        hasher.write(server.as_bytes());
        let every = self.forecast_every as i64;
        (step + (hasher.finish() % self.forecast_every) as i64).rem_euclid(every) == 0
    }
}

/// Opens the keeper's own connection (as the `window_keeper` user when one is set), so its
/// ingest never waits behind the bus's traffic.
pub(super) async fn connect_ingest(settings: &Settings) -> Result<async_nats::Client, BusError> {
    crate::bus::connect_client(
        &settings.nats,
        "fleetcast-window-keeper",
        crate::settings::BusRole::WindowKeeper,
    )
    .await
}

/// Opens the ordered consumer on the `METRICS` stream (creating the streams when missing) and,
/// when `rebuild` is on, feeds every message stored before it opened into the windows as a
/// replay (refusals counted on `stage`, not published). Returns the consumer positioned at
/// the first live message.
pub(super) async fn open_ingest(
    bus: &Bus,
    client: &async_nats::Client,
    rebuild: bool,
    ingest: &mut Ingest,
    stage: &mut Stage,
) -> Result<Ordered, WindowKeeperError> {
    bus.ensure_streams()
        .await
        .map_err(WindowKeeperError::Connect)?;
    let name = bus.subjects().stream_name(StreamKind::Metrics);
    let consume_failed = |reason: String| WindowKeeperError::Consume {
        stream: name.clone(),
        reason,
    };
    let mut stream = jetstream::new(client.clone())
        .get_stream(&name)
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    let last_sequence = stream
        .info()
        .await
        .map_err(|error| consume_failed(error.to_string()))?
        .state
        .last_sequence;
    let replay = rebuild && last_sequence > 0;
    let deliver_policy = if replay {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: last_sequence + 1,
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: bus.subjects().metrics_all(),
            // Pull requests of at most this long, so idle heartbeats every half of it: the
            // client makes the consumer again after two missed ones. With the default (15 s
            // heartbeats), a consumer on a cluster node that died was made again only after
            // 60 s, and the pipeline stood still that long.
            max_expires: ORDERED_EXPIRES,
            ..Default::default()
        })
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    // What the consumer says is pending counts only for ending a replay that gets no more
    // messages: it may sit on a replica still catching up, which says "nothing pending"
    // early, so the replay reads on to the leader's last sequence.
    let mut nothing_pending = consumer.cached_info().num_pending == 0;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    if !replay {
        return Ok(messages);
    }
    let started = Instant::now();
    let rebuild_failed = |reason: String| WindowKeeperError::Rebuild {
        stream: name.clone(),
        reason,
    };
    loop {
        let Ok(next) = tokio::time::timeout(REPLAY_WAIT, messages.next()).await else {
            if nothing_pending {
                // The last stored messages were deleted (or aged out) meanwhile.
                tracing::info!(
                    stage = STAGE,
                    stream = %name,
                    last_sequence,
                    "the replay ends early: the stream's last messages are gone"
                );
                break;
            }
            return Err(rebuild_failed(format!(
                "no message within {} s",
                REPLAY_WAIT.as_secs()
            )));
        };
        let message = next
            .ok_or_else(|| rebuild_failed("the consumer ended early".into()))?
            .map_err(|error| rebuild_failed(error.to_string()))?;
        let info = message
            .info()
            .map_err(|error| rebuild_failed(error.to_string()))?;
        nothing_pending = info.pending == 0;
        // The replay ends with the last message stored when the consumer opened, as the
        // stream's leader counted it.
        let done = info.stream_sequence >= last_sequence;
        if let Some(Outgoing::Reject(reject)) = ingest.message(
            &message.subject,
            &message.payload,
            wire::now_ms(),
            super::ingest::Source::Replay,
        ) {
            stage.count_rejection(&message.subject, &reject);
        }
        if done {
            break;
        }
    }
    tracing::info!(
        stage = STAGE,
        stream = %name,
        replayed = ingest.counters.snapshot().extra("replayed"),
        servers = ingest.fleet.len(),
        seconds = started.elapsed().as_secs_f64(),
        "windows rebuilt from the stream"
    );
    Ok(messages)
}
