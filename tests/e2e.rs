//! The whole pipeline in one process — generator, window keeper, predictor (the shipped model
//! on ONNX Runtime), risk scorer, alert router — against a real nats-server.

use crate::util::TestNats;
use fleetcast::bus::Bus;
use fleetcast::pipeline::{self, ActorKind, Pipeline};
use fleetcast::settings::Settings;
use fleetcast::sim::Scenario;
use fleetcast::wire::{
    self, AlertAction, AlertEvent, Forecast, SCHEMA_VERSION, ScenarioReply, ScenarioRequest,
};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// A Monday midnight, so a day of data covers every hour once.
pub(crate) const START_S: i64 = 1_767_571_200;
pub(crate) const STEP_S: i64 = 300;
/// Steps of history published before going live: one full window plus an hour.
pub(crate) const BACKFILL_STEPS: i64 = 300;

/// Settings for a small fleet stepping every `interval_ms` of wall time.
pub(crate) fn pipeline_settings(
    base: &Settings,
    servers: u32,
    scenario: Scenario,
    interval_ms: u64,
) -> Settings {
    let mut settings = base.clone();
    settings.generator.servers = servers;
    settings.generator.seed = 7;
    settings.generator.scenario = scenario;
    settings.generator.start = chrono::DateTime::from_timestamp(START_S, 0);
    settings.generator.backfill_hours = 25;
    settings.generator.step_interval_ms = interval_ms;
    settings.predictor.model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tft-v3");
    settings.predictor.intra_threads = 1;
    settings.predictor.workers = 1;
    settings.window_keeper.rebuild_on_start = false;
    settings
}

/// Starts every actor through the one start-up path `fleetcast up` takes.
async fn start_pipeline(settings: &Settings, bus: &Bus) -> Pipeline {
    pipeline::start(settings, bus, &ActorKind::ALL)
        .await
        .expect("the pipeline starts")
}

/// Simulated time of a live step, unix seconds.
pub(crate) fn live_step_s(step: i64) -> i64 {
    START_S + (BACKFILL_STEPS + step) * STEP_S
}

/// Simulated time of the generator's step `index` (counted from the start), unix seconds.
fn step_time_s(index: u64) -> i64 {
    START_S + i64::try_from(index).expect("step index fits") * STEP_S
}

/// Reads alerts and forecasts until a forecast's origin reaches `until_s` (simulated time),
/// or `timeout` of wall time passes. Returns the alert events and the forecast origins seen.
async fn watch(
    alerts: &mut async_nats::Subscriber,
    forecasts: &mut async_nats::Subscriber,
    until_s: i64,
    timeout: Duration,
) -> (Vec<AlertEvent>, BTreeSet<i64>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    let mut origins = BTreeSet::new();
    loop {
        tokio::select! {
            Some(message) = alerts.next() => {
                events.push(wire::decode::<AlertEvent>(&message.payload).expect("an alert event"));
            }
            Some(message) = forecasts.next() => {
                let forecast: Forecast = wire::decode(&message.payload).expect("a forecast");
                origins.insert(forecast.origin_s);
                if forecast.origin_s >= until_s {
                    return (events, origins);
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                panic!(
                    "the pipeline did not reach simulated {until_s} in {timeout:?}; newest forecast origin {:?}",
                    origins.last()
                );
            }
        }
    }
}

async fn subscribe(bus: &Bus, subject: String) -> async_nats::Subscriber {
    bus.client().subscribe(subject).await.expect("subscribe")
}

/// A healthy simulated day end to end raises no critical alert, and few alerts at all: the
/// forecasts of a calm fleet do not cry wolf.
#[actix::test]
async fn healthy_day_raises_no_critical_alert() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let servers = 10;
    let settings = pipeline_settings(&nats.settings, servers, Scenario::Healthy, 60);
    let mut alerts = subscribe(&bus, bus.subjects().alerts_all()).await;
    let mut forecasts = subscribe(&bus, bus.subjects().forecasts_all()).await;
    let _pipeline = start_pipeline(&settings, &bus).await;
    let day = 288;
    let (events, origins) = watch(
        &mut alerts,
        &mut forecasts,
        live_step_s(day),
        Duration::from_secs(240),
    )
    .await;
    let live_origins = origins.range(live_step_s(0)..).count() as i64;
    assert!(
        live_origins > day / 2,
        "forecasts kept up with the live day: {live_origins} of {day} steps forecast"
    );
    let critical: Vec<_> = events.iter().filter(|e| e.severity == "critical").collect();
    assert!(
        critical.is_empty(),
        "critical alerts on a healthy day: {critical:#?}"
    );
    let raised = events
        .iter()
        .filter(|e| e.action == AlertAction::Raise)
        .count();
    assert!(
        raised <= servers as usize,
        "at most one raise per server in a healthy day, got {raised}: {events:#?}"
    );
}

/// Switching to the critical scenario raises alerts for the servers it drives within an
/// hour of simulated time, and switching back to healthy resolves every alert it raised.
#[actix::test]
async fn critical_scenario_raises_then_resolves() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = pipeline_settings(&nats.settings, 12, Scenario::Healthy, 100);
    let mut alerts = subscribe(&bus, bus.subjects().alerts_all()).await;
    let mut forecasts = subscribe(&bus, bus.subjects().forecasts_all()).await;
    let _pipeline = start_pipeline(&settings, &bus).await;
    // Warm: live forecasts are flowing.
    watch(
        &mut alerts,
        &mut forecasts,
        live_step_s(2),
        Duration::from_secs(60),
    )
    .await;

    let reply: ScenarioReply = bus
        .request(
            bus.subjects().control_scenario(),
            &ScenarioRequest {
                v: SCHEMA_VERSION,
                scenario: "critical".into(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the generator answers");
    assert!(reply.ok, "{reply:?}");
    let affected: BTreeSet<String> = reply.affected_servers.iter().cloned().collect();
    assert!(!affected.is_empty());
    let switched_s = step_time_s(reply.step);
    let hour = 12 * STEP_S;
    let (events, _) = watch(
        &mut alerts,
        &mut forecasts,
        switched_s + hour,
        Duration::from_secs(90),
    )
    .await;
    let mut first_raise: BTreeMap<&str, i64> = BTreeMap::new();
    for event in events.iter().filter(|e| e.action == AlertAction::Raise) {
        first_raise
            .entry(event.server.as_str())
            .or_insert(event.at_ms / 1000);
    }
    for server in &affected {
        let raised_s = first_raise
            .get(server.as_str())
            .unwrap_or_else(|| panic!("no alert for {server} within an hour: {events:#?}"));
        assert!(
            *raised_s <= switched_s + hour,
            "{server} raised at {raised_s}"
        );
    }

    let reply: ScenarioReply = bus
        .request(
            bus.subjects().control_scenario(),
            &ScenarioRequest {
                v: SCHEMA_VERSION,
                scenario: "healthy".into(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the generator answers");
    assert!(reply.ok);
    let healed_s = step_time_s(reply.step);
    let (later, _) = watch(
        &mut alerts,
        &mut forecasts,
        healed_s.max(switched_s + hour) + 3 * hour,
        Duration::from_secs(120),
    )
    .await;
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    for event in events.iter().chain(&later) {
        match event.action {
            AlertAction::Resolve => open.remove(&event.id),
            _ => open.insert(event.id.clone(), event.severity.clone()),
        };
    }
    assert!(
        open.is_empty(),
        "alerts still open three hours after the fleet healed: {open:?}"
    );
}

/// With `nats/auth.conf` every actor (the gateway too) connects as its own user on its own
/// connection, and the pipeline still works end to end: samples in, forecasts, risk scores
/// and alert events out, every stage answering `$SRV.PING`, and the server never refused
/// anything an actor did (no permissions violation in its log).
#[actix::test]
async fn every_actor_runs_as_its_own_user() {
    let nats = TestNats::start_authenticated();
    let admin = Bus::connect(&nats.settings.nats)
        .await
        .expect("admin connects");
    let watcher = Bus::connect_as(&nats.settings.nats, fleetcast::settings::BusRole::Client)
        .await
        .expect("the client user connects");
    let mut settings = pipeline_settings(&nats.settings, 6, Scenario::Critical, 100);
    settings.gateway.bind = "127.0.0.1:0".parse().expect("an address");
    let mut alerts = subscribe(&watcher, watcher.subjects().alerts_all()).await;
    let mut forecasts = subscribe(&watcher, watcher.subjects().forecasts_all()).await;
    let mut risk = subscribe(&watcher, watcher.subjects().risk_all()).await;
    let mut actors = ActorKind::ALL.to_vec();
    actors.push(ActorKind::Gateway);
    let running = pipeline::start(&settings, &admin, &actors)
        .await
        .expect("the pipeline starts with every actor on its user");
    let (events, _) = watch(
        &mut alerts,
        &mut forecasts,
        live_step_s(12),
        Duration::from_secs(90),
    )
    .await;
    let score = tokio::time::timeout(Duration::from_secs(10), risk.next())
        .await
        .expect("a risk score")
        .expect("the subscription is open");
    wire::decode::<fleetcast::wire::RiskScore>(&score.payload).expect("a risk score");
    assert!(
        events
            .iter()
            .any(|event| event.action == AlertAction::Raise),
        "no alert raised for a critical fleet in an hour: {events:#?}"
    );
    crate::util::assert_pipeline_answers(&watcher, "with every actor on its own user").await;
    drop(running);
    let log = nats.server_log();
    let violations: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Violation"))
        .collect();
    assert!(
        violations.is_empty(),
        "the server refused something an actor did: {violations:#?}"
    );
}
