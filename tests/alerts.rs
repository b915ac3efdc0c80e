//! The alert router on a real bus: hysteresis and dwell in message time, the order of an
//! alert's events, one predictive alert per server and metric, the ALERTS history, bad
//! input refused, and the scorer and router chained.

use crate::risk::{NOW, forecast, sample};
use crate::util::{TestNats, collect, wait_counters};
use fleetcast::actors::alert_router::{self, AlertRouter, GetOpenAlerts};
use fleetcast::actors::risk_scorer;
use fleetcast::actors::stage::{Counters, StageHandle, Stop};
use fleetcast::bus::Bus;
use fleetcast::subjects::{StreamKind, Subject};
use fleetcast::wire::{
    self, AlertAction, AlertEvent, RejectKind, Rejection, RiskScore, SCHEMA_VERSION,
};
use std::time::Duration;

/// A risk score of `server` at `ts_s` (a generic server, current points only).
pub(crate) fn risk(server: &str, score: f64, ts_s: i64) -> RiskScore {
    RiskScore {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: "generic".into(),
        at_ms: 0,
        sample_ms: ts_s * 1000,
        forecast_origin_s: None,
        score,
        current: score / 0.7,
        predicted: 0.0,
        level: String::new(),
        factors: vec![],
        forecast_status: "missing".into(),
    }
}

/// The settings these tests' timings are written for: hysteresis 5 (metric alerts too),
/// dwell 15 min, raise after 5 min, p50 (the defaults before `fleetcast evaluate alerts`
/// tuned them).
fn timed(settings: &fleetcast::settings::Settings) -> fleetcast::settings::Settings {
    let mut settings = settings.clone();
    settings.alerts.hysteresis_points = 5.0;
    settings.alerts.metric_hysteresis = 5.0;
    settings.alerts.predictive_quantile = fleetcast::settings::Quantile::P50;
    settings.alerts.min_dwell_seconds = 900;
    settings.alerts.raise_after_seconds = 300;
    settings
}

async fn start(nats: &TestNats) -> (Bus, StageHandle<AlertRouter>, async_nats::Subscriber) {
    let bus = nats.bus().await;
    let alerts = bus
        .client()
        .subscribe(bus.subjects().alerts_all())
        .await
        .unwrap();
    let router = alert_router::spawn(&timed(&nats.settings), bus.clone())
        .await
        .unwrap();
    (bus, router, alerts)
}

/// Waits until `router` has taken `inputs` messages and every event they caused is stored in
/// the ALERTS stream; returns its counters then.
async fn wait_routed(router: &StageHandle<AlertRouter>, inputs: u64) -> Counters {
    wait_counters(&router.counters, |c| {
        c.received >= inputs && c.published + c.publish_errors >= c.extra("events") + c.rejected
    })
    .await
}

/// Publishes one risk score per simulated 5 minutes.
async fn feed(bus: &Bus, server: &str, scores: &[f64]) {
    for (step, &score) in scores.iter().enumerate() {
        let message = risk(server, score, NOW + step as i64 * 300);
        bus.publish(bus.subjects().risk(server), &message)
            .await
            .unwrap();
    }
}

fn events(messages: &[async_nats::Message]) -> Vec<(String, AlertEvent)> {
    messages
        .iter()
        .map(|m| {
            (
                m.subject.to_string(),
                wire::decode(&m.payload).expect("alert decodes"),
            )
        })
        .collect()
}

/// A risk oscillating around the warning threshold for 4 simulated hours raises one alert
/// and nothing else.
#[actix::test]
async fn oscillating_risk_raises_once() {
    let nats = TestNats::start();
    let (bus, router, mut alerts) = start(&nats).await;
    let scores: Vec<f64> = (0..48)
        .map(|i| if i % 2 == 0 { 43.0 } else { 38.0 })
        .collect();
    feed(&bus, "ppgen001", &scores).await;
    let counters = wait_routed(&router, 48).await;
    assert_eq!(counters.received, 48);
    assert_eq!(counters.extra("events"), 1, "{counters:?}");
    let got = events(&collect(&mut alerts, 1, Duration::from_secs(5)).await);
    let (subject, event) = &got[0];
    assert_eq!(event.action, AlertAction::Raise);
    assert_eq!(event.severity, "watch");
    assert!(subject.ends_with(".alerts.watch.ppgen001"), "{subject}");
    assert_eq!(router.send(GetOpenAlerts).await.unwrap(), 1);
}

/// Raise, escalate, de-escalate and resolve arrive in that order with one id, on the
/// subjects of the higher severity each touches, with durations in simulated time; the
/// ALERTS stream keeps all four.
#[actix::test]
async fn escalation_and_resolution_in_order() {
    let nats = TestNats::start();
    let (bus, router, mut alerts) = start(&nats).await;
    let mut scores = vec![45.0, 45.0, 85.0, 85.0];
    scores.extend([50.0; 4]);
    scores.extend([3.0; 4]);
    feed(&bus, "ppdb001", &scores).await;
    let got = events(&collect(&mut alerts, 4, Duration::from_secs(5)).await);
    let summary: Vec<(&str, AlertAction, &str)> = got
        .iter()
        .map(|(subject, e)| {
            let Some(Subject::Alert { severity, .. }) = bus.subjects().parse(subject) else {
                panic!("{subject} is not an alert subject");
            };
            (severity, e.action, e.severity.as_str())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("warning", AlertAction::Raise, "warning"),
            ("critical", AlertAction::Escalate, "critical"),
            ("critical", AlertAction::Deescalate, "warning"),
            ("warning", AlertAction::Resolve, "healthy"),
        ]
    );
    let id = &got[0].1.id;
    assert!(got.iter().all(|(_, e)| &e.id == id));
    assert_eq!(got[0].1.opened_ms, (NOW + 300) * 1000);
    // Resolved at step 11: 50 simulated minutes after opening, the last 20 at warning
    // (de-escalated at step 7, calm from step 8, resolved once calm held 15 minutes).
    assert_eq!(got[3].1.open_seconds, 3000.0);
    assert_eq!(got[3].1.previous_seconds, 1200.0);
    assert!(
        got[3].1.reason.contains("below warning 40 - 5 for 15 min"),
        "{}",
        got[3].1.reason
    );

    // An event counts as published once the ALERTS stream acknowledged it.
    wait_counters(&router.counters, |c| c.published >= 4).await;
    let stream = bus.subjects().stream_name(StreamKind::Alerts);
    let mut stream = bus.jetstream().get_stream(&stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
}

/// Ten forecasts in a row with memory over the warning at every one of the first 12 steps
/// open exactly one mem_used_pct alert for the server (the original raised one per step),
/// whose reason names the quantile and the lead time.
#[actix::test]
async fn one_predictive_alert_per_server_and_metric() {
    let nats = TestNats::start();
    let (bus, router, mut alerts) = start(&nats).await;
    for i in 0..10 {
        for server in ["ppweb001", "ppweb002"] {
            let f = forecast(
                server,
                NOW + i * 300,
                &[("mem_used_pct", 93.0), ("cpu_user_pct", 20.0)],
            );
            bus.publish(bus.subjects().forecasts(server), &f)
                .await
                .unwrap();
        }
    }
    let counters = wait_routed(&router, 20).await;
    assert_eq!(counters.extra("events"), 2, "one per server: {counters:?}");
    let got = events(&collect(&mut alerts, 2, Duration::from_secs(5)).await);
    assert_eq!(got.len(), 2);
    for (_, event) in &got {
        assert_eq!(
            (event.subject.as_str(), event.action),
            ("mem_used_pct", AlertAction::Raise)
        );
        assert!(
            event
                .reason
                .starts_with("mem_used_pct predicted to reach 93.0% in about 5 min, p50"),
            "{}",
            event.reason
        );
    }
    assert_eq!(router.send(GetOpenAlerts).await.unwrap(), 2);
}

/// Undecodable bytes, another schema version, a NaN score, a forecast with NaN, a score
/// under another server's subject and an older score are refused with their kinds on
/// `rejected.alert_router`; the router keeps routing.
#[actix::test]
async fn bad_input_is_refused_and_the_router_goes_on() {
    let nats = TestNats::start();
    let (bus, router, mut alerts) = start(&nats).await;
    let subjects = bus.subjects().clone();
    let mut rejected = bus
        .client()
        .subscribe(subjects.rejected("alert_router"))
        .await
        .unwrap();
    feed(&bus, "ppgen001", &[90.0, 90.0]).await;
    bus.client()
        .publish(subjects.risk("ppgen001"), "\u{1}\u{2}".into())
        .await
        .unwrap();
    let mut old_version = risk("ppgen001", 10.0, NOW + 600);
    old_version.v = 2;
    bus.publish(subjects.risk("ppgen001"), &old_version)
        .await
        .unwrap();
    bus.publish(
        subjects.risk("ppgen001"),
        &risk("ppgen001", f64::NAN, NOW + 600),
    )
    .await
    .unwrap();
    let mut nan = forecast("ppgen001", NOW, &[("mem_used_pct", 50.0)]);
    nan.metrics.get_mut("mem_used_pct").unwrap().p50[0] = f32::INFINITY;
    bus.publish(subjects.forecasts("ppgen001"), &nan)
        .await
        .unwrap();
    bus.publish(subjects.risk("other"), &risk("ppgen001", 10.0, NOW + 600))
        .await
        .unwrap();
    bus.publish(subjects.risk("ppgen001"), &risk("ppgen001", 10.0, NOW))
        .await
        .unwrap();
    // Still routing: a second server raises.
    feed(&bus, "ppgen002", &[95.0, 95.0]).await;

    let rejections: Vec<Rejection> = collect(&mut rejected, 6, Duration::from_secs(5))
        .await
        .iter()
        .map(|m| wire::decode(&m.payload).unwrap())
        .collect();
    let mut kinds: Vec<String> = rejections.iter().map(|r| format!("{:?}", r.kind)).collect();
    kinds.sort();
    let mut expected: Vec<String> = [
        RejectKind::Undecodable,
        RejectKind::SchemaVersion,
        RejectKind::NonFinite,
        RejectKind::NonFinite,
        RejectKind::BadServer,
        RejectKind::OutOfOrder,
    ]
    .iter()
    .map(|k| format!("{k:?}"))
    .collect();
    expected.sort();
    assert_eq!(kinds, expected, "{rejections:?}");
    assert!(rejections.iter().all(|r| r.stage == "alert_router"));
    let got = events(&collect(&mut alerts, 2, Duration::from_secs(5)).await);
    let servers: Vec<&str> = got.iter().map(|(_, e)| e.server.as_str()).collect();
    assert_eq!(servers, ["ppgen001", "ppgen002"]);
    let counters = wait_counters(&router.counters, |c| c.published >= 8).await;
    assert_eq!(
        (counters.received, counters.rejected, counters.published),
        (10, 6, 8)
    );
}

/// Samples through the risk scorer into the router: a server whose memory climbs to 99%
/// for two steps raises a critical risk alert that cites the memory factor. (A generic
/// server: at this hour, 22 h UTC, a risk_analytics server's normal busy reaches 100 %, so
/// its CPU would score nothing.)
#[actix::test]
async fn scorer_and_router_chain() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut alerts = bus
        .client()
        .subscribe(bus.subjects().alerts_all())
        .await
        .unwrap();
    let _router = alert_router::spawn(&timed(&nats.settings), bus.clone())
        .await
        .unwrap();
    let _scorer = risk_scorer::spawn(&nats.settings, bus.clone())
        .await
        .unwrap();
    let values = [
        ("cpu_idle_pct", 1.0),
        ("mem_used_pct", 99.0),
        ("swap_used_pct", 60.0),
    ];
    for step in 0..2 {
        let message = sample("ppgen001", NOW + step * 300, &values);
        bus.publish(bus.subjects().metrics("ppgen001"), &message)
            .await
            .unwrap();
    }
    let got = events(&collect(&mut alerts, 1, Duration::from_secs(5)).await);
    assert_eq!(got.len(), 1);
    let event = &got[0].1;
    // 0.7 × (60 + 50 + 30) = 98.
    assert_eq!(
        (event.action, event.severity.as_str(), event.value),
        (AlertAction::Raise, "critical", 98.0)
    );
    assert_eq!(event.profile, "generic");
    assert!(
        event
            .reason
            .contains("risk 98.0 reached critical (>= 70): cpu 99.0% now +60"),
        "{}",
        event.reason
    );
}

/// A router that stops with a critical alert open and a new one started in its place
/// continue that alert: the new router resolves it under the same id (read back from the
/// ALERTS stream) instead of staying silent or raising it again.
#[actix::test]
async fn restarted_router_continues_open_alerts() {
    let nats = TestNats::start();
    let (bus, first, mut alerts) = start(&nats).await;
    feed(&bus, "ppdb001", &[85.0, 85.0]).await;
    let raised = events(&collect(&mut alerts, 1, Duration::from_secs(5)).await);
    assert_eq!(raised.len(), 1);
    first.send(Stop).await.unwrap();
    let second = alert_router::spawn(&timed(&nats.settings), bus.clone())
        .await
        .unwrap();
    assert_eq!(second.send(GetOpenAlerts).await.unwrap(), 1);
    for step in 2..6 {
        let message = risk("ppdb001", 3.0, NOW + step * 300);
        bus.publish(bus.subjects().risk("ppdb001"), &message)
            .await
            .unwrap();
    }
    let counters = wait_routed(&second, 4).await;
    assert_eq!(counters.extra("events"), 1, "{counters:?}");
    assert_eq!(
        first.counters.snapshot().received,
        2,
        "the stopped router takes nothing more"
    );
    let got = events(&collect(&mut alerts, 1, Duration::from_secs(5)).await);
    let (subject, resolve) = &got[0];
    assert_eq!(resolve.action, AlertAction::Resolve);
    assert_eq!(resolve.id, raised[0].1.id);
    assert_eq!(resolve.previous, "critical");
    assert!(subject.ends_with(".alerts.critical.ppdb001"), "{subject}");
}

/// Issue 11: a forecast older than the one held (two predictor workers finishing out of
/// order, as during a backfill) is counted as stale by the risk scorer and the alert router,
/// not dead-lettered, and moves nothing.
#[actix::test]
async fn out_of_order_forecasts_are_stale_not_rejected() {
    let nats = TestNats::start();
    let (bus, router, _alerts) = start(&nats).await;
    let scorer = risk_scorer::spawn(&nats.settings, bus.clone())
        .await
        .unwrap();
    let subjects = bus.subjects().clone();
    bus.publish(
        subjects.metrics("ppgen001"),
        &sample("ppgen001", NOW, &[("mem_used_pct", 50.0)]),
    )
    .await
    .unwrap();
    let newer = forecast("ppgen001", NOW + 600, &[("mem_used_pct", 50.0)]);
    let older = forecast("ppgen001", NOW + 300, &[("mem_used_pct", 99.0)]);
    for message in [&newer, &older] {
        bus.publish(subjects.forecasts("ppgen001"), message)
            .await
            .unwrap();
    }
    let scored = wait_counters(&scorer.counters, |c| c.received >= 3).await;
    assert_eq!(scored.rejected, 0, "{scored:?}");
    assert_eq!(scored.extra("stale_forecasts"), 1);
    // The router got both forecasts (in order, one subject) and at least one risk score.
    let routed = wait_counters(&router.counters, |c| {
        c.extra("stale_forecasts") >= 1 && c.received >= 3
    })
    .await;
    assert_eq!(routed.rejected, 0, "{routed:?}");
    assert_eq!(routed.extra("stale_forecasts"), 1);
    // The stale 99 % forecast raised no predictive memory alert.
    assert_eq!(router.send(GetOpenAlerts).await.unwrap(), 0);
}
