//! The gateway on a real bus: the original's endpoints, `/api/v1`, push events, `/metrics`
//! (parsed, and scraped by a real Prometheus), auth, `POST /feed/data` against the window
//! keeper's rule, its micro service and drain (`service`), and the dashboard in a real
//! browser (`e2e`, run with the end-to-end tests).

mod api;
mod e2e;
mod feed;
mod metrics;
mod service;

use crate::util::TestNats;
use fleetcast::actors::gateway::{self, Gateway};
use fleetcast::bus::{Bus, STREAM_PUBLISH_WINDOW, StreamPublisher};
use fleetcast::settings::Settings;
use fleetcast::wire::{
    self, AlertAction, AlertEvent, AttentionSummary, Driver, FactorSource, Forecast, MetricSample,
    QuantileSeries, RiskFactor, RiskScore, SCHEMA_VERSION,
};
use serde_json::Value;
use std::time::Duration;

/// Simulated "now" of the synthetic data, unix seconds, on a 300 s step boundary (recent,
/// so the alert history ranges, which end at the later of the wall clock and the newest
/// sample, hold it).
pub fn now_s() -> i64 {
    let now = wire::now_ms() / 1000;
    now - now % 300
}

/// Settings for a gateway on a free port of the test's nats-server.
pub fn settings(nats: &TestNats) -> Settings {
    let mut settings = nats.settings.clone();
    settings.gateway.bind = "127.0.0.1:0".parse().expect("an address");
    settings.gateway.poll_interval_seconds = 1;
    settings.gateway.push_interval_ms = 50;
    settings.gateway.workers = 1;
    settings
}

/// Starts a gateway.
pub async fn start(settings: &Settings, bus: &Bus) -> Gateway {
    gateway::spawn(settings, bus.clone())
        .await
        .expect("the gateway starts")
}

/// A subscription to the gateway's dead letters (`rejected.gateway`), confirmed with the
/// server.
pub async fn dead_letters(bus: &Bus) -> async_nats::Subscriber {
    let dead = bus
        .client()
        .subscribe(bus.subjects().rejected("gateway"))
        .await
        .expect("a subscription");
    bus.client().flush().await.expect("flushed");
    dead
}

/// `http://<gateway><path>`.
pub fn url(gateway: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gateway.local_addr)
}

/// An HTTP client with a generous timeout (the machine is shared).
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// GETs `path` and returns the status and the JSON body (Null when not JSON).
pub async fn get_json(gateway: &Gateway, path: &str) -> (u16, Value) {
    get_json_with(gateway, path, &[]).await
}

/// GETs `path` with extra headers.
pub async fn get_json_with(
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client().get(url(gateway, path));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    let body = response.body().limit(256 << 20).await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// POSTs a JSON body.
pub async fn post_json(gateway: &Gateway, path: &str, body: &Value) -> (u16, Value) {
    let mut response = client()
        .post(url(gateway, path))
        .send_json(body)
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    let body = response.body().limit(64 << 20).await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Polls `probe` until it gives `Some`, failing with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the gateway holds `servers` servers with a risk score.
pub async fn wait_scored(gateway: &Gateway, servers: usize) {
    let state = gateway.state.clone();
    wait_until("the gateway's risk scores", Duration::from_secs(30), || {
        let state = state.clone();
        async move {
            let snapshot = state.read();
            let scored = snapshot
                .servers
                .values()
                .filter(|e| e.risk.is_some())
                .count();
            (scored >= servers).then_some(())
        }
    })
    .await;
}

/// Publishes `messages` into their streams, waiting for every acknowledgement.
pub async fn store<T: wire::WireMessage>(bus: &Bus, messages: &[(String, T)]) {
    let mut publisher = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    for (subject, message) in messages {
        publisher
            .publish_message(subject.clone(), message)
            .await
            .expect("published");
    }
    assert_eq!(publisher.flush().await, 0, "every message stored");
}

/// A sample of `server` at `ts_s`.
pub fn sample(server: &str, ts_s: i64, values: &[(&str, f64)]) -> MetricSample {
    MetricSample {
        v: SCHEMA_VERSION,
        server: server.into(),
        ts_ms: ts_s * 1000,
        profile: None,
        metrics: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// A 96-step forecast from `origin_s` whose metric `m` rises linearly from `start` by `slope`
/// per step, p10/p90 5 below/above.
pub fn forecast(server: &str, origin_s: i64, metrics: &[(&str, f32, f32)]) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: fleetcast::catalog::Profile::infer(server).name().into(),
        model: "tft-test".into(),
        model_version: "9".into(),
        issued_ms: origin_s * 1000 + 1,
        origin_s,
        step_seconds: 300,
        step_s: (1..=96).map(|i| origin_s + i * 300).collect(),
        metrics: metrics
            .iter()
            .map(|(name, start, slope)| {
                let p50: Vec<f32> = (0..96).map(|i| start + slope * i as f32).collect();
                (
                    name.to_string(),
                    QuantileSeries {
                        p10: p50.iter().map(|v| v - 5.0).collect(),
                        p90: p50.iter().map(|v| v + 5.0).collect(),
                        p50,
                        observed_steps: 200,
                    },
                )
            })
            .collect(),
        drivers: vec![
            Driver {
                variable: "value".into(),
                weight: 0.7,
            },
            Driver {
                variable: "hour".into(),
                weight: 0.3,
            },
        ],
        attention: AttentionSummary {
            recent_share: 0.6,
            oldest_share: 0.1,
            top_hours_ago: vec![0.5, 24.0],
        },
    }
}

/// A risk score of `server` with `score` and the level on the default scale.
pub fn risk(server: &str, score: f64, sample_s: i64) -> RiskScore {
    let level = fleetcast::levels::Scale::default().level_of(score);
    RiskScore {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: fleetcast::catalog::Profile::infer(server).name().into(),
        at_ms: sample_s * 1000 + 5,
        sample_ms: sample_s * 1000,
        forecast_origin_s: Some(sample_s - 300),
        score,
        current: score,
        predicted: 0.0,
        level: level.name().into(),
        factors: vec![RiskFactor {
            metric: "mem_used_pct".into(),
            source: FactorSource::Current,
            value: 96.0,
            points: score,
        }],
        forecast_status: "used".into(),
    }
}

/// An alert event.
pub fn alert(
    server: &str,
    subject: &str,
    action: AlertAction,
    severity: &str,
    at_s: i64,
) -> AlertEvent {
    AlertEvent {
        v: SCHEMA_VERSION,
        id: format!("{server}-{subject}-1000"),
        server: server.into(),
        profile: fleetcast::catalog::Profile::infer(server).name().into(),
        subject: subject.into(),
        action,
        severity: severity.into(),
        previous: "healthy".into(),
        value: 96.0,
        reason: format!("{subject} predicted to reach 96.0 in about 5 min, p50"),
        opened_ms: 1_000_000,
        at_ms: at_s * 1000,
        open_seconds: 600.0,
        previous_seconds: 600.0,
    }
}
