//! End-to-end latency: from a step closing to the forecast, the forecast-informed risk score
//! and the alert being published, for fleets of 1,000 and 10,000 servers.
//!
//! ```text
//! cargo bench --bench e2e                          # 1,000 and 10,000 servers
//! FLEETCAST_BENCH_FLEETS=1000 cargo bench --bench e2e
//! ```
//!
//! One process runs a private nats-server (JetStream on), the window keeper, the predictor
//! (two workers of one ONNX Runtime thread each, the shipped model), the risk scorer and the
//! alert router, as `fleetcast up` does. The bench publishes 289 calm steps for every server
//! (so every window is full and warm forecasts have flowed), then one step at which every
//! server turns critical. Each server's sample of that step closes its previous step: the
//! clock starts when that sample is published. It stops when (a) the forecast for the closed
//! step is published, (b) a risk score using that forecast is published, and (c) the alert
//! raised by the critical sample is published. Times are wall-clock, observed by a subscriber
//! in the same process.

use fleetcast::actors::window_keeper;
use fleetcast::bus::{Bus, NatsServer, STREAM_PUBLISH_WINDOW, StreamPublisher, find_server_binary};
use fleetcast::catalog::Metric;
use fleetcast::pipeline::{self, ActorKind};
use fleetcast::settings::Settings;
use fleetcast::wire::{self, MetricSample, RiskScore, SCHEMA_VERSION};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const STEP_S: i64 = 300;
const START_S: i64 = 1_767_571_200;
const CONTEXT: i64 = 288;

fn main() {
    let fleets: Vec<u32> = std::env::var("FLEETCAST_BENCH_FLEETS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|size| size.trim().parse().expect("fleet sizes are numbers"))
        .collect();
    println!(
        "| servers | step close → forecast p50 / p99 / last | → risk with forecast p50 / p99 / last | → alert p50 / p99 / last |"
    );
    println!("|---:|---|---|---|");
    for servers in fleets {
        let row = actix::System::new().block_on(run(servers));
        println!("{row}");
    }
}

fn sample(server: &str, step: i64, critical: bool) -> MetricSample {
    let wiggle = ((step * 7 + server.len() as i64) % 5) as f64;
    let (user, idle, mem) = if critical {
        (93.0, 1.0, 97.0)
    } else {
        (20.0 + wiggle, 74.0 - wiggle, 50.0 + wiggle)
    };
    let values = [
        user, 5.0, 1.0, idle, 10.0, mem, 1.0, 40.0, 10.0, 10.0, 2.0, 2.0, 1.0, 10.0,
    ];
    MetricSample {
        v: SCHEMA_VERSION,
        server: server.into(),
        ts_ms: (START_S + step * STEP_S) * 1000,
        profile: Some("generic".into()),
        metrics: Metric::ALL
            .into_iter()
            .zip(values)
            .map(|(metric, value)| (metric.name().to_string(), value))
            .collect(),
    }
}

/// Publishes one step for every server into the `METRICS` stream, as the generator does (a
/// window of acknowledgements, every sample stored before returning).
async fn publish_step(
    bus: &Bus,
    names: &[String],
    step: i64,
    critical: bool,
) -> HashMap<String, Instant> {
    let mut stream = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    let mut sent = HashMap::with_capacity(names.len());
    let mut unstored = 0;
    for name in names {
        let payload = wire::encode(&sample(name, step, critical));
        sent.insert(name.clone(), Instant::now());
        unstored += stream
            .publish(bus.subjects().metrics(name), payload.into())
            .await
            .expect("publish");
    }
    unstored += stream.flush().await;
    assert_eq!(unstored, 0, "every sample stored");
    sent
}

fn percentiles(mut millis: Vec<f64>) -> String {
    if millis.is_empty() {
        return "none".into();
    }
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
    format!("{:.0} / {:.0} / {:.0} ms", at(0.5), at(0.99), at(1.0))
}

async fn run(servers: u32) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = find_server_binary("").expect("nats-server (scripts/bootstrap installs it)");
    let dir = tempfile::tempdir().expect("temporary folder");
    let server = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
    let mut settings = Settings::default();
    settings.nats.url = server.url().to_string();
    settings.nats.embedded = false;
    settings.predictor.model_dir = root.join("models/tft-v3");
    settings.predictor.workers = 2;
    settings.predictor.intra_threads = 1;
    settings.predictor.max_ack_pending = 20_000;
    settings.window_keeper.rebuild_on_start = false;
    settings.alerts.raise_after_seconds = 0;
    let bus = Bus::connect(&settings.nats).await.expect("connect");
    // Every actor but the generator (the bench publishes the samples), as `up` starts them.
    let running = pipeline::start(
        &settings,
        &bus,
        &[
            ActorKind::WindowKeeper,
            ActorKind::Predictor,
            ActorKind::RiskScorer,
            ActorKind::AlertRouter,
        ],
    )
    .await
    .expect("the pipeline starts");
    let keeper = running.window_keeper.clone().expect("a window keeper");

    let names: Vec<String> = (0..servers).map(|index| format!("srv{index:06}")).collect();
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let mut risks = bus
        .client()
        .subscribe(bus.subjects().risk_all())
        .await
        .unwrap();
    let mut alerts = bus
        .client()
        .subscribe(bus.subjects().alerts_all())
        .await
        .unwrap();

    // Warm-up: 289 calm steps fill every window; the last one closes step 287, so the first
    // jobs (and the ONNX sessions' first runs) happen before the measured step.
    let warm = Instant::now();
    for step in 0..=CONTEXT {
        publish_step(&bus, &names, step, false).await;
    }
    loop {
        let warmup = keeper
            .send(window_keeper::GetWarmup { per_server: false })
            .await
            .expect("keeper answers");
        if warmup.servers_ready == servers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut warm_forecasts = 0;
    while warm_forecasts < servers {
        match tokio::time::timeout(Duration::from_secs(120), forecasts.next()).await {
            Ok(Some(_)) => warm_forecasts += 1,
            _ => panic!("warm-up forecasts stalled at {warm_forecasts} of {servers}"),
        }
    }
    eprintln!(
        "e2e: {servers} servers warm in {:.1} s",
        warm.elapsed().as_secs_f64()
    );
    // Drop what the warm-up left on the risk and alert subjects.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while tokio::time::timeout(Duration::from_millis(50), risks.next())
        .await
        .is_ok()
    {}
    while tokio::time::timeout(Duration::from_millis(50), alerts.next())
        .await
        .is_ok()
    {}

    // The measured step: every server turns critical; its sample closes step CONTEXT.
    let closed_origin = START_S + CONTEXT * STEP_S;
    let sent = publish_step(&bus, &names, CONTEXT + 1, true).await;
    // First arrival per server on each path, in milliseconds after its closing sample.
    let (mut to_forecast, mut to_risk, mut to_alert) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let subjects = bus.subjects().clone();
    let server_of = |subject: &str| subjects.server_of(subject).unwrap_or_default().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while to_forecast.len() < names.len()
        || to_risk.len() < names.len()
        || to_alert.len() < names.len()
    {
        let since = |server: &str| sent[server].elapsed().as_secs_f64() * 1000.0;
        tokio::select! {
            Some(message) = forecasts.next() => {
                let server = server_of(&message.subject);
                to_forecast.entry(server.clone()).or_insert_with(|| since(&server));
            }
            Some(message) = risks.next() => {
                let risk: RiskScore = wire::decode(&message.payload).expect("risk score");
                if risk.forecast_origin_s == Some(closed_origin) {
                    to_risk.entry(risk.server.clone()).or_insert_with(|| since(&risk.server));
                }
            }
            Some(message) = alerts.next() => {
                let server = server_of(&message.subject);
                to_alert.entry(server.clone()).or_insert_with(|| since(&server));
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    format!(
        "| {servers} | {} | {} | {} |",
        percentiles(to_forecast.into_values().collect()),
        percentiles(to_risk.into_values().collect()),
        percentiles(to_alert.into_values().collect())
    )
}
