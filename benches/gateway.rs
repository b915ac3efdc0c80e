//! The gateway under real HTTP load, from client threads speaking plain HTTP/1.1 over
//! keep-alive connections (the gateway runs on its own actix system and worker threads, as in
//! `fleetcast up`):
//!
//! 1. `GET /predictions/current` for 90 servers (14 metrics each, the original's shape):
//!    latency p50 / p99 and requests/s, with the fleet still, and with risk scores changing
//!    at the generator's pace (90 every 5 s), which invalidates the cached response;
//! 2. the overview (`GET /api/v1/summary?heatmap=true`) and the server list for 10,000
//!    servers;
//! 3. Server-Sent Events to 100 connected clients while a critical scenario's alerts and
//!    risk scores are published: delivery latency from publish to every client;
//! 4. response sizes with and without gzip.
//!
//! ```text
//! cargo bench --bench gateway
//! FLEETCAST_BENCH_SECONDS=10 FLEETCAST_BENCH_CLIENTS=4 cargo bench --bench gateway
//! ```

use fleetcast::actors::gateway::{self, Gateway};
use fleetcast::bus::{Bus, NatsServer, STREAM_PUBLISH_WINDOW, StreamPublisher, find_server_binary};
use fleetcast::catalog::Metric;
use fleetcast::settings::Settings;
use fleetcast::wire::{
    self, AlertAction, AlertEvent, AttentionSummary, Driver, FactorSource, Forecast, MetricSample,
    QuantileSeries, RiskFactor, RiskScore, SCHEMA_VERSION,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env_or("FLEETCAST_BENCH_SECONDS", 5);
    let clients = env_or("FLEETCAST_BENCH_CLIENTS", 2) as usize;
    let binary = find_server_binary("").expect("nats-server (scripts/bootstrap)");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let server = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
    let mut settings = Settings::default();
    settings.nats.url = server.url().to_string();
    settings.nats.embedded = false;
    settings.gateway.bind = "127.0.0.1:0".parse().expect("an address");
    settings.gateway.feed_rate_per_minute = 0;
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    // 1. 90 servers, /predictions/current.
    let (runtime, bus) = publisher(&settings);
    let now = wire::now_ms() / 300_000 * 300;
    runtime.block_on(populate(&bus, 90, now, true));
    let (address, stop) = start_gateway(settings.clone(), "fleetcast");
    wait_for_servers(address, 90);
    let plain = get_once(address, "/predictions/current", false);
    let gzipped = get_once(address, "/predictions/current", true);
    println!(
        "\n## GET /predictions/current, 90 servers × 14 metrics ({clients} client threads, {seconds} s each)\n"
    );
    println!("| fleet | p50 | p99 | max | requests/s |");
    println!("|---|---:|---:|---:|---:|");
    let still = load(
        address,
        "/predictions/current",
        clients,
        Duration::from_secs(seconds),
        None,
    );
    println!("| still (cached response) | {} |", still.row());
    let churn = Arc::new(AtomicBool::new(true));
    let churner = {
        let churn = churn.clone();
        let settings = settings.clone();
        std::thread::spawn(move || {
            let (runtime, bus) = publisher(&settings);
            runtime.block_on(async move {
                let mut step = 1;
                while churn.load(Ordering::Relaxed) {
                    // 90 servers every 5 s = one every 55 ms, as the generator's default pace.
                    for index in 0..90 {
                        if !churn.load(Ordering::Relaxed) {
                            break;
                        }
                        let server = format!("srv{index:05}");
                        let score = ((index * 7 + step * 3) % 100) as f64;
                        let risk = risk(&server, score, now + step as i64 * 300);
                        let _ = bus.publish(bus.subjects().risk(&server), &risk).await;
                        tokio::time::sleep(Duration::from_millis(55)).await;
                    }
                    step += 1;
                }
            })
        })
    };
    let live = load(
        address,
        "/predictions/current",
        clients,
        Duration::from_secs(seconds),
        None,
    );
    churn.store(false, Ordering::Relaxed);
    churner.join().expect("the churner ends");
    println!("| risk changing at the generator's pace | {} |", live.row());
    let gzip_live = load(
        address,
        "/predictions/current",
        clients,
        Duration::from_secs(seconds),
        Some("gzip"),
    );
    println!("| still, gzip | {} |", gzip_live.row());
    println!(
        "\nthe original re-ran its model on every call: ~1 s per call for 20 servers (catalog §5; \
              benches/python: its TFT's predict() took 19.8 s for 90 servers)."
    );
    let mut sizes = vec![("/predictions/current, 90 servers", plain, gzipped)];
    stop();

    // 2. 10,000 servers: the overview.
    let settings10k = with_prefix(&settings, "fc10k");
    let (runtime, bus) = publisher(&settings10k);
    runtime.block_on(bus.ensure_streams()).expect("streams");
    runtime.block_on(populate(&bus, 10_000, now, false));
    let (address, stop) = start_gateway(settings10k.clone(), "fc10k");
    wait_for_servers(address, 10_000);
    println!("\n## 10,000 servers ({clients} client threads, {seconds} s each)\n");
    println!("| request | p50 | p99 | max | requests/s |");
    println!("|---|---:|---:|---:|---:|");
    for path in [
        "/api/v1/summary",
        "/api/v1/summary?heatmap=true",
        "/api/v1/servers?limit=50",
        "/api/v1/servers",
    ] {
        let result = load(address, path, clients, Duration::from_secs(seconds), None);
        println!("| `GET {path}` | {} |", result.row());
    }
    sizes.push((
        "/api/v1/summary?heatmap=true, 10,000 servers",
        get_once(address, "/api/v1/summary?heatmap=true", false),
        get_once(address, "/api/v1/summary?heatmap=true", true),
    ));
    sizes.push((
        "/api/v1/servers, 10,000 servers",
        get_once(address, "/api/v1/servers", false),
        get_once(address, "/api/v1/servers", true),
    ));
    stop();

    // 3. SSE fan-out.
    let settings_sse = with_prefix(&settings, "fcsse");
    let (runtime, bus) = publisher(&settings_sse);
    runtime.block_on(bus.ensure_streams()).expect("streams");
    runtime.block_on(populate(&bus, 90, now, false));
    let (address, stop) = start_gateway(settings_sse.clone(), "fcsse");
    wait_for_servers(address, 90);
    let subscribers = env_or("FLEETCAST_BENCH_SSE_CLIENTS", 100) as usize;
    let steps = 12;
    let alerts_per_step = 30;
    let expected = steps * alerts_per_step;
    let ready = Arc::new(Barrier::new(subscribers + 1));
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let ready = ready.clone();
            std::thread::spawn(move || sse_client(address, expected, ready))
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let mut frame_bytes = 0;
    runtime.block_on(async {
        // A critical scenario: every 250 ms (a step at 20x the generator's pace) 90 risk scores
        // rise and 30 servers raise or escalate an alert.
        for step in 0..steps {
            let mut stream = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
            for index in 0..90 {
                let server = format!("srv{index:05}");
                let risk = risk(
                    &server,
                    50.0 + step as f64 * 4.0,
                    now + 300 * (step as i64 + 1),
                );
                stream
                    .publish_message(bus.subjects().risk(&server), &risk)
                    .await
                    .expect("risk");
            }
            for index in 0..alerts_per_step {
                let server = format!("srv{index:05}");
                let event = alert(&server, step, wire::now_ms());
                frame_bytes = serde_json::to_vec(&event).expect("json").len();
                stream
                    .publish_message(bus.subjects().alerts(&event.severity, &server), &event)
                    .await
                    .expect("alert");
            }
            stream.flush().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut latencies: Vec<f64> = Vec::new();
    let mut delivered = 0;
    for reader in readers {
        let (count, mut lat) = reader.join().expect("an sse client");
        delivered += count;
        latencies.append(&mut lat);
    }
    let took = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    println!(
        "\n## Server-Sent Events: {subscribers} clients, a critical scenario ({steps} steps of 90 risk scores and {alerts_per_step} alerts)\n"
    );
    println!("| alert events delivered | publish → client p50 | p99 | max | over |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {delivered} of {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} s |",
        expected * subscribers,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        took.as_secs_f64()
    );
    println!(
        "(risk changes are gathered for gateway.push_interval_ms = 500 ms into one event; alerts go at once)"
    );
    stop();

    println!("\n## Response sizes\n");
    println!("| response | plain | gzip | ratio |");
    println!("|---|---:|---:|---:|");
    for (what, plain, gzipped) in sizes {
        println!(
            "| {what} | {} | {} | {:.1}x |",
            bytes(plain),
            bytes(gzipped),
            plain as f64 / gzipped as f64
        );
    }
    println!(
        "| one SSE alert event (JSON data) | {} | – | – |",
        bytes(frame_bytes)
    );
    drop(server);
}

fn with_prefix(settings: &Settings, prefix: &str) -> Settings {
    let mut settings = settings.clone();
    settings.nats.prefix = prefix.into();
    settings
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} kB", n as f64 / 1024.0)
    }
}

fn publisher(settings: &Settings) -> (tokio::runtime::Runtime, Bus) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bus = runtime
        .block_on(Bus::connect(&settings.nats))
        .expect("connect");
    runtime.block_on(bus.ensure_streams()).expect("streams");
    (runtime, bus)
}

/// Runs a gateway on its own actix system thread; returns its address and a stop function.
fn start_gateway(settings: Settings, label: &'static str) -> (SocketAddr, impl FnOnce()) {
    let (sender, receiver) = std::sync::mpsc::channel();
    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let bus = Bus::connect(&settings.nats).await.expect("connect");
            let gateway: Gateway = gateway::spawn(&settings, bus).await.expect(label);
            sender.send(gateway.local_addr).expect("the bench waits");
            let _ = stop_receiver.await;
            let _ = gateway.stage.send(gateway::Stop).await;
        });
    });
    let address = receiver.recv().expect("the gateway starts");
    (address, move || {
        let _ = stop_sender.send(());
        thread.join().expect("the gateway thread ends");
    })
}

fn wait_for_servers(address: SocketAddr, servers: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut connection = Connection::open(address);
        let (_, body) = connection.get("/api/v1/summary", false);
        let summary: serde_json::Value = serde_json::from_slice(&body).expect("json");
        if summary["scored"].as_u64() == Some(servers as u64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never held {servers} servers: {summary}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stores `servers` servers' samples, risk scores (and, when `forecasts`, 14-metric forecasts
/// and an open alert for every tenth) into the streams.
async fn populate(bus: &Bus, servers: usize, now_s: i64, forecasts: bool) {
    let mut stream = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    for index in 0..servers {
        let server = format!("srv{index:05}");
        let subjects = bus.subjects();
        let values: Vec<(String, f64)> = Metric::ALL
            .iter()
            .map(|metric| {
                (
                    metric.name().to_string(),
                    (index % 50) as f64 + metric.index() as f64,
                )
            })
            .collect();
        let sample = MetricSample {
            v: SCHEMA_VERSION,
            server: server.clone(),
            ts_ms: now_s * 1000,
            profile: None,
            metrics: values.into_iter().collect(),
        };
        stream
            .publish_message(subjects.metrics(&server), &sample)
            .await
            .expect("sample");
        if forecasts {
            stream
                .publish_message(subjects.forecasts(&server), &forecast(&server, now_s))
                .await
                .expect("forecast");
            if index % 10 == 0 {
                let event = alert(&server, 0, now_s * 1000);
                stream
                    .publish_message(subjects.alerts(&event.severity, &server), &event)
                    .await
                    .expect("alert");
            }
        }
        stream
            .publish_message(
                subjects.risk(&server),
                &risk(&server, (index * 37 % 100) as f64, now_s),
            )
            .await
            .expect("risk");
    }
    assert_eq!(stream.flush().await, 0, "every message stored");
}

fn forecast(server: &str, origin_s: i64) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: "generic".into(),
        model: "tft-v3".into(),
        model_version: "bench".into(),
        issued_ms: origin_s * 1000,
        origin_s,
        step_seconds: 300,
        step_s: (1..=96).map(|i| origin_s + i * 300).collect(),
        metrics: Metric::ALL
            .iter()
            .map(|metric| {
                let base = 20.0 + metric.index() as f32;
                let p50: Vec<f32> = (0..96)
                    .map(|i| base + (i as f32 * 0.37).sin() * 3.3)
                    .collect();
                (
                    metric.name().to_string(),
                    QuantileSeries {
                        p10: p50.iter().map(|v| v * 0.9).collect(),
                        p90: p50.iter().map(|v| v * 1.1).collect(),
                        p50,
                        observed_steps: 288,
                    },
                )
            })
            .collect(),
        drivers: vec![Driver {
            variable: "value".into(),
            weight: 0.8,
        }],
        attention: AttentionSummary {
            recent_share: 0.5,
            oldest_share: 0.1,
            top_hours_ago: vec![1.0],
        },
    }
}

fn risk(server: &str, score: f64, sample_s: i64) -> RiskScore {
    RiskScore {
        v: SCHEMA_VERSION,
        server: server.into(),
        profile: "generic".into(),
        at_ms: wire::now_ms(),
        sample_ms: sample_s * 1000,
        forecast_origin_s: None,
        score,
        current: score,
        predicted: 0.0,
        level: fleetcast::levels::Scale::default()
            .level_of(score)
            .name()
            .into(),
        factors: vec![RiskFactor {
            metric: "cpu".into(),
            source: FactorSource::Current,
            value: score,
            points: score,
        }],
        forecast_status: "used".into(),
    }
}

fn alert(server: &str, step: usize, at_ms: i64) -> AlertEvent {
    AlertEvent {
        v: SCHEMA_VERSION,
        id: format!("{server}-risk-1"),
        server: server.into(),
        profile: "generic".into(),
        subject: "risk".into(),
        action: if step == 0 {
            AlertAction::Raise
        } else {
            AlertAction::Escalate
        },
        severity: if step < 6 { "warning" } else { "critical" }.into(),
        previous: "healthy".into(),
        value: 60.0 + step as f64,
        reason: "risk rising".into(),
        opened_ms: at_ms,
        at_ms: at_ms + step as i64,
        open_seconds: 0.0,
        previous_seconds: 0.0,
    }
}

/// A keep-alive HTTP/1.1 connection that reads `Content-Length` bodies.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(address: SocketAddr) -> Connection {
        let stream = TcpStream::connect(address).expect("connect to the gateway");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            reader: BufReader::new(stream),
        }
    }

    fn get(&mut self, path: &str, gzip: bool) -> (u16, Vec<u8>) {
        let encoding = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: bench\r\n{encoding}\r\n"
        )
        .expect("send");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("the body");
        (status, body)
    }
}

fn get_once(address: SocketAddr, path: &str, gzip: bool) -> usize {
    let (status, body) = Connection::open(address).get(path, gzip);
    assert_eq!(status, 200, "{path}");
    body.len()
}

struct Load {
    latencies: Vec<f64>,
    seconds: f64,
}

impl Load {
    fn row(&self) -> String {
        format!(
            "{:.2} ms | {:.2} ms | {:.2} ms | {:.0}",
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            self.latencies.last().copied().unwrap_or(0.0),
            self.latencies.len() as f64 / self.seconds
        )
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// `clients` threads each GET `path` back to back for `duration`.
fn load(
    address: SocketAddr,
    path: &str,
    clients: usize,
    duration: Duration,
    encoding: Option<&str>,
) -> Load {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            let gzip = encoding.is_some();
            std::thread::spawn(move || {
                let mut connection = Connection::open(address);
                let mut latencies = Vec::new();
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let (status, _) = connection.get(&path, gzip);
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    assert_eq!(status, 200, "{path}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client"))
        .collect();
    latencies.sort_by(f64::total_cmp);
    Load {
        latencies,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// One SSE client: reads alert events until `expected` arrived (or 60 s passed); returns how
/// many and each one's publish → receive latency, ms.
fn sse_client(address: SocketAddr, expected: usize, ready: Arc<Barrier>) -> (usize, Vec<f64>) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header");
        if line.trim_end().is_empty() {
            break;
        }
    }
    ready.wait();
    let mut latencies = Vec::new();
    let mut event = String::new();
    // The body is chunked: a size line, the chunk, CRLF; frames may span chunks.
    let mut pending = String::new();
    while latencies.len() < expected {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            continue;
        };
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            break;
        }
        pending.push_str(&String::from_utf8_lossy(&chunk[..size]));
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(data) = line.strip_prefix("data: ")
                    && event == "alert"
                {
                    let alert: serde_json::Value = serde_json::from_str(data).expect("json");
                    let published = alert["opened_ms"].as_i64().expect("opened_ms");
                    latencies.push((wire::now_ms() - published) as f64);
                }
            }
        }
    }
    (latencies.len(), latencies)
}
