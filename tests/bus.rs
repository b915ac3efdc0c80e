//! The bus itself: headers, streams, request/reply and `tail`.

use crate::util::{TestNats, collect};
use fleetcast::bus::StreamPublisher;
use fleetcast::subjects::StreamKind;
use fleetcast::wire::{self, MetricSample, SCHEMA_VERSION};
use std::collections::BTreeMap;
use std::time::Duration;

fn sample(server: &str) -> MetricSample {
    MetricSample {
        v: SCHEMA_VERSION,
        server: server.into(),
        ts_ms: 1_700_000_000_000,
        profile: None,
        metrics: BTreeMap::from([("cpu_user_pct".to_string(), 12.5)]),
    }
}

/// A published message carries the msgpack content type and decodes back.
#[tokio::test]
async fn publish_sets_content_type() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut subscriber = bus
        .client()
        .subscribe(bus.subjects().metrics_all())
        .await
        .unwrap();
    bus.publish(bus.subjects().metrics("ppweb001"), &sample("ppweb001"))
        .await
        .unwrap();
    let messages = collect(&mut subscriber, 1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1);
    let headers = messages[0].headers.as_ref().expect("headers");
    assert_eq!(
        headers.get("Content-Type").map(|value| value.as_str()),
        Some(wire::CONTENT_TYPE)
    );
    let decoded: MetricSample = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(decoded, sample("ppweb001"));
}

/// The design's streams exist after `ensure_streams`, which can run twice.
#[tokio::test]
async fn streams_are_created_idempotently() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    bus.ensure_streams().await.expect("second call is fine");
    let jetstream = bus.jetstream();
    for kind in fleetcast::subjects::StreamKind::ALL {
        let name = bus.subjects().stream_name(kind);
        jetstream
            .get_stream(&name)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

/// `tail` prints one decodable JSON line per message, bad payloads included.
#[tokio::test]
async fn tail_prints_json_lines() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let args = fleetcast::tail::TailArgs {
        subject: bus.subjects().metrics_all(),
        count: Some(2),
        seconds: Some(10),
    };
    // Subscribed (and confirmed by the server) before anything is published.
    let tail = fleetcast::tail::subscribe(&bus, &args).await.unwrap();
    let tail = tokio::spawn(async move {
        let mut out = Vec::new();
        tail.print(&mut out).await.unwrap();
        out
    });
    bus.publish(bus.subjects().metrics("ppdb001"), &sample("ppdb001"))
        .await
        .unwrap();
    bus.client()
        .publish(
            bus.subjects().metrics("ppdb002"),
            "not msgpack \u{1}".into(),
        )
        .await
        .unwrap();
    let out = String::from_utf8(tail.await.unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["data"]["server"], "ppdb001");
    assert_eq!(lines[0]["data"]["metrics"]["cpu_user_pct"], 12.5);
    assert!(lines[1]["subject"].as_str().unwrap().ends_with("ppdb002"));
}

/// The shipped nats-server configurations (single node, the per-actor users and the
/// three-node cluster, which includes them) are valid, given every user's password and the
/// cluster's TLS files (made by `scripts/nats-certs`).
#[test]
fn shipped_nats_configs_are_valid() {
    let binary = fleetcast::bus::find_server_binary("").expect("nats-server installed");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tls = tempfile::tempdir().expect("temporary folder");
    let tls_env = crate::util::nats_certs(tls.path(), &["n1", "n2", "n3"]);
    let configs = [
        "nats/nats-server.conf",
        "nats/auth.conf",
        "nats/cluster/n1.conf",
        "nats/cluster/n2.conf",
        "nats/cluster/n3.conf",
    ];
    for config in configs {
        let output = std::process::Command::new(&binary)
            .args(["-t", "-c"])
            .arg(root.join(config))
            .envs(fleetcast::settings::BusRole::ALL.map(|role| {
                (
                    format!(
                        "FLEETCAST_NATS__USERS__{}__PASSWORD",
                        role.key().to_uppercase()
                    ),
                    "test-password",
                )
            }))
            .envs(tls_env.clone())
            .output()
            .expect("nats-server runs");
        assert!(
            output.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A burst far beyond the server's stream ingest buffer (10,000 messages) is stored whole
/// through the stream publisher's window of acknowledgements, and a message no stream takes
/// is counted as not stored.
#[tokio::test]
async fn stream_publisher_stores_a_burst_and_counts_what_is_not_stored() {
    const BURST: u64 = 30_000;
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut publisher = StreamPublisher::new(bus.client().clone(), 256);
    let mut unstored = 0;
    for index in 0..BURST {
        let server = format!("srv{:03}", index % 500);
        unstored += publisher
            .publish_message(bus.subjects().metrics(&server), &sample(&server))
            .await
            .expect("sent");
    }
    unstored += publisher.flush().await;
    assert_eq!(unstored, 0);
    let mut stream = bus
        .jetstream()
        .get_stream(bus.subjects().stream_name(StreamKind::Metrics))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, BURST);
    // No stream captures this subject: the server answers "no responders".
    publisher
        .publish_message("nowhere.stored".to_string(), &sample("x"))
        .await
        .expect("sent");
    assert_eq!(publisher.flush().await, 1);
}

/// Messages whose acknowledgements never come (sent while no stream captured their subject,
/// as to a cluster node killed before it answered) are each sent again once their own
/// deadline from the send has passed, not one acknowledgement timeout after another: a
/// window of lost messages costs one timeout, not one per message.
#[tokio::test]
async fn stream_publisher_resends_a_lost_window_after_one_timeout() {
    const LOST: u64 = 10;
    const ACK_TIMEOUT: Duration = Duration::from_millis(800);
    let nats = TestNats::start();
    let bus = nats.bus().await;
    // A silent subscriber: the publishes have a responder, so no "no responders" comes back
    // and their acknowledgements time out, as for a leader that died holding them.
    let _silent = bus.client().subscribe("lost.>").await.unwrap();
    let mut publisher =
        StreamPublisher::new(bus.client().clone(), 256).with_ack_timeout(ACK_TIMEOUT);
    for index in 0..LOST {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("lost-{index}").as_str());
        publisher
            .publish_tracked(format!("lost.{index}"), "x".into(), headers, None)
            .await
            .expect("sent");
    }
    bus.client().flush().await.unwrap();
    let mut stream = bus
        .jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "LOST".into(),
            subjects: vec!["lost.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let settled = publisher.settle().await;
    let took = started.elapsed();
    assert_eq!(settled.stored, LOST, "{settled:?}");
    assert_eq!(publisher.resent(), LOST);
    assert_eq!(stream.info().await.unwrap().state.messages, LOST);
    // One timeout after another would take LOST x 0.8 s = 8 s.
    assert!(took < ACK_TIMEOUT * 4, "settling took {took:?}");
}
