//! The pipeline as `up` starts it, seen from outside: every stage instance is a NATS micro
//! service a plain client finds and reads, `status` lists them with the consumers and
//! streams, and a drain stops every stage in pipeline order.

use crate::util::{TestNats, answers, ask, wait_counters};
use fleetcast::pipeline::{self, ActorKind};
use fleetcast::settings::Settings;
use fleetcast::sim::Scenario;
use fleetcast::wire::StageReport;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A small fleet with a day of backfill, so windows fill and forecasts flow at once.
fn settings(nats: &TestNats) -> Settings {
    let mut settings = nats.settings.clone();
    settings.generator.servers = 6;
    settings.generator.scenario = Scenario::Healthy;
    settings.generator.start = chrono::DateTime::from_timestamp(1_767_571_200, 0);
    settings.generator.backfill_hours = 25;
    settings.generator.step_interval_ms = 100;
    settings.predictor.model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tft-v3");
    settings.predictor.workers = 2;
    settings.predictor.intra_threads = 1;
    settings.window_keeper.rebuild_on_start = false;
    // The inputs run too: a scrape target nobody serves (reported down), a receiver on a
    // free port.
    settings.node_exporter.targets = vec!["127.0.0.1:9".into()];
    settings.node_exporter.interval_seconds = 1;
    settings.node_exporter.timeout_seconds = 1;
    settings.remote_write.listen = "127.0.0.1:0".parse().unwrap();
    settings.gateway.bind = "127.0.0.1:0".parse().unwrap();
    settings.gateway.workers = 1;
    settings
}

/// Every actor `up` can run.
const ACTORS: [ActorKind; 8] = [
    ActorKind::NodeExporter,
    ActorKind::RemoteWrite,
    ActorKind::Generator,
    ActorKind::WindowKeeper,
    ActorKind::Predictor,
    ActorKind::RiskScorer,
    ActorKind::AlertRouter,
    ActorKind::Gateway,
];

fn names(answers: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for answer in answers {
        *names
            .entry(answer["name"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    names
}

/// A plain NATS client finds every stage instance `up` starts with `$SRV.PING` (two
/// predictor workers are two instances), reads a stage's counters from `$SRV.STATS`, and
/// `status` lists them with the consumers and streams; a drain stops the stages that
/// drain (their services no longer answer) and reports the others.
#[actix::test]
async fn every_stage_is_a_micro_service_until_drained() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats);
    let running = pipeline::start(&settings, &bus, &ACTORS)
        .await
        .expect("the pipeline starts");
    assert_eq!(running.stages().len(), 9);

    let found = names(&ask(&bus, "$SRV.PING", 9).await);
    assert_eq!(
        found,
        BTreeMap::from([
            ("fleetcast-alert-router".to_string(), 1),
            ("fleetcast-gateway".to_string(), 1),
            ("fleetcast-generator".to_string(), 1),
            ("fleetcast-node-exporter".to_string(), 1),
            ("fleetcast-predictor".to_string(), 2),
            ("fleetcast-remote-write".to_string(), 1),
            ("fleetcast-risk-scorer".to_string(), 1),
            ("fleetcast-window-keeper".to_string(), 1),
        ])
    );

    // Samples reach the risk scorer; its service reports what its counters say.
    let scorer = running.risk_scorer.clone().expect("a risk scorer");
    let caught_up = wait_counters(&scorer.counters, |c| {
        c.published >= 6 && c.consumer_lag == 0
    })
    .await;
    assert_eq!(
        caught_up.consumer_lag, 0,
        "lag counts only input: {caught_up:?}"
    );
    let stats = ask(&bus, "$SRV.STATS.fleetcast-risk-scorer", 1).await;
    let report: StageReport =
        serde_json::from_value(stats[0]["endpoints"][0]["data"].clone()).expect("a report");
    assert_eq!(report.stage, "risk_scorer");
    assert!(report.counters["received"] >= 6, "{report:?}");
    assert!(report.counters.contains_key("consumer_lag"));

    let status = fleetcast::status::gather(&bus, Duration::from_secs(2))
        .await
        .unwrap();
    let stages: Vec<&str> = status
        .stages
        .iter()
        .map(|stage| stage.report.stage.as_str())
        .collect();
    assert_eq!(
        stages,
        [
            "alert_router",
            "gateway",
            "generator",
            "node_exporter",
            "predictor",
            "predictor",
            "remote_write",
            "risk_scorer",
            "window_keeper"
        ]
    );
    let predictor = &status.stages[4].report;
    assert_eq!(predictor.facts["model"], "tft-v3 3.0.0", "{predictor:?}");
    assert!(status.stages[8].report.facts.contains_key("warmup_pct"));
    let gateway = &status.stages[1].report;
    let address = running.gateway.as_ref().expect("a gateway").local_addr;
    assert_eq!(gateway.facts["listen"], address.to_string(), "{gateway:?}");
    assert!(
        status
            .consumers
            .iter()
            .any(|consumer| consumer.name == "predictor"),
        "{:?}",
        status.consumers
    );
    assert_eq!(status.streams.len(), 5);
    let table = fleetcast::status::render(&status);
    assert!(
        table.contains("risk_scorer") && table.contains("LAG"),
        "{table}"
    );

    let report = running.drain(Duration::from_secs(6)).await;
    assert!(report.late.is_empty(), "{report:?}");
    assert_eq!(report.drained.len(), 9, "{report:?}");
    assert_eq!(
        report
            .drained
            .last()
            .map(|name| name.starts_with("gateway/")),
        Some(true),
        "the gateway drains last: {report:?}"
    );
    assert!(report.undrainable.is_empty(), "{report:?}");
    for name in [
        "fleetcast-predictor",
        "fleetcast-node-exporter",
        "fleetcast-remote-write",
        "fleetcast-generator",
        "fleetcast-window-keeper",
        "fleetcast-risk-scorer",
        "fleetcast-alert-router",
        "fleetcast-gateway",
    ] {
        assert!(
            !answers(&bus, name).await,
            "{name} still answers after its drain"
        );
    }
}
