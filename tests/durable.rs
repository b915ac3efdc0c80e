//! The risk scorer and the alert router read through JetStream durable consumers (issue 12):
//! a burst published while the stage is stopped, far larger than a core subscriber's buffer,
//! is scored / routed exactly once when it starts again; every input handed out again (the
//! acknowledgements lost, as when an instance dies) doubles no risk score and no alert event.

use crate::alerts::risk;
use crate::risk::{NOW, sample};
use crate::util::TestNats;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use fleetcast::actors::alert_router::book::{AlertBook, BookConfig};
use fleetcast::actors::alert_router::{self, AlertRouter};
use fleetcast::actors::risk_scorer::{self, RiskScorer};
use fleetcast::actors::stage::{Counters, Drain, StageHandle, replay};
use fleetcast::bus::{Bus, StreamPublisher};
use fleetcast::settings::Settings;
use fleetcast::subjects::StreamKind;
use fleetcast::wire::{self, AlertEvent, RiskScore};
use std::collections::BTreeSet;
use std::time::Duration;

/// Servers and inputs per server of a burst: 4,000 messages, four times the smallest
/// subscription buffer the settings allow (which the tests set).
const SERVERS: usize = 200;
const PER_SERVER: usize = 20;

/// Settings with the smallest core subscription buffer (1,024 messages).
fn small_buffers(nats: &TestNats) -> Settings {
    let mut settings = nats.settings.clone();
    settings.nats.subscription_capacity = 1024;
    settings
}

/// Waits (on the counters' notifications) until `done` holds, at most 60 s.
async fn wait_long(
    handle_counters: &fleetcast::actors::stage::StageCounters,
    done: impl Fn(&Counters) -> bool,
) -> Counters {
    match handle_counters
        .wait_until(done, Duration::from_secs(60))
        .await
    {
        Ok(counters) | Err(counters) => counters,
    }
}

/// Publishes `messages` into their streams, every one acknowledged (stored).
async fn publish_all<T: wire::WireMessage>(bus: &Bus, messages: &[(String, T)]) {
    let mut publisher = StreamPublisher::new(bus.client().clone(), 256);
    for (subject, message) in messages {
        let failed = publisher
            .publish_message(subject.clone(), message)
            .await
            .expect("publish");
        assert_eq!(failed, 0);
    }
    assert_eq!(publisher.flush().await, 0, "every input stored");
}

/// Everything stream `kind` holds, decoded.
pub(crate) async fn stored<T: wire::WireMessage>(
    bus: &Bus,
    kind: StreamKind,
    filter: String,
) -> Vec<T> {
    replay(bus, kind, filter, DeliverPolicy::All)
        .await
        .expect("stream read back")
        .iter()
        .map(|message| wire::decode(&message.payload).expect("decodes"))
        .collect()
}

/// Replaces `stage`'s durable consumer on `kind` by one that hands out everything the stream
/// holds again: every acknowledgement lost, as when an instance dies before they are sent.
async fn forget_acknowledgements(bus: &Bus, stage: &str, kind: StreamKind, filter: String) {
    let name = bus.subjects().durable_consumer(stage, kind);
    let stream = bus
        .jetstream()
        .get_stream(bus.subjects().stream_name(kind))
        .await
        .unwrap();
    stream.delete_consumer(&name).await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            filter_subject: filter,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn stream_messages(bus: &Bus, kind: StreamKind) -> u64 {
    bus.jetstream()
        .get_stream(bus.subjects().stream_name(kind))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// 4,000 samples published while the scorer is stopped are each scored once when it starts
/// again (4,000 risk scores stored, one per sample); the same 4,000 handed out once more
/// are scored again but stored no second time (the RISK stream drops them by
/// `Nats-Msg-Id`).
#[actix::test]
async fn scorer_scores_a_burst_once_and_doubles_nothing_on_redelivery() {
    let nats = TestNats::start();
    let settings = small_buffers(&nats);
    let bus = nats.bus().await;
    let subjects = bus.subjects().clone();
    let first = risk_scorer::spawn(&settings, bus.clone()).await.unwrap();
    first.send(Drain).await.unwrap();

    let burst: Vec<_> = (0..PER_SERVER)
        .flat_map(|step| {
            (0..SERVERS).map(move |server| {
                let name = format!("ppgen{server:03}");
                let load = ((server + step) % 10) as f64;
                let message = sample(&name, NOW + step as i64 * 300, &[("load_average", load)]);
                (name, message)
            })
        })
        .map(|(name, message)| (subjects.metrics(&name), message))
        .collect();
    publish_all(&bus, &burst).await;

    let total = (SERVERS * PER_SERVER) as u64;
    let second: StageHandle<RiskScorer> = risk_scorer::spawn(&settings, bus.clone()).await.unwrap();
    let counters = wait_long(&second.counters, |c| {
        c.received >= total && c.published + c.publish_errors >= total
    })
    .await;
    assert_eq!(
        (
            counters.received,
            counters.rejected,
            counters.publish_errors
        ),
        (total, 0, 0),
        "{counters:?}"
    );
    let scores: Vec<RiskScore> = stored(&bus, StreamKind::Risk, subjects.risk_all()).await;
    let scored: BTreeSet<(String, i64)> = scores
        .iter()
        .map(|risk| (risk.server.clone(), risk.sample_ms))
        .collect();
    let sent: BTreeSet<(String, i64)> = burst
        .iter()
        .map(|(_, sample)| (sample.server.clone(), sample.ts_ms))
        .collect();
    assert_eq!(
        scores.len() as u64,
        total,
        "one score per sample, none doubled"
    );
    assert_eq!(scored, sent, "every sample scored");
    second.send(Drain).await.unwrap();

    forget_acknowledgements(
        &bus,
        "risk_scorer",
        StreamKind::Metrics,
        subjects.metrics_all(),
    )
    .await;
    let third = risk_scorer::spawn(&settings, bus.clone()).await.unwrap();
    let again = wait_long(&third.counters, |c| {
        c.received >= total && c.published + c.publish_errors >= total
    })
    .await;
    assert_eq!((again.received, again.rejected), (total, 0), "{again:?}");
    third.send(Drain).await.unwrap();
    assert_eq!(
        stream_messages(&bus, StreamKind::Risk).await,
        total,
        "scores computed again are not stored again"
    );
}

/// What identifies an event, for comparing runs.
pub(crate) fn key(event: &AlertEvent) -> (String, String, String, i64) {
    (
        event.id.clone(),
        format!("{:?}", event.action),
        event.severity.clone(),
        event.at_ms,
    )
}

/// 4,000 risk scores published while the router is stopped are routed once each when it
/// starts: the ALERTS stream holds exactly the events an alert book fed the same scores
/// computes, none missing, none doubled. Handed out once more, they add no event.
#[actix::test]
async fn router_routes_a_burst_once_and_doubles_nothing_on_redelivery() {
    let nats = TestNats::start();
    let settings = small_buffers(&nats);
    let bus = nats.bus().await;
    let subjects = bus.subjects().clone();
    let first = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    first.send(Drain).await.unwrap();

    // Each server climbs through the levels and back, shifted by its index.
    let level = |step: usize| match step % 20 {
        0..=2 => 10.0,
        3..=5 => 45.0,
        6..=8 => 85.0,
        9..=10 => 50.0,
        _ => 5.0,
    };
    let burst: Vec<(String, RiskScore)> = (0..PER_SERVER)
        .flat_map(|step| {
            (0..SERVERS).map(move |server| {
                let name = format!("ppgen{server:03}");
                let message = risk(&name, level(step + server), NOW + step as i64 * 300);
                (name, message)
            })
        })
        .map(|(name, message)| (subjects.risk(&name), message))
        .collect();
    let mut book = AlertBook::new(BookConfig::from_settings(&settings.alerts));
    let expected: BTreeSet<_> = burst
        .iter()
        .filter_map(|(_, score)| book.on_risk(score).unwrap())
        .map(|event| key(&event))
        .collect();
    assert!(
        expected.len() > SERVERS,
        "the burst raises and resolves alerts"
    );
    publish_all(&bus, &burst).await;

    let total = (SERVERS * PER_SERVER) as u64;
    let events = expected.len() as u64;
    let second: StageHandle<AlertRouter> =
        alert_router::spawn(&settings, bus.clone()).await.unwrap();
    let counters = wait_long(&second.counters, |c| {
        c.received >= total && c.published + c.publish_errors >= events
    })
    .await;
    assert_eq!(
        (
            counters.received,
            counters.rejected,
            counters.extra("events")
        ),
        (total, 0, events),
        "{counters:?}"
    );
    second.send(Drain).await.unwrap();
    let routed: Vec<AlertEvent> = stored(&bus, StreamKind::Alerts, subjects.alerts_all()).await;
    assert_eq!(routed.len() as u64, events, "no event doubled");
    let routed: BTreeSet<_> = routed.iter().map(key).collect();
    assert_eq!(routed, expected, "every event, none missing");

    forget_acknowledgements(&bus, "alert_router", StreamKind::Risk, subjects.risk_all()).await;
    let third = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    let again = wait_long(&third.counters, |c| c.received >= total).await;
    third.send(Drain).await.unwrap();
    assert_eq!(
        (again.received, again.rejected, again.extra("events")),
        (total, 0, 0),
        "{again:?}"
    );
    assert!(again.extra("superseded") > 0, "{again:?}");
    assert_eq!(stream_messages(&bus, StreamKind::Alerts).await, events);
}

/// A router stopped for longer than the RISK stream's per-server history loses the oldest
/// scores of a server, and says so: the gap in the stream is counted as `skipped`.
#[actix::test]
async fn inputs_the_stream_dropped_are_counted_as_skipped() {
    let nats = TestNats::start();
    let mut settings = nats.settings.clone();
    settings.nats.risk_history = 4;
    let bus = Bus::connect(&settings.nats).await.unwrap();
    bus.ensure_streams().await.unwrap();
    let subjects = bus.subjects().clone();
    let first = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    publish_all(
        &bus,
        &[(subjects.risk("ppgen001"), risk("ppgen001", 10.0, NOW))],
    )
    .await;
    wait_long(&first.counters, |c| c.received >= 1).await;
    first.send(Drain).await.unwrap();
    let burst: Vec<_> = (1..=10)
        .map(|step| {
            (
                subjects.risk("ppgen001"),
                risk("ppgen001", 10.0, NOW + step * 300),
            )
        })
        .collect();
    publish_all(&bus, &burst).await;
    let second = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    let counters = wait_long(&second.counters, |c| c.received >= 4).await;
    second.send(Drain).await.unwrap();
    assert_eq!(
        (
            counters.received,
            counters.extra("skipped"),
            counters.rejected
        ),
        (4, 6, 0),
        "{counters:?}"
    );
}

/// Inputs an instance took and never acknowledged (it died) go to the next instance at
/// once, in order, not after `ack_wait` (ten minutes here): its consumer is rewound to the
/// acknowledgement floor. The events are those of one router that saw everything.
#[actix::test]
async fn a_dead_instances_inputs_go_to_the_next_one_at_once() {
    use futures::StreamExt;
    let nats = TestNats::start();
    let mut settings = nats.settings.clone();
    settings.nats.ack_wait_seconds = 600;
    let bus = nats.bus().await;
    let subjects = bus.subjects().clone();
    let first = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    first.send(Drain).await.unwrap();
    let scores = [
        10.0, 45.0, 85.0, 85.0, 50.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0,
    ];
    let burst: Vec<_> = scores
        .iter()
        .enumerate()
        .map(|(step, &score)| {
            (
                subjects.risk("ppgen001"),
                risk("ppgen001", score, NOW + step as i64 * 300),
            )
        })
        .collect();
    publish_all(&bus, &burst).await;
    // The test takes every score as an instance that dies before acknowledging.
    let consumer: async_nats::jetstream::consumer::PullConsumer = bus
        .jetstream()
        .get_stream(subjects.stream_name(StreamKind::Risk))
        .await
        .unwrap()
        .get_consumer(&subjects.durable_consumer("alert_router", StreamKind::Risk))
        .await
        .unwrap();
    let mut taken = consumer
        .fetch()
        .max_messages(scores.len())
        .messages()
        .await
        .unwrap();
    let mut held = 0;
    while let Some(message) = taken.next().await {
        message.unwrap();
        held += 1;
    }
    assert_eq!(held, scores.len());

    let mut book = AlertBook::new(BookConfig::from_settings(&settings.alerts));
    let expected = burst
        .iter()
        .filter_map(|(_, score)| book.on_risk(score).unwrap())
        .count() as u64;
    assert!(expected >= 2, "the scores raise and resolve an alert");
    let second = alert_router::spawn(&settings, bus.clone()).await.unwrap();
    let counters = wait_long(&second.counters, |c| {
        c.received >= scores.len() as u64 && c.published >= expected
    })
    .await;
    second.send(Drain).await.unwrap();
    assert_eq!(
        (
            counters.received,
            counters.extra("events"),
            counters.rejected
        ),
        (scores.len() as u64, expected, 0),
        "{counters:?}"
    );
}
