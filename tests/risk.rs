//! The risk scorer on a real bus: scores from samples and forecasts, profile-aware memory,
//! the fleet summary, and bad input refused to the dead-letter subject.

use crate::util::{TestNats, collect, wait_counters};
use fleetcast::actors::risk_scorer::{self, RiskScorer};
use fleetcast::actors::stage::StageHandle;
use fleetcast::bus::Bus;
use fleetcast::wire::{
    self, AttentionSummary, FactorSource, FleetSummary, Forecast, MetricSample, QuantileSeries,
    RejectKind, Rejection, RiskScore, SCHEMA_VERSION,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Simulated "now" of the tests, unix seconds (on a 300 s step boundary).
pub const NOW: i64 = 1_700_000_100;

/// A sample of `server` at `ts_s` with `values`.
pub fn sample(server: &str, ts_s: i64, values: &[(&str, f64)]) -> MetricSample {
    MetricSample {
        v: SCHEMA_VERSION,
        server: server.into(),
        ts_ms: ts_s * 1000,
        profile: None,
        metrics: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// A 96-step forecast of `server` whose first step starts at `first_step_s`, each metric
/// constant at `value` for p10, p50 and p90.
pub fn forecast(server: &str, first_step_s: i64, values: &[(&str, f32)]) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: fleetcast::catalog::Profile::infer(server).name().into(),
        model: "hand".into(),
        model_version: "0".into(),
        issued_ms: first_step_s * 1000,
        origin_s: first_step_s - 300,
        step_seconds: 300,
        step_s: (0..96).map(|i| first_step_s + i * 300).collect(),
        metrics: values
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    QuantileSeries {
                        p10: vec![*value; 96],
                        p50: vec![*value; 96],
                        p90: vec![*value; 96],
                        observed_steps: 288,
                    },
                )
            })
            .collect(),
        drivers: vec![],
        attention: AttentionSummary {
            recent_share: 0.0,
            oldest_share: 0.0,
            top_hours_ago: vec![],
        },
    }
}

async fn start(nats: &TestNats) -> (Bus, StageHandle<RiskScorer>, async_nats::Subscriber) {
    let bus = nats.bus().await;
    let risk = bus
        .client()
        .subscribe(bus.subjects().risk_all())
        .await
        .unwrap();
    let scorer = risk_scorer::spawn(&nats.settings, bus.clone())
        .await
        .unwrap();
    (bus, scorer, risk)
}

fn decode_all<T: wire::WireMessage>(messages: &[async_nats::Message]) -> Vec<T> {
    messages
        .iter()
        .map(|message| wire::decode(&message.payload).expect("decodes"))
        .collect()
}

/// The catalog §6 hand case through the bus: a sample alone scores 0.7 × current with the
/// forecast reported missing; the forecast then re-scores to 0.7 × 100 + 0.3 × 60 = 88.
#[actix::test]
async fn sample_then_forecast_scores_as_hand_computed() {
    let nats = TestNats::start();
    let (bus, scorer, mut risk) = start(&nats).await;
    let values = [
        ("cpu_idle_pct", 3.0),
        ("mem_used_pct", 91.0),
        ("cpu_iowait_pct", 12.0),
        ("swap_used_pct", 30.0),
        ("load_average", 9.0),
    ];
    let subjects = bus.subjects();
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW, &values),
    )
    .await
    .unwrap();
    let first: Vec<RiskScore> = decode_all(&collect(&mut risk, 1, Duration::from_secs(5)).await);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].current, 100.0);
    assert!((first[0].score - 70.0).abs() < 1e-9);
    assert_eq!(first[0].level, "critical");
    assert_eq!(first[0].forecast_status, "missing");
    assert_eq!(first[0].forecast_origin_s, None);

    let f = forecast(
        "ppgen001",
        NOW,
        &[
            ("cpu_idle_pct", 4.0),
            ("mem_used_pct", 96.0),
            ("cpu_iowait_pct", 25.0),
        ],
    );
    bus.publish(subjects.forecasts("ppgen001"), &f)
        .await
        .unwrap();
    let second: Vec<RiskScore> = decode_all(&collect(&mut risk, 1, Duration::from_secs(5)).await);
    assert_eq!(second.len(), 1);
    let score = &second[0];
    assert_eq!((score.current, score.predicted), (100.0, 60.0));
    assert!((score.score - 88.0).abs() < 1e-9, "{}", score.score);
    assert_eq!(score.forecast_status, "used");
    assert_eq!(score.forecast_origin_s, Some(NOW - 300));
    assert_eq!(score.sample_ms, NOW * 1000);
    let predicted_memory = score
        .factors
        .iter()
        .find(|f| f.metric == "mem_used_pct" && f.source == FactorSource::Predicted)
        .expect("predicted memory factor");
    assert_eq!(
        (predicted_memory.value, predicted_memory.points),
        (96.0, 20.0)
    );
    let counters = wait_counters(&scorer.counters, |c| c.published >= 2).await;
    assert_eq!(
        (counters.received, counters.published, counters.rejected),
        (2, 2, 0)
    );
}

/// The same 86% memory scores by profile: a web server (limit 85) gets 15 points, a generic
/// one (limit 90) 10, a database (limit 100) none.
#[actix::test]
async fn memory_points_follow_the_profile() {
    let nats = TestNats::start();
    let (bus, _scorer, mut risk) = start(&nats).await;
    for server in ["ppweb001", "ppgen001", "ppdb001"] {
        let message = sample(server, NOW, &[("mem_used_pct", 86.0)]);
        bus.publish(bus.subjects().metrics(server), &message)
            .await
            .unwrap();
    }
    let scores: Vec<RiskScore> = decode_all(&collect(&mut risk, 3, Duration::from_secs(5)).await);
    let by_server: BTreeMap<&str, (&str, f64)> = scores
        .iter()
        .map(|s| (s.server.as_str(), (s.profile.as_str(), s.current)))
        .collect();
    assert_eq!(by_server["ppweb001"], ("web_api", 15.0));
    assert_eq!(by_server["ppgen001"], ("generic", 10.0));
    assert_eq!(by_server["ppdb001"], ("database", 0.0));
}

/// Undecodable bytes, another schema version, a forecast with NaN, one with a short series,
/// a sample under another server's subject and an older sample are each refused with their
/// kind on `rejected.risk_scorer`; the scorer keeps scoring.
#[actix::test]
async fn bad_input_is_refused_and_the_scorer_goes_on() {
    let nats = TestNats::start();
    let (bus, scorer, mut risk) = start(&nats).await;
    let subjects = bus.subjects().clone();
    let mut rejected = bus
        .client()
        .subscribe(subjects.rejected("risk_scorer"))
        .await
        .unwrap();
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW, &[("mem_used_pct", 50.0)]),
    )
    .await
    .unwrap();
    bus.client()
        .publish(subjects.metrics("ppgen001"), "not msgpack".into())
        .await
        .unwrap();
    let mut old_version = sample("ppgen001", NOW, &[("mem_used_pct", 50.0)]);
    old_version.v = 7;
    bus.publish(subjects.metrics("ppgen001"), &old_version)
        .await
        .unwrap();
    let mut nan = forecast("ppgen001", NOW, &[("mem_used_pct", 50.0)]);
    nan.metrics.get_mut("mem_used_pct").unwrap().p90[3] = f32::NAN;
    bus.publish(subjects.forecasts("ppgen001"), &nan)
        .await
        .unwrap();
    let mut short = forecast("ppgen001", NOW, &[("mem_used_pct", 50.0)]);
    short
        .metrics
        .get_mut("mem_used_pct")
        .unwrap()
        .p50
        .truncate(10);
    bus.publish(subjects.forecasts("ppgen001"), &short)
        .await
        .unwrap();
    bus.publish(
        subjects.metrics("ppgen002"),
        &sample("ppgen001", NOW, &[("mem_used_pct", 50.0)]),
    )
    .await
    .unwrap();
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW - 300, &[("mem_used_pct", 50.0)]),
    )
    .await
    .unwrap();
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW + 300, &[("mem_used_pct", 96.0)]),
    )
    .await
    .unwrap();

    let rejections: Vec<Rejection> =
        decode_all(&collect(&mut rejected, 6, Duration::from_secs(5)).await);
    // Samples and forecasts come on two subscriptions: compare without their interleaving.
    let of_kind = |kind: RejectKind| {
        let found: Vec<&Rejection> = rejections.iter().filter(|r| r.kind == kind).collect();
        assert_eq!(found.len(), 1, "{kind:?} in {rejections:?}");
        found[0]
    };
    of_kind(RejectKind::Undecodable);
    assert!(of_kind(RejectKind::SchemaVersion).reason.contains('7'));
    let nan = of_kind(RejectKind::NonFinite);
    assert!(nan.reason.contains("mem_used_pct.p90"), "{}", nan.reason);
    let short = of_kind(RejectKind::BadContent);
    assert!(
        short.reason.contains("10 values for 96 steps"),
        "{}",
        short.reason
    );
    assert_eq!(
        of_kind(RejectKind::BadServer).server.as_deref(),
        Some("ppgen002")
    );
    of_kind(RejectKind::OutOfOrder);
    assert!(rejections.iter().all(|r| r.stage == "risk_scorer"));

    let scores: Vec<RiskScore> = decode_all(&collect(&mut risk, 2, Duration::from_secs(5)).await);
    assert_eq!(
        scores.len(),
        2,
        "the good samples before and after are scored"
    );
    assert_eq!(scores[1].current, 30.0, "96% memory after the bad input");
    let counters = wait_counters(&scorer.counters, |c| c.published >= 8).await;
    assert_eq!(
        (counters.received, counters.rejected, counters.published),
        (8, 6, 8)
    );
}

/// The fleet summary counts levels, lists top risks and derives the incident probability
/// and fleet health from the forecasts; it is not repeated while nothing changes.
#[actix::test]
async fn fleet_summary_is_published_when_something_changed() {
    let mut nats = TestNats::start();
    nats.settings.summary.interval_seconds = 1;
    let (bus, scorer, _risk) = start(&nats).await;
    let subjects = bus.subjects().clone();
    let mut summaries = bus
        .client()
        .subscribe(subjects.fleet_summary())
        .await
        .unwrap();
    let servers = [
        (
            "ppgen001",
            vec![("cpu_idle_pct", 1.0), ("mem_used_pct", 99.0)],
        ),
        (
            "ppgen002",
            vec![("cpu_idle_pct", 50.0), ("mem_used_pct", 91.0)],
        ),
        (
            "ppgen003",
            vec![("cpu_idle_pct", 80.0), ("mem_used_pct", 40.0)],
        ),
    ];
    for (server, values) in &servers {
        bus.publish(subjects.metrics(server), &sample(server, NOW, values))
            .await
            .unwrap();
    }
    // ppgen001's forecast: memory 99 and iowait 50 → 0.25 + 0.25 = 0.5 in 30 minutes;
    // ppgen003's calm forecast → 0: mean 0.25 → healthy.
    let hot = forecast(
        "ppgen001",
        NOW,
        &[("mem_used_pct", 99.0), ("cpu_iowait_pct", 50.0)],
    );
    bus.publish(subjects.forecasts("ppgen001"), &hot)
        .await
        .unwrap();
    let calm = forecast("ppgen003", NOW, &[("mem_used_pct", 40.0)]);
    bus.publish(subjects.forecasts("ppgen003"), &calm)
        .await
        .unwrap();

    // Summaries may catch the fleet half-way; wait for the one that has everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let summary = loop {
        let got = collect(&mut summaries, 1, Duration::from_secs(3)).await;
        let summary: FleetSummary = wire::decode(&got.first().expect("a summary").payload).unwrap();
        if summary.servers == 3 && summary.prob_30m > 0.0 {
            break summary;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no complete summary: {summary:?}"
        );
    };
    // ppgen001: 0.7 × (60 + 50) + 0.3 × (30 + 25) = 93.5 → critical; ppgen002: 0.7 × 15 = 10.5.
    assert_eq!(summary.counts["critical"], 1);
    assert_eq!(summary.counts["healthy"], 2);
    assert_eq!(summary.top_risks[0].0, "ppgen001");
    assert!(
        (summary.top_risks[0].1 - 93.5).abs() < 1e-9,
        "{:?}",
        summary.top_risks
    );
    assert!(
        (summary.prob_30m - 0.25).abs() < 1e-9,
        "{}",
        summary.prob_30m
    );
    assert_eq!(summary.fleet_health, "healthy");
    assert_eq!(summary.high_risk_servers, 0);
    // Nothing changes: two more summary intervals pass without a summary.
    let sent = scorer.counters.snapshot();
    let later = wait_counters(&scorer.counters, |c| {
        c.extra("summary_checks") >= sent.extra("summary_checks") + 2
    })
    .await;
    assert!(later.extra("summary_checks") >= sent.extra("summary_checks") + 2);
    assert_eq!(later.extra("summaries"), sent.extra("summaries"));
}

/// Publishes through JetStream and waits for the stream's ack, so the message is stored.
pub async fn publish_stored<T: wire::WireMessage>(bus: &Bus, subject: String, message: &T) {
    bus.jetstream()
        .publish_with_headers(
            subject,
            fleetcast::bus::headers(),
            wire::encode(message).into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// A scorer started after a server's sample and forecast were stored rebuilds its view from
/// the METRICS and FORECASTS streams: it holds the server's score at once, and the next
/// sample (load only) merges with the replayed memory and forecast:
/// 0.7 × (15 + 10) + 0.3 × 20 = 23.5.
#[actix::test]
async fn restarted_scorer_rebuilds_its_view_from_the_streams() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let subjects = bus.subjects().clone();
    publish_stored(
        &bus,
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW, &[("mem_used_pct", 91.0)]),
    )
    .await;
    publish_stored(
        &bus,
        subjects.forecasts("ppgen001"),
        &forecast("ppgen001", NOW, &[("mem_used_pct", 96.0)]),
    )
    .await;
    let mut risk = bus.client().subscribe(subjects.risk_all()).await.unwrap();
    let scorer = risk_scorer::spawn(&nats.settings, bus.clone())
        .await
        .unwrap();
    let scores = scorer.send(risk_scorer::GetScores).await.unwrap();
    assert!((scores["ppgen001"] - 16.5).abs() < 1e-9, "{scores:?}");
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW + 300, &[("load_average", 9.0)]),
    )
    .await
    .unwrap();
    let got: Vec<RiskScore> = decode_all(&collect(&mut risk, 2, Duration::from_secs(3)).await);
    assert_eq!(got.len(), 1, "replayed input is not re-published: {got:?}");
    assert_eq!((got[0].current, got[0].predicted), (25.0, 20.0));
    assert!((got[0].score - 23.5).abs() < 1e-9, "{}", got[0].score);
    assert_eq!(got[0].forecast_status, "used");
}
