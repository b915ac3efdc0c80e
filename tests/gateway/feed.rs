//! `POST /feed/data`: every record judged as the window keeper judges it, the accepted ones
//! stored in the metrics stream, the refused ones listed with their reason; wrong bodies,
//! oversized bodies and floods answered with 400, 413 and 429.

use super::*;
use crate::util::{TestNats, collect};
use fleetcast::actors::window_keeper::fleet::{Fleet, Verdict};
use fleetcast::samples::{IngestRules, WindowShape};
use fleetcast::wire::{MetricSample, Rejection};
use serde_json::json;

fn iso(ts_s: i64) -> String {
    chrono::DateTime::from_timestamp(ts_s, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// Every record is accepted or refused exactly as the window keeper's own `Fleet` decides on
/// the same samples in the same order; accepted ones land in the metrics stream unchanged
/// and refused ones on `rejected.gateway`.
#[actix::test]
async fn records_are_judged_as_the_window_keeper_judges_them() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats);
    let gateway = start(&settings, &bus).await;
    let mut stored = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    let mut dead = dead_letters(&bus).await;
    let now = now_s();
    let records = json!({"records": [
        {"timestamp": iso(now), "server_name": "ppdb001", "profile": "database", "status": "healthy",
         "cascade_impact": 0.2, "cpu_user_pct": 45.2, "mem_used_pct": 71.0},
        {"timestamp": iso(now + 300), "server_name": "ppdb001", "cpu_user_pct": 46.0},
        {"timestamp": iso(now), "server_name": "ppdb001", "cpu_user_pct": 1.0},
        {"timestamp": iso(now), "server_name": "ppweb001", "mem_used_pct": 140.0},
        {"timestamp": iso(now), "server_name": "ppweb001", "cpu_pct": 10.0},
        {"timestamp": iso(now), "server_name": "ppweb001", "profile": "mainframe", "cpu_user_pct": 10.0},
        {"timestamp": iso(now), "cpu_user_pct": 10.0},
        {"timestamp": iso(now + 86_400), "server_name": "ppweb001", "cpu_user_pct": 10.0},
        {"timestamp": iso(now), "server_name": "bad.name", "cpu_user_pct": 10.0},
        {"timestamp": iso(now), "server_name": "ppweb001"},
        {"timestamp": now, "server_name": "ppweb002", "load_average": 2.5},
        "not a record",
        {"timestamp": "yesterday", "server_name": "ppweb001", "cpu_user_pct": 10.0},
    ]});
    let (status, reply) = post_json(&gateway, "/feed/data", &records).await;
    assert_eq!(status, 200, "{reply}");

    // The same records through the window keeper's own ingest rule.
    let mut keeper = Fleet::new(IngestRules {
        shape: WindowShape {
            context_steps: 288,
            step_seconds: 300,
        },
        max_future_ms: 600_000,
        min_observed: 24,
    });
    let mut expected_accepted = Vec::new();
    let mut expected_refused = Vec::new();
    for (index, record) in records["records"].as_array().unwrap().iter().enumerate() {
        let Ok(sample) = fleetcast::actors::gateway::feed::record_to_sample(record) else {
            expected_refused.push((index, "undecodable".to_string()));
            continue;
        };
        let subject_server = sample.server.rsplit('.').next().unwrap().to_string();
        match keeper.ingest(&subject_server, &wire::encode(&sample), wire::now_ms()) {
            Verdict::Accepted { .. } => expected_accepted.push(sample),
            Verdict::Rejected { kind, .. } => {
                expected_refused.push((index, kind.name().to_string()))
            }
        }
    }
    let refused: Vec<(usize, String)> = reply["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap() as usize,
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(refused, expected_refused, "{reply}");
    assert_eq!(reply["accepted"], expected_accepted.len(), "{reply}");
    assert_eq!(
        expected_accepted.len(),
        3,
        "the first two and the load-only record"
    );
    assert_eq!(reply["status"], "partial");
    let kinds: Vec<&str> = refused.iter().map(|(_, kind)| kind.as_str()).collect();
    for kind in [
        "out_of_order",
        "out_of_range",
        "unknown_metric",
        "unknown_profile",
        "bad_server",
        "future_timestamp",
        "empty",
        "undecodable",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let reason = |index: usize| {
        reply["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == index)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason(3).contains("mem_used_pct = 140 is outside 0–100"),
        "{}",
        reason(3)
    );
    assert!(reason(12).contains("yesterday"), "{}", reason(12));

    let messages = collect(&mut stored, 3, Duration::from_secs(10)).await;
    let samples: Vec<MetricSample> = messages
        .iter()
        .map(|m| wire::decode(&m.payload).unwrap())
        .collect();
    assert_eq!(samples, expected_accepted, "stored exactly as accepted");
    assert_eq!(messages[0].subject.as_str(), "fleetcast.metrics.ppdb001");
    let rejections = collect(&mut dead, refused.len(), Duration::from_secs(10)).await;
    assert_eq!(rejections.len(), refused.len());
    let first: Rejection = wire::decode(&rejections[0].payload).unwrap();
    assert_eq!(first.stage, "gateway");
    assert!(first.reason.starts_with("record 2:"), "{}", first.reason);
    let stream = bus
        .jetstream()
        .get_stream("FLEETCAST_METRICS")
        .await
        .unwrap()
        .cached_info()
        .state
        .messages;
    assert_eq!(stream, 3, "acknowledged into the stream before the reply");
}

/// An empty batch is ignored as the original did; a body that is not `{"records": [...]}`
/// is a 400 saying what it is; a body over the limit is a 413; a flood is a 429.
#[actix::test]
async fn bad_bodies_and_floods_are_refused_with_a_reason() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = settings(&nats);
    settings.gateway.max_body_bytes = 2048;
    settings.gateway.feed_rate_per_minute = 5;
    let gateway = start(&settings, &bus).await;
    let (status, body) = post_json(&gateway, "/feed/data", &json!({"records": []})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    let (status, body) = post_json(&gateway, "/feed/data", &json!([{"server_name": "a"}])).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("an array"),
        "{body}"
    );
    let mut response = client()
        .post(url(&gateway, "/feed/data"))
        .insert_header(("Content-Type", "application/json"))
        .send_body("{\"records\": [")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
    let big = json!({"records": [{"server_name": "a", "notes": "x".repeat(4096)}]});
    let (status, body) = post_json(&gateway, "/feed/data", &big).await;
    assert_eq!(status, 413);
    assert!(
        body["error"].as_str().unwrap().contains("max_body_bytes"),
        "{body}"
    );
    let (status, _) = post_json(&gateway, "/feed/data", &json!({"records": []})).await;
    assert_eq!(status, 200, "the fifth request in a minute");
    let (status, body) = post_json(&gateway, "/feed/data", &json!({"records": []})).await;
    assert_eq!(status, 429, "the sixth request in a minute: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("feed_rate_per_minute")
    );
    assert_eq!(gateway.stage.counters.snapshot().extra("rate_limited"), 1);
}
