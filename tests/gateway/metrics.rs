//! `/metrics`: parsed with a real exposition-format parser, every source checked against what
//! was published (risk, forecasts, a stage's status counters, a micro service's `$SRV.STATS`,
//! a JetStream consumer's lag), and scraped by a real Prometheus that answers a query.

use super::*;
use crate::util::TestNats;
use fleetcast::actors::generator;
use fleetcast::wire::{AlertAction, StageStatus};
use prom_text_format_parser::{Scrape, Type};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

/// The value of the one sample of `name` whose labels include `labels`.
fn value_of(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let metric = scrape.metrics.iter().find(|metric| metric.name == name)?;
    metric
        .samples
        .iter()
        .find(|sample| {
            labels.iter().all(|(key, value)| {
                sample
                    .labels
                    .iter()
                    .any(|label| label.key == *key && label.value == *value)
            })
        })
        .map(|sample| sample.value.value.as_f64())
}

async fn metrics_text(gateway: &Gateway) -> String {
    let mut response = client().get(url(gateway, "/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    String::from_utf8(response.body().limit(64 << 20).await.unwrap().to_vec()).unwrap()
}

/// Publishes one critical server with a forecast and an open alert, and a window keeper
/// status; starts a generator (a micro service) and a durable consumer with a backlog.
async fn scene(nats: &TestNats) -> (Bus, Gateway) {
    let bus = nats.bus().await;
    let now = now_s();
    let subjects = bus.subjects().clone();
    let mut settings = settings(nats);
    settings.generator.servers = 2;
    settings.generator.backfill_hours = 0;
    settings.generator.step_interval_ms = 3_600_000;
    generator::spawn(&settings, bus.clone())
        .await
        .expect("generator");
    store(
        &bus,
        &[(
            subjects.metrics("ppdb001"),
            sample("ppdb001", now, &[("mem_used_pct", 96.0)]),
        )],
    )
    .await;
    store(
        &bus,
        &[(
            subjects.forecasts("ppdb001"),
            forecast(
                "ppdb001",
                now,
                &[("mem_used_pct", 90.0, 0.1), ("net_in_mb_s", 3.0, 0.0)],
            ),
        )],
    )
    .await;
    store(
        &bus,
        &[(subjects.risk("ppdb001"), risk("ppdb001", 75.0, now))],
    )
    .await;
    store(
        &bus,
        &[(
            subjects.alerts("critical", "ppdb001"),
            alert(
                "ppdb001",
                "mem_used_pct",
                AlertAction::Raise,
                "critical",
                now,
            ),
        )],
    )
    .await;
    let stream = bus
        .jetstream()
        .get_stream(subjects.stream_name(fleetcast::subjects::StreamKind::Metrics))
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("lagging".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let gateway = start(&settings, &bus).await;
    wait_scored(&gateway, 1).await;
    let status = StageStatus {
        v: SCHEMA_VERSION,
        stage: "window_keeper".into(),
        at_ms: wire::now_ms(),
        counters: BTreeMap::from([
            ("received".to_string(), 123),
            ("rejected.out_of_range".to_string(), 4),
        ]),
        servers: 1,
        servers_ready: 1,
        warmup_pct: 100.0,
    };
    bus.publish(subjects.status("window_keeper"), &status)
        .await
        .unwrap();
    let state = gateway.state.clone();
    wait_until(
        "the status and a poll of the services",
        Duration::from_secs(30),
        || {
            let state = state.clone();
            async move {
                let polled = state.polled.read().unwrap().clone();
                let has_status = state.read().stages.contains_key("window_keeper");
                let generator = polled
                    .services
                    .iter()
                    .any(|s| s.info.name == "fleetcast-generator");
                let lag = polled.consumers.iter().any(|c| c.consumer == "lagging");
                (has_status && generator && lag).then_some(())
            }
        },
    )
    .await;
    (bus, gateway)
}

/// `/metrics` parses with a real exposition parser; names carry the prefix, `_total` marks
/// every counter and only counters; each source's numbers are what was published.
#[actix::test]
async fn metrics_parse_and_report_every_source() {
    let nats = TestNats::start();
    let (_bus, gateway) = scene(&nats).await;
    let text = metrics_text(&gateway).await;
    let scrape = Scrape::parse(&text).unwrap_or_else(|error| panic!("{error:?} in\n{text}"));
    assert!(scrape.metrics.len() > 20, "{text}");
    for metric in &scrape.metrics {
        assert!(metric.name.starts_with("fleetcast_"), "{}", metric.name);
        assert!(metric.help_desc.is_some(), "{} has no HELP", metric.name);
        assert_eq!(
            metric.kind == Type::Counter,
            metric.name.ends_with("_total"),
            "{}: `_total` exactly on counters",
            metric.name
        );
    }
    let db = [("server", "ppdb001")];
    assert_eq!(
        value_of(&scrape, "fleetcast_server_risk_score", &db),
        Some(75.0)
    );
    assert_eq!(
        value_of(&scrape, "fleetcast_server_risk_level", &db),
        Some(3.0)
    );
    assert_eq!(
        value_of(&scrape, "fleetcast_server_open_alerts", &db),
        Some(1.0)
    );
    let p50 = [
        ("server", "ppdb001"),
        ("metric", "mem_used_pct"),
        ("quantile", "p50"),
        ("ahead", "30m"),
    ];
    assert_eq!(
        value_of(&scrape, "fleetcast_server_forecast_percent", &p50),
        Some(90.5),
        "p50 at step 6"
    );
    let p90 = [
        ("server", "ppdb001"),
        ("metric", "mem_used_pct"),
        ("quantile", "p90"),
        ("ahead", "30m"),
    ];
    assert_eq!(
        value_of(&scrape, "fleetcast_server_forecast_percent", &p90),
        Some(95.5)
    );
    let peak = [
        ("server", "ppdb001"),
        ("metric", "mem_used_pct"),
        ("quantile", "p90"),
        ("horizon", "8h"),
    ];
    let peak = value_of(&scrape, "fleetcast_server_forecast_peak_percent", &peak).unwrap();
    assert!(
        (peak - 104.5).abs() < 1e-3,
        "peak of p90 = 90 + 9.5 + 5: {peak}"
    );
    assert!(
        value_of(
            &scrape,
            "fleetcast_server_forecast_megabytes_per_second",
            &[("metric", "net_in_mb_s")]
        )
        .is_none(),
        "only the alerting metrics are exported"
    );
    assert_eq!(
        value_of(
            &scrape,
            "fleetcast_fleet_servers_by_level",
            &[("level", "critical")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "fleetcast_fleet_open_alerts",
            &[("severity", "critical")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "fleetcast_window_keeper_received_total",
            &[("instance", "status")]
        ),
        Some(123.0)
    );
    assert_eq!(
        value_of(
            &scrape,
            "fleetcast_window_keeper_rejected_by_kind_total",
            &[("kind", "out_of_range")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value_of(&scrape, "fleetcast_fleet_warmup_percent", &[]),
        Some(100.0)
    );
    let requests = value_of(
        &scrape,
        "fleetcast_service_requests_total",
        &[("service", "fleetcast-generator"), ("endpoint", "scenario")],
    );
    assert!(requests.is_some(), "the generator's $SRV.STATS: {text}");
    let lag = value_of(
        &scrape,
        "fleetcast_jetstream_consumer_pending_messages",
        &[("consumer", "lagging")],
    );
    assert!(
        lag.is_some_and(|lag| lag >= 1.0),
        "the durable consumer's backlog: {lag:?}"
    );
    assert!(
        value_of(
            &scrape,
            "fleetcast_gateway_messages_total",
            &[("kind", "risk")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    let _ = get_json(&gateway, "/api/v1/servers").await;
    let text = metrics_text(&gateway).await;
    let scrape = Scrape::parse(&text).unwrap();
    assert_eq!(
        value_of(
            &scrape,
            "fleetcast_gateway_http_requests_total",
            &[("route", "/api/v1/servers"), ("status", "200")]
        ),
        Some(1.0)
    );
}

/// A Prometheus server process on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let binary = std::env::var_os("FLEETCAST_PROMETHEUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/prometheus".into());
        assert!(
            binary.is_file(),
            "this test needs Prometheus at {} (Debian package `prometheus`; run scripts/bootstrap, or set FLEETCAST_PROMETHEUS)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: fleetcast\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes `/metrics` and answers a query on a fleetcast series with the
/// value the gateway holds.
#[actix::test]
async fn prometheus_scrapes_the_gateway() {
    let nats = TestNats::start();
    let (_bus, gateway) = scene(&nats).await;
    let mut prometheus = Prometheus::start(gateway.local_addr);
    let base = format!("http://127.0.0.1:{}", prometheus.port);
    let query = "fleetcast_server_risk_score%7Bserver%3D%22ppdb001%22%7D";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let value = loop {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            panic!("prometheus exited with {status}: {}", prometheus.log());
        }
        let answer = async {
            let mut response = client()
                .get(format!("{base}/api/v1/query?query={query}"))
                .send()
                .await
                .ok()?;
            let body: Value = response.json().limit(1 << 20).await.ok()?;
            let result = body["data"]["result"].as_array()?.first()?.clone();
            result["value"][1].as_str().map(str::to_string)
        }
        .await;
        if let Some(value) = answer {
            break value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus never had the series: {}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(value, "75");
    let mut response = client()
        .get(format!("{base}/api/v1/targets"))
        .send()
        .await
        .unwrap();
    let targets: Value = response.json().limit(1 << 20).await.unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "");
}
