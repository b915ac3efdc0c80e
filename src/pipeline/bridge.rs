//! A temporary bridge for the two actors that have not adopted the stage toolkit yet (the
//! window keeper and the predictor): it builds their [`Stage`] (so they are NATS micro
//! services like the others) and copies their own counters into it once a second. It goes
//! away when each actor builds its `Stage` in its own `spawn`.

use crate::actors::predictor::{self, Predictor};
use crate::actors::stage::service::{FACT_MODEL, FACT_SERVERS_READY, FACT_WARMUP_PCT};
use crate::actors::stage::{Counters, RunningStage, ServiceError, Stage, StageCounters, StageSpec};
use crate::actors::window_keeper::{self, GetWarmup, WindowKeeper};
use crate::bus::Bus;
use crate::model::ModelMetadata;
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::wire::RejectKind;
use actix::Addr;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a bridged actor's counters are copied.
const POLL: Duration = Duration::from_secs(1);

/// Adds what grew between `before` and `now` to `counters` (the actor's counters only ever
/// grow).
fn add_growth(counters: &StageCounters, before: &Counters, now: &Counters) {
    let grown = |now: u64, before: u64| now.saturating_sub(before);
    counters.received_many(grown(now.received, before.received));
    counters.accepted_many(grown(now.accepted, before.accepted));
    for (kind, count) in &now.rejected_by_kind {
        let before = before.rejected_by_kind.get(kind).copied().unwrap_or(0);
        let kind = RejectKind::from_name(kind).unwrap_or(RejectKind::BadContent);
        counters.rejected_many(kind, grown(*count, before));
    }
    counters.published(grown(now.published, before.published));
    counters.publish_errors(grown(now.publish_errors, before.publish_errors));
    for (name, count) in &now.extras {
        counters.extra(name).add(grown(*count, before.extra(name)));
    }
}

/// `values` under `names`, as a snapshot's extras.
fn named<const N: usize>(names: &[&str; N], values: [u64; N]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(values)
        .map(|(name, count)| (name.to_string(), count))
        .collect()
}

/// The window keeper's micro service, fed from its `GetCounters` and `GetWarmup`.
pub(super) async fn window_keeper(
    bus: &Bus,
    keeper: Addr<WindowKeeper>,
) -> Result<RunningStage, ServiceError> {
    const EXTRAS: [&str; 5] = [
        "steps_closed",
        "gap_steps",
        "replayed",
        "jobs_published",
        "consumer_errors",
    ];
    let stage = Stage::build(
        bus,
        StageSpec::new(
            window_keeper::STAGE,
            "fleetcast window keeper: per-server windows of step means, predict jobs",
        )
        .extras(&EXTRAS),
    )
    .await?;
    let running = stage_running(&stage);
    actix::spawn(async move {
        let mut before = Counters::default();
        loop {
            let (Ok(own), Ok(warmup)) = (
                keeper.send(window_keeper::GetCounters).await,
                keeper.send(GetWarmup { per_server: false }).await,
            ) else {
                break;
            };
            let now = Counters {
                received: own.received,
                accepted: own.accepted,
                rejected_by_kind: own
                    .rejected_by_kind
                    .iter()
                    .map(|(kind, count)| (kind.to_string(), *count))
                    .collect(),
                published: own.sent,
                publish_errors: own.errors,
                extras: named(
                    &EXTRAS,
                    [
                        own.steps_closed,
                        own.gap_steps,
                        own.replayed,
                        own.jobs_published,
                        own.consumer_errors,
                    ],
                ),
                ..Counters::default()
            };
            add_growth(stage.counters(), &before, &now);
            before = now;
            stage
                .facts()
                .set(FACT_WARMUP_PCT, format!("{:.1}", warmup.warmup_pct));
            stage.facts().set(
                FACT_SERVERS_READY,
                format!("{}/{}", warmup.servers_ready, warmup.servers_tracked),
            );
            tokio::time::sleep(POLL).await;
        }
        drop(stage);
    });
    Ok(running)
}

/// A predictor worker's micro service, fed from its `GetCounters`; its lag is the shared
/// work-queue consumer's pending count, its model the one it started with.
pub(super) async fn predictor(
    bus: &Bus,
    settings: &Settings,
    worker: Addr<Predictor>,
    worker_id: String,
) -> Result<RunningStage, ServiceError> {
    const EXTRAS: [&str; 5] = [
        "errors",
        "batches",
        "duplicates",
        "reloads",
        "reloads_refused",
    ];
    let model = ModelMetadata::read(&settings.predictor.model_dir)
        .map(|metadata| metadata.label())
        .unwrap_or_else(|_| settings.predictor.model_dir.display().to_string());
    let stage = Stage::build(
        bus,
        StageSpec::new(
            predictor::STAGE,
            "fleetcast predictor worker: forecasts full windows with the TFT on ONNX Runtime",
        )
        .instance(worker_id)
        .metadata(FACT_MODEL, &model)
        .extras(&EXTRAS),
    )
    .await?;
    stage.facts().set(FACT_MODEL, model);
    let running = stage_running(&stage);
    let jobs_stream = bus.subjects().stream_name(StreamKind::PredictJobs);
    let jetstream = bus.jetstream();
    actix::spawn(async move {
        let mut before = Counters::default();
        while let Ok(own) = worker.send(predictor::GetCounters).await {
            let now = Counters {
                received: own.received,
                accepted: own.received.saturating_sub(own.rejected),
                rejected_by_kind: [("bad_content".to_string(), own.rejected)].into(),
                published: own.sent,
                extras: named(
                    &EXTRAS,
                    [
                        own.errors,
                        own.batches,
                        own.duplicates,
                        own.reloads,
                        own.reloads_refused,
                    ],
                ),
                ..Counters::default()
            };
            add_growth(stage.counters(), &before, &now);
            before = now;
            if let Ok(stream) = jetstream.get_stream(&jobs_stream).await
                && let Ok(mut consumer) = stream
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                        predictor::CONSUMER,
                    )
                    .await
                && let Ok(info) = consumer.info().await
            {
                stage.counters().set_lag(info.num_pending);
            }
            tokio::time::sleep(POLL).await;
        }
        drop(stage);
    });
    Ok(running)
}

/// The pipeline's view of a bridged stage: no drain yet.
fn stage_running(stage: &Stage) -> RunningStage {
    RunningStage {
        identity: stage.identity().clone(),
        counters: stage.counters().clone(),
        drain: None,
    }
}
