//! Scale-out by partition (issue 12, item 2): two risk scorers and two alert routers split the
//! fleet by a stable partition of the server name and store exactly the alert events one
//! instance of each stores from the same samples, none missing, none doubled; killed without
//! draining, one instance's partitions are taken over by the other within two steps, and the
//! events are still those of one instance. Every instance connects as its actor's user of
//! `nats/auth.conf` (least privilege: its own input stream, consumers and the lease bucket).

use crate::risk::{NOW, sample};
use crate::util::TestNats;
use async_nats::jetstream::consumer::DeliverPolicy;
use fleetcast::actors::alert_router::{self, AlertRouter};
use fleetcast::actors::risk_scorer::{self, RiskScorer};
use fleetcast::actors::stage::{StageCounters, StageHandle, Stop, replay};
use fleetcast::bus::{Bus, StreamPublisher};
use fleetcast::settings::{BusRole, Settings};
use fleetcast::subjects::{StreamKind, Subjects};
use fleetcast::wire::{self, AlertEvent, MetricSample};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SERVERS: usize = 40;
const STEPS: usize = 24;
const PARTITIONS: u32 = 4;
/// The generator step; the lease is one step.
const STEP_MS: u64 = 2_000;

/// The samples: each server swings between healthy and overloaded with its own period, so
/// alerts are raised, escalated and resolved at different steps.
fn samples(subjects: &Subjects) -> Vec<(String, MetricSample)> {
    let healthy = [
        ("cpu_idle_pct", 80.0),
        ("mem_used_pct", 40.0),
        ("swap_used_pct", 0.0),
    ];
    let busy = [
        ("cpu_idle_pct", 30.0),
        ("mem_used_pct", 85.0),
        ("swap_used_pct", 10.0),
    ];
    let overloaded = [
        ("cpu_idle_pct", 1.0),
        ("mem_used_pct", 99.0),
        ("swap_used_pct", 60.0),
    ];
    (0..STEPS)
        .flat_map(|step| {
            (0..SERVERS).map(move |server| {
                let name = format!("ppgen{server:03}");
                let period = 6 + server % 5;
                let values: &[(&str, f64)] = match (step + server) % period {
                    0..=1 => &healthy,
                    2 => &busy,
                    3..=4 => &overloaded,
                    _ => &healthy,
                };
                (name.clone(), sample(&name, NOW + step as i64 * 300, values))
            })
        })
        .map(|(name, message)| (subjects.metrics(&name), message))
        .collect()
}

/// One deployment: its own nats-server with the per-actor users, `instances` risk scorers
/// and alert routers, each instance on connections of its own as its actor's user.
struct Run {
    nats: TestNats,
    bus: Bus,
    settings: Settings,
    scorers: Vec<StageHandle<RiskScorer>>,
    routers: Vec<StageHandle<AlertRouter>>,
}

impl Run {
    /// Starts the instances together; partitioned, waits until each holds its share.
    async fn start(instances: usize, partitions: u32) -> Run {
        let nats = TestNats::start_authenticated();
        let mut settings = nats.settings.clone();
        settings.partitions.count = partitions;
        settings.generator.step_interval_ms = STEP_MS;
        let bus = nats.bus().await;
        let started = futures::future::join_all((0..instances).map(|_| {
            let settings = settings.clone();
            async move { spawn_instance(&settings).await }
        }))
        .await;
        let (scorers, routers): (Vec<_>, Vec<_>) = started.into_iter().unzip();
        let run = Run {
            nats,
            bus,
            settings,
            scorers,
            routers,
        };
        if partitions > 1 {
            run.wait_shares(partitions as usize / instances).await;
        }
        run
    }

    /// Starts one more scorer and router on a connection of their own.
    async fn add_instance(&mut self) {
        let (scorer, router) = spawn_instance(&self.settings).await;
        self.scorers.push(scorer);
        self.routers.push(router);
    }

    /// The partitions each instance owns now (its fact `partitions`), scorers then routers.
    fn owned(&self) -> Vec<Vec<u32>> {
        self.scorers
            .iter()
            .map(|handle| &handle.facts)
            .chain(self.routers.iter().map(|handle| &handle.facts))
            .map(|facts| {
                facts
                    .snapshot()
                    .get("partitions")
                    .map(|list| list.split(',').filter_map(|p| p.parse().ok()).collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits (checking every 50 ms, at most 20 s) until every instance owns `share`
    /// partitions of its stage.
    async fn wait_shares(&self, share: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ticker = tokio::time::interval(Duration::from_millis(50));
        loop {
            ticker.tick().await;
            let owned = self.owned();
            if owned.iter().all(|partitions| partitions.len() == share) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "each instance owns {share} partitions within 20 s: {owned:?}"
            );
        }
    }

    async fn publish(&self, samples: &[(String, MetricSample)]) {
        let generator = Bus::connect_as(&self.settings.nats, BusRole::Generator)
            .await
            .expect("the generator user connects");
        let mut publisher = StreamPublisher::new(generator.client().clone(), 256);
        for (subject, message) in samples {
            let failed = publisher
                .publish_message(subject.clone(), message)
                .await
                .expect("publish");
            assert_eq!(failed, 0);
        }
        assert_eq!(publisher.flush().await, 0, "every sample stored");
    }

    /// Messages stream `name` holds.
    async fn messages(&self, name: &str) -> u64 {
        let mut stream = self.bus.jetstream().get_stream(name).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// Whether consumer `consumer` of stream `stream` has nothing left to hand out or to
    /// be acknowledged.
    async fn consumer_done(&self, stream: &str, consumer: &str) -> bool {
        let stream = self.bus.jetstream().get_stream(stream).await.unwrap();
        match stream.consumer_info(consumer).await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    /// Waits (checking the streams every 100 ms, at most 60 s) until every sample has its
    /// risk score stored and every consumer of both stages has handed out and had
    /// acknowledged everything: then every event is stored.
    async fn settle(&self, total: u64) {
        let subjects = self.bus.subjects();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticker.tick().await;
            let mut done = self.messages(&subjects.stream_name(StreamKind::Risk)).await == total;
            if self.settings.partitions.enabled() {
                for stage in [risk_scorer::STAGE, alert_router::STAGE] {
                    let stream = subjects.partition_stream(stage);
                    for partition in 0..self.settings.partitions.count {
                        let consumer = subjects.partition_consumer(stage, partition);
                        done &= self.consumer_done(&stream, &consumer).await;
                    }
                }
                done &= self
                    .messages(&subjects.partition_stream(alert_router::STAGE))
                    .await
                    == total;
                done &= self
                    .messages(&subjects.partition_stream(risk_scorer::STAGE))
                    .await
                    == total;
            } else {
                for (stage, kind) in [
                    (risk_scorer::STAGE, StreamKind::Metrics),
                    (alert_router::STAGE, StreamKind::Risk),
                ] {
                    done &= self
                        .consumer_done(
                            &subjects.stream_name(kind),
                            &subjects.durable_consumer(stage, kind),
                        )
                        .await;
                }
            }
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stages did not finish within 60 s"
            );
        }
    }

    /// The stored alert events, as (id, action, severity, at_ms), and how many are stored;
    /// asserts first that no user was refused anything (the server logs each refusal).
    async fn events(&self) -> (BTreeSet<(String, String, String, i64)>, usize) {
        let log = self.nats.server_log();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
        assert!(refused.is_empty(), "users were refused: {refused:#?}");
        let stored = replay(
            &self.bus,
            StreamKind::Alerts,
            self.bus.subjects().alerts_all(),
            DeliverPolicy::All,
        )
        .await
        .expect("alerts read back");
        let keys: BTreeSet<_> = stored
            .iter()
            .map(|message| {
                let event: AlertEvent = wire::decode(&message.payload).expect("decodes");
                (
                    event.id,
                    format!("{:?}", event.action),
                    event.severity,
                    event.at_ms,
                )
            })
            .collect();
        (keys, stored.len())
    }
}

/// One risk scorer and one alert router, each on a connection of its own as its user.
async fn spawn_instance(
    settings: &Settings,
) -> (StageHandle<RiskScorer>, StageHandle<AlertRouter>) {
    let connect = |role| async move {
        Bus::connect_as(&settings.nats, role)
            .await
            .unwrap_or_else(|error| panic!("{role:?} connects: {error}"))
    };
    let scorer = risk_scorer::spawn(settings, connect(BusRole::RiskScorer).await)
        .await
        .expect("the risk scorer starts");
    let router = alert_router::spawn(settings, connect(BusRole::AlertRouter).await)
        .await
        .expect("the alert router starts");
    (scorer, router)
}

/// Waits on the counters (at most 20 s) until `takeovers` reaches `count`; returns it.
async fn wait_takeovers(counters: &StageCounters, count: u64) -> u64 {
    match counters
        .wait_until(|c| c.extra("takeovers") >= count, Duration::from_secs(20))
        .await
    {
        Ok(counters) | Err(counters) => counters.extra("takeovers"),
    }
}

/// The events one risk scorer and one alert router (unpartitioned, as today) store from
/// `samples`.
async fn reference(samples: &[(String, MetricSample)]) -> BTreeSet<(String, String, String, i64)> {
    let run = Run::start(1, 1).await;
    run.publish(samples).await;
    run.settle(samples.len() as u64).await;
    let (events, stored) = run.events().await;
    assert_eq!(stored, events.len(), "one instance doubles nothing");
    assert!(
        events.len() > SERVERS,
        "the samples raise and resolve alerts: {}",
        events.len()
    );
    events
}

/// Two scorers and two routers, 4 partitions, each instance owning two of each stage: the
/// alert events stored are exactly those of one scorer and one router, none doubled.
#[actix::test]
async fn two_instances_store_the_events_of_one() {
    let input = samples(&Settings::default().subjects());
    let expected = reference(&input).await;

    let run = Run::start(2, PARTITIONS).await;
    let owned = run.owned();
    for stage in [&owned[..2], &owned[2..]] {
        let all: BTreeSet<u32> = stage.iter().flatten().copied().collect();
        assert_eq!(
            all.len(),
            4,
            "every partition has exactly one owner: {owned:?}"
        );
    }
    run.publish(&input).await;
    run.settle(input.len() as u64).await;
    let (events, stored) = run.events().await;
    assert_eq!(stored, events.len(), "no event doubled");
    assert_eq!(events, expected, "the events of one instance, none missing");
    for handle in &run.scorers {
        assert!(
            handle.counters.snapshot().received > 0,
            "both scorers worked"
        );
    }
    for handle in &run.routers {
        assert!(
            handle.counters.snapshot().received > 0,
            "both routers worked"
        );
    }
}

/// One scorer and one router are killed mid-stream (stopped without draining: their
/// leases are not released, their inputs in flight not acknowledged): the others take their
/// partitions over within two steps, rebuild their state from the streams, and the events
/// stored are still exactly those of one instance, none missing, none doubled.
#[actix::test]
async fn a_killed_instance_is_taken_over_within_two_steps() {
    let input = samples(&Settings::default().subjects());
    let expected = reference(&input).await;

    let run = Run::start(2, PARTITIONS).await;
    let (first, second) = input.split_at(input.len() / 2);
    run.publish(first).await;
    // Mid-stream: the doomed router has routed some scores, not necessarily all.
    let routed = run.routers[1]
        .counters
        .wait_until(|c| c.received >= 20, Duration::from_secs(30))
        .await;
    assert!(routed.is_ok(), "the second router works before it dies");
    let before: Vec<u64> = [&run.scorers[0].counters, &run.routers[0].counters]
        .iter()
        .map(|counters| counters.snapshot().extra("takeovers"))
        .collect();
    run.scorers[1].send(Stop).await.unwrap();
    run.routers[1].send(Stop).await.unwrap();
    let killed = Instant::now();
    run.publish(second).await;
    let scorer = wait_takeovers(&run.scorers[0].counters, before[0] + 2).await;
    let router = wait_takeovers(&run.routers[0].counters, before[1] + 2).await;
    let takeover = killed.elapsed();
    assert_eq!(
        (scorer, router),
        (before[0] + 2, before[1] + 2),
        "the survivors took the two partitions of the dead over"
    );
    assert!(
        takeover < Duration::from_millis(2 * STEP_MS),
        "taken over within two steps ({STEP_MS} ms each): {takeover:?}"
    );
    let owned = run.owned();
    assert_eq!((owned[0].len(), owned[2].len()), (4, 4), "{owned:?}");
    run.settle(input.len() as u64).await;
    let (events, stored) = run.events().await;
    assert_eq!(stored, events.len(), "no event doubled");
    assert_eq!(events, expected, "the events of one instance, none missing");
    eprintln!("takeover after {takeover:?}");
}

/// One scorer and one router own all 4 partitions; a second of each joins mid-stream: the
/// first hands two partitions of each stage over, and the events are still exactly those of
/// one instance.
#[actix::test]
async fn a_joining_instance_gets_its_share() {
    let input = samples(&Settings::default().subjects());
    let expected = reference(&input).await;

    let mut run = Run::start(1, PARTITIONS).await;
    let (first, second) = input.split_at(input.len() / 2);
    run.publish(first).await;
    run.add_instance().await;
    run.wait_shares(2).await;
    for handle in [&run.scorers[0].counters, &run.routers[0].counters] {
        assert_eq!(
            handle.snapshot().extra("handoffs"),
            2,
            "two partitions handed over"
        );
    }
    run.publish(second).await;
    run.settle(input.len() as u64).await;
    let (events, stored) = run.events().await;
    assert_eq!(stored, events.len(), "no event doubled");
    assert_eq!(events, expected, "the events of one instance, none missing");
    assert!(
        run.routers[1].counters.snapshot().received > 0,
        "the new router works"
    );
}
