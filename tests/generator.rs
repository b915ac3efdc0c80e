//! The generator actor against a real nats-server: live publishing, backfill, scenario
//! control by request (the `fleetcast scenario` path), and live data equal to the engine's.

use crate::util::{TestNats, collect, wait_counters};
use fleetcast::actors::generator;
use fleetcast::catalog::{Metric, Profile};
use fleetcast::settings::Settings;
use fleetcast::sim::{RELEASE_STEPS, Scenario, SimConfig, Simulation, State};
use fleetcast::wire::{
    self, MetricSample, Rejection, SCHEMA_VERSION, ScenarioReply, ScenarioRequest,
};
use std::collections::HashMap;
use std::time::Duration;

const START_MS: i64 = 1_767_614_400_000;

/// Settings for a small, fast fleet on the test server.
fn fast_settings(nats: &TestNats, servers: u32, scenario: Scenario) -> Settings {
    let mut settings = nats.settings.clone();
    settings.generator.servers = servers;
    settings.generator.step_interval_ms = 20;
    settings.generator.scenario = scenario;
    settings.generator.start = chrono::DateTime::from_timestamp_millis(START_MS);
    settings
}

fn decode_all(messages: &[async_nats::Message]) -> Vec<MetricSample> {
    messages
        .iter()
        .map(|message| wire::decode(&message.payload).expect("a metric sample"))
        .collect()
}

async fn request(bus: &fleetcast::bus::Bus, scenario: &str) -> ScenarioReply {
    bus.request(
        bus.subjects().control_scenario(),
        &ScenarioRequest {
            v: SCHEMA_VERSION,
            scenario: scenario.into(),
        },
        Duration::from_secs(5),
    )
    .await
    .expect("the generator answers")
}

/// Every server publishes one complete sample per step, stamped on step boundaries, with
/// its profile and the msgpack header; the counters count them.
#[actix::test]
async fn publishes_one_sample_per_server_per_step() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = fast_settings(&nats, 7, Scenario::Healthy);
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    let messages = collect(&mut subscriber, 7 * 3, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 21);
    let header = messages[0]
        .headers
        .as_ref()
        .and_then(|h| h.get("Content-Type"));
    assert_eq!(header.map(|value| value.as_str()), Some(wire::CONTENT_TYPE));
    let samples = decode_all(&messages);
    for (message, sample) in messages.iter().zip(&samples) {
        assert_eq!(
            message.subject.as_str(),
            bus.subjects().metrics(&sample.server)
        );
        assert_eq!(sample.metrics.len(), 14);
        for metric in Metric::ALL {
            assert!(
                sample.metrics.contains_key(metric.name()),
                "{}",
                metric.name()
            );
        }
        assert_eq!(
            sample.profile.as_deref(),
            Some(Profile::infer(&sample.server).name())
        );
        assert_eq!((sample.ts_ms - START_MS) % 300_000, 0);
    }
    let servers: std::collections::BTreeSet<&str> = samples
        .iter()
        .map(|sample| sample.server.as_str())
        .collect();
    assert_eq!(servers.len(), 7, "one of each profile: {servers:?}");
    assert_eq!(samples[0].ts_ms, START_MS);
    assert_eq!(samples[20].ts_ms, START_MS + 2 * 300_000);
    // A sample counts as published once the stream acknowledged it, a step once all of its
    // samples are.
    let counters = wait_counters(&generator.counters, |c| {
        c.published >= 21 && c.extra("steps") >= 3
    })
    .await;
    assert!(
        counters.published >= 21 && counters.extra("steps") >= 3,
        "{counters:?}"
    );
    assert_eq!(counters.publish_errors, 0);
}

/// What goes on the bus is exactly what the engine (and so `export`) computes for the
/// same seed and start: live data and training data come from one engine.
#[actix::test]
async fn live_samples_equal_the_engine() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = fast_settings(&nats, 12, Scenario::Natural);
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    // The engine first: how many of the first 5 steps' rows are online (an offline server
    // reports nothing, so publishes nothing).
    let mut config = SimConfig::new(12, settings.generator.seed);
    config.start_ms = START_MS;
    let mut fleet = Simulation::new(&config).unwrap();
    let names: Vec<String> = fleet
        .servers()
        .iter()
        .map(|spec| spec.name.clone())
        .collect();
    let computed: Vec<(i64, Vec<fleetcast::sim::Row>)> = (0..5)
        .map(|_| {
            let step = fleet.step();
            (step.ts_ms, step.rows.to_vec())
        })
        .collect();
    let online: usize = computed
        .iter()
        .map(|(_, rows)| rows.iter().filter(|row| row.values.is_some()).count())
        .sum();

    let _generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    let samples = decode_all(&collect(&mut subscriber, online, Duration::from_secs(10)).await);
    assert_eq!(samples.len(), online);
    for (step, (ts_ms, rows)) in computed.iter().enumerate() {
        for (server, row) in names.iter().zip(rows) {
            let sample = samples
                .iter()
                .find(|sample| &sample.server == server && sample.ts_ms == *ts_ms);
            let Some(values) = row.values else {
                assert!(sample.is_none(), "{server} is offline at step {step}");
                continue;
            };
            let sample = sample.unwrap_or_else(|| panic!("{server} at step {step}"));
            for (metric, value) in Metric::ALL.iter().zip(values) {
                assert_eq!(sample.metrics[metric.name()], value, "{server} {metric}");
            }
        }
    }
}

/// A scenario request (as `fleetcast scenario critical` sends it) is answered with what
/// changed, and the affected servers' cpu (idle included) and memory move within the
/// documented ramp; `status` changes nothing; an unknown name is refused and dead-lettered.
#[actix::test]
async fn scenario_request_switches_and_moves_the_affected_servers() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = fast_settings(&nats, 20, Scenario::Healthy);
    let mut rejected = bus
        .client()
        .subscribe(bus.subjects().rejected("generator"))
        .await
        .unwrap();
    let generator = generator::spawn(&settings, bus.clone()).await.unwrap();

    let status = request(&bus, "status").await;
    assert!(status.ok);
    assert_eq!(status.old_scenario, "healthy");
    assert_eq!(status.new_scenario, "healthy");
    assert_eq!(status.fleet_size, 20);

    let mut metrics = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let reply = request(&bus, "critical").await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.old_scenario, "healthy");
    assert_eq!(reply.new_scenario, "critical");
    assert_eq!(reply.affected_servers.len(), 5, "25 % of 20");
    assert_eq!(reply.affected_total, 5);
    assert_eq!(reply.fleet_size, 20);
    let switch_ms = START_MS + reply.step as i64 * 300_000;

    // Collect until a step after the fresh critical ramp (4 steps) arrives: every sample of
    // the ramp's last step is in by then (steps are stored in order). Servers the scenario
    // does not drive churn naturally, so some are offline and report nothing.
    let ramp_done_ms = switch_ms + 3 * 300_000;
    let mut last: HashMap<String, MetricSample> = HashMap::new();
    let mut before: HashMap<String, MetricSample> = HashMap::new();
    let mut newest_ms = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while newest_ms <= ramp_done_ms {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ramp not observed in time"
        );
        for sample in decode_all(&collect(&mut metrics, 20, Duration::from_secs(5)).await) {
            newest_ms = newest_ms.max(sample.ts_ms);
            if sample.ts_ms < switch_ms {
                before.insert(sample.server.clone(), sample);
            } else if sample.ts_ms <= ramp_done_ms {
                last.insert(sample.server.clone(), sample);
            }
        }
    }
    // The forced servers are labelled critical, but their Markov state still churns: one
    // may be offline at the ramp's last step.
    let online: Vec<&MetricSample> = reply
        .affected_servers
        .iter()
        .filter_map(|server| last.get(server))
        .filter(|sample| sample.ts_ms == ramp_done_ms)
        .collect();
    assert!(!online.is_empty());
    for sample in online {
        assert!(sample.metrics["cpu_idle_pct"] < 5.0, "{sample:?}");
        assert!(sample.metrics["mem_used_pct"] > 85.0, "{sample:?}");
        if let Some(earlier) = before.get(&sample.server) {
            assert!(earlier.metrics["cpu_idle_pct"] > sample.metrics["cpu_idle_pct"] + 20.0);
        }
    }

    let again = request(&bus, "status").await;
    assert_eq!(again.new_scenario, "critical");
    assert_eq!(again.affected_servers, reply.affected_servers);

    let refused = request(&bus, "chaos").await;
    assert!(!refused.ok);
    let error = refused.error.unwrap_or_default();
    assert!(
        error.contains("chaos") && error.contains("degrading"),
        "{error}"
    );
    assert_eq!(
        refused.new_scenario, "critical",
        "a refused request changes nothing"
    );
    let dead = collect(&mut rejected, 1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    let rejection: Rejection = wire::decode(&dead[0].payload).unwrap();
    assert_eq!(rejection.stage, "generator");

    let counters = generator.counters.snapshot();
    assert_eq!(counters.received, 4);
    assert_eq!(counters.accepted, 3);
    assert_eq!(counters.rejected_by_kind["bad_content"], 1);
}

/// A scenario switch over the bus lands exactly where the engine puts it: replaying the
/// same switch at the reply's step on an offline fleet gives the very same samples, and
/// `healthy` after `critical` releases the forced servers.
#[actix::test]
async fn switch_over_the_bus_matches_the_engine() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = fast_settings(&nats, 8, Scenario::Critical);
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let _generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    let reply = request(&bus, "healthy").await;
    assert!(reply.ok);
    assert_eq!(reply.old_scenario, "critical");
    assert_eq!(
        reply.affected_servers.len(),
        8,
        "healthy holds every server"
    );
    let switch = reply.step;
    let until_ms = START_MS + (switch as i64 + 5) * 300_000;
    let mut samples = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !samples
        .iter()
        .any(|sample: &MetricSample| sample.ts_ms >= until_ms)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "steps not observed in time"
        );
        samples.extend(decode_all(
            &collect(&mut subscriber, 8, Duration::from_secs(5)).await,
        ));
    }

    let mut config = SimConfig::new(8, settings.generator.seed);
    config.scenario = Scenario::Critical;
    config.start_ms = START_MS;
    let mut fleet = Simulation::new(&config).unwrap();
    let names: Vec<String> = fleet
        .servers()
        .iter()
        .map(|spec| spec.name.clone())
        .collect();
    let mut compared = 0;
    for step in 0..switch + 6 {
        if step == switch {
            fleet.set_scenario(Scenario::Healthy);
        }
        let computed = fleet.step();
        for (server, row) in names.iter().zip(computed.rows) {
            if step >= switch + RELEASE_STEPS as u64 {
                assert_eq!(row.state, State::Healthy);
                assert_eq!(row.incident_intensity, 0.0);
            }
            let Some(sample) = samples
                .iter()
                .find(|sample| &sample.server == server && sample.ts_ms == computed.ts_ms)
            else {
                continue;
            };
            let values = row
                .values
                .expect("a published sample is an online server's");
            for (metric, value) in Metric::ALL.iter().zip(values) {
                assert_eq!(
                    sample.metrics[metric.name()],
                    value,
                    "{server} {metric} step {step}"
                );
            }
            compared += 1;
        }
    }
    assert!(compared >= 8 * 5, "compared {compared} samples");
}

/// With a backfill the history is published at once (far faster than the live interval),
/// starting `backfill_hours` before now on a step boundary, then the clock goes live.
#[actix::test]
async fn backfill_publishes_history_then_goes_live() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    // Healthy: nobody goes offline, so every step has all 3 samples.
    let mut settings = fast_settings(&nats, 3, Scenario::Healthy);
    settings.generator.start = None;
    settings.generator.backfill_hours = 2;
    settings.generator.step_interval_ms = 60_000;
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let before_ms = wire::now_ms();
    let started = std::time::Instant::now();
    let _generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    // 24 backfill steps plus the first live step, 3 servers each.
    let samples = decode_all(&collect(&mut subscriber, 75, Duration::from_secs(20)).await);
    assert_eq!(samples.len(), 75);
    assert!(started.elapsed() < Duration::from_secs(20));
    let first = samples.iter().map(|sample| sample.ts_ms).min().unwrap();
    assert_eq!(first % 300_000, 0);
    let expected = before_ms - 2 * 3_600_000;
    assert!(
        first <= expected && first > expected - 300_000 - 5_000,
        "{first} vs {expected}"
    );
    let last = samples.iter().map(|sample| sample.ts_ms).max().unwrap();
    assert_eq!(last - first, 24 * 300_000);
}

/// With no start time set, a restarted generator continues one step after the newest sample
/// already in the metrics stream instead of jumping back in time.
#[actix::test]
async fn restart_resumes_after_the_stream() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let step_ms = 300_000;
    let last_ms = (wire::now_ms() / step_ms) * step_ms + 10 * step_ms;
    let previous = MetricSample {
        v: SCHEMA_VERSION,
        server: "ppweb001".into(),
        ts_ms: last_ms,
        profile: None,
        metrics: [("cpu_user_pct".to_string(), 10.0)].into(),
    };
    let ack = bus
        .jetstream()
        .publish(
            bus.subjects().metrics("ppweb001"),
            wire::encode(&previous).into(),
        )
        .await
        .unwrap();
    ack.await.expect("stored in the metrics stream");
    let mut settings = fast_settings(&nats, 3, Scenario::Healthy);
    settings.generator.start = None;
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let _generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    let samples = decode_all(&collect(&mut subscriber, 3, Duration::from_secs(10)).await);
    assert_eq!(samples.len(), 3);
    assert!(
        samples
            .iter()
            .all(|sample| sample.ts_ms == last_ms + step_ms)
    );
}

/// With `generator.labels_file` the generator writes the ground truth of what it simulated:
/// after every simulated hour, and when it stops, exactly the labels the engine (and so
/// `export --labels`) gives for the same seed, start, scenario and steps.
#[actix::test]
async fn a_live_run_writes_the_engines_labels() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("labels.json");
    let mut settings = fast_settings(&nats, 12, Scenario::Critical);
    settings.generator.backfill_hours = 1;
    settings.generator.labels_file = Some(path.clone());
    let generator = generator::spawn(&settings, bus.clone()).await.unwrap();
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).expect("the labels file exists"))
            .expect("the labels file is JSON")
    };
    // Hour one's file is written before step 12 is published, so before it counts.
    wait_counters(&generator.counters, |c| c.extra("steps") >= 13).await;
    let hourly = read();
    assert_eq!(hourly["steps"].as_u64().map(|steps| steps % 12), Some(0));
    generator
        .addr
        .send(fleetcast::actors::stage::Drain)
        .await
        .expect("the generator drains");
    let written = read();
    let steps = generator.counters.snapshot().extra("steps");
    assert_eq!(
        written["steps"].as_u64(),
        Some(steps),
        "every step labelled"
    );

    let mut config = SimConfig::new(12, settings.generator.seed);
    config.start_ms = START_MS;
    config.scenario = Scenario::Critical;
    let mut fleet = Simulation::new(&config).unwrap();
    fleet.record_labels(
        &fleetcast::sim::CATALOG_THRESHOLDS,
        settings.alerts.profile_normal_sigmas,
    );
    for _ in 0..steps {
        fleet.step();
    }
    let engine = serde_json::to_value(fleet.labels_file(settings.generator.seed).unwrap())
        .expect("labels serialize");
    assert_eq!(written, engine, "the live labels are the engine's");
    let labels = written["labels"].as_array().expect("a list of labels");
    assert!(
        labels.iter().any(|label| label["kind"] == "critical"),
        "the critical scenario's ramps are labelled: {labels:?}"
    );
}
