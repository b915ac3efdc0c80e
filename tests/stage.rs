//! The stage toolkit on a real bus: the outbox keeps order and pushes back when full, stream
//! receipts say what was stored, the micro service answers `$SRV` requests with the shared
//! counters, and an intake drains everything it already received.

use crate::util::{TestNats, collect, wait_counters};
use actix::prelude::*;
use fleetcast::actors::stage::{
    Envelope, Intake, Outbox, StageCounters, StageService, default_instance, service::Facts,
    service::Identity,
};
use fleetcast::subjects::StreamKind;
use fleetcast::wire::{self, SCHEMA_VERSION, ScenarioRequest, StageReport};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

fn numbered(index: u32) -> ScenarioRequest {
    ScenarioRequest {
        v: SCHEMA_VERSION,
        scenario: index.to_string(),
    }
}

fn numbers(messages: &[async_nats::Message]) -> Vec<u32> {
    messages
        .iter()
        .map(|message| {
            wire::decode::<ScenarioRequest>(&message.payload)
                .expect("decodes")
                .scenario
                .parse()
                .expect("a number")
        })
        .collect()
}

/// An async sender to a two-slot outbox waits for room (counted) and everything arrives in
/// the order it was queued, counted as published.
#[tokio::test]
async fn outbox_keeps_order_and_waits_when_full() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut received = bus.client().subscribe("order.test").await.unwrap();
    bus.client().flush().await.unwrap();
    let counters = StageCounters::new(&[]);
    let outbox = Outbox::start(bus.client().clone(), counters.clone(), "test", 2);
    for index in 0..200 {
        outbox
            .send(Envelope::core("order.test".into(), &numbered(index)))
            .await;
    }
    outbox.flush().await;
    let counters = counters.snapshot();
    assert_eq!(counters.published, 200);
    assert!(counters.outbox_full > 0, "{counters:?}");
    let got = numbers(&collect(&mut received, 200, Duration::from_secs(5)).await);
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

/// A stream message's receipt says `true` once stored; a message no stream takes says
/// `false` and counts as a publish error.
#[tokio::test]
async fn stream_receipts_say_what_was_stored() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let counters = StageCounters::new(&[]);
    let outbox = Outbox::start(bus.client().clone(), counters.clone(), "test", 16);
    let (stored, stored_receipt) =
        Envelope::stream(bus.subjects().risk("ppdb001"), &numbered(1)).with_receipt();
    let (lost, lost_receipt) =
        Envelope::stream("nowhere.stored".into(), &numbered(2)).with_receipt();
    outbox.send(stored).await;
    outbox.send(lost).await;
    assert!(stored_receipt.await.unwrap());
    assert!(!lost_receipt.await.unwrap());
    outbox.flush().await;
    let counters = counters.snapshot();
    assert_eq!((counters.published, counters.publish_errors), (1, 1));
    let mut stream = bus
        .jetstream()
        .get_stream(bus.subjects().stream_name(StreamKind::Risk))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

/// An actor that queues a burst in one handler.
struct Burst {
    outbox: Outbox,
}

impl Actor for Burst {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Send(u32);

impl Handler<Send> for Burst {
    type Result = ();

    fn handle(&mut self, Send(count): Send, ctx: &mut Context<Self>) {
        for index in 0..count {
            self.outbox
                .push(ctx, Envelope::core("burst.test".into(), &numbered(index)));
        }
    }
}

/// An actor queuing more than its outbox holds is made to wait (back-pressure) and nothing
/// is lost or reordered.
#[actix::test]
async fn a_full_outbox_makes_the_actor_wait() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut received = bus.client().subscribe("burst.test").await.unwrap();
    bus.client().flush().await.unwrap();
    let counters = StageCounters::new(&[]);
    let outbox = Outbox::start(bus.client().clone(), counters.clone(), "test", 4);
    let burst = Burst { outbox }.start();
    burst.send(Send(300)).await.unwrap();
    let after = wait_counters(&counters, |c| c.published >= 300).await;
    assert_eq!(after.published, 300);
    assert!(after.outbox_full > 0, "{after:?}");
    let got = numbers(&collect(&mut received, 300, Duration::from_secs(5)).await);
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

/// A stage's service answers `$SRV.PING` and `$SRV.STATS` under `fleetcast-<stage>`, with
/// its metadata and its counters and facts as they are at the request; its report
/// endpoint answers the same in MessagePack; stopped, it no longer answers.
#[tokio::test]
async fn a_stage_service_reports_its_counters() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let counters = StageCounters::new(&["steps"]);
    let facts = Facts::default();
    let identity = Identity {
        stage: "risk_scorer",
        instance: default_instance(),
        prefix: bus.subjects().prefix().to_string(),
    };
    let (service, endpoints) = StageService::start(
        &bus,
        &identity,
        "a test stage",
        &BTreeMap::from([("model".to_string(), "m 1".to_string())]),
        counters.clone(),
        facts.clone(),
        &[],
    )
    .await
    .unwrap();
    assert!(endpoints.is_empty());
    counters.received_many(7);
    counters.extra("steps").add(3);
    facts.set("servers", 12);

    let ping: async_nats::service::PingResponse = serde_json::from_slice(
        &bus.client()
            .request("$SRV.PING.fleetcast-risk-scorer", "".into())
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(ping.name, "fleetcast-risk-scorer");
    assert_eq!(ping.id, service.id());
    assert_eq!(ping.metadata["stage"], "risk_scorer");
    assert_eq!(ping.metadata["model"], "m 1");

    let stats: async_nats::service::Stats = serde_json::from_slice(
        &bus.client()
            .request(
                format!("$SRV.STATS.fleetcast-risk-scorer.{}", service.id()),
                "".into(),
            )
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    let report: StageReport = serde_json::from_value(
        stats.endpoints[0]
            .data
            .clone()
            .expect("the report endpoint carries data"),
    )
    .unwrap();
    assert_eq!(report.counters["received"], 7);
    assert_eq!(report.counters["steps"], 3);
    assert_eq!(report.facts["servers"], "12");

    let direct: StageReport = wire::decode(
        &bus.client()
            .request(stats.endpoints[0].subject.clone(), "".into())
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(direct.instance, identity.instance);
    assert_eq!(direct.counters["received"], 7);

    service.stop();
    // The stop's unsubscriptions go out on the same connection, before the next request.
    bus.client().flush().await.unwrap();
    let after = bus
        .client()
        .request("$SRV.PING.fleetcast-risk-scorer", "".into())
        .await;
    assert!(after.is_err(), "a stopped service does not answer");
}

/// Draining an intake delivers every message the server already sent (the stage counts
/// each as received), then ends its streams.
#[tokio::test]
async fn an_intake_drains_what_it_received() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let counters = StageCounters::new(&[]);
    let intake = Intake::new(&bus, &counters);
    let mut stream = intake.subscribe("drain.test".into()).await.unwrap();
    intake.confirm().await.unwrap();
    for index in 0..1000 {
        bus.publish("drain.test".into(), &numbered(index))
            .await
            .unwrap();
    }
    // The server has handled every publish: all of them are on their way to the intake.
    fleetcast::bus::round_trip(bus.client()).await.unwrap();
    let drained = tokio::spawn({
        let intake = intake.clone();
        async move { intake.drain().await }
    });
    let mut got = Vec::new();
    while let Some(message) = stream.next().await {
        counters.received();
        got.push(message);
    }
    drained.await.unwrap();
    assert_eq!(numbers(&got), (0..1000).collect::<Vec<_>>());
}
