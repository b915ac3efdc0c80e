//! Scraper benchmark: how many node_exporter targets one core scrapes, parses, derives and
//! publishes, side by side with fetching the same pages and doing nothing with them.
//!
//! A local HTTP server (actix-web, a thread of its own) serves the recorded node_exporter pages
//! (`tests/fixtures/node_exporter/vm-1.prom` for each target's first scrape, `vm-2.prom` after,
//! ~58 kB each). `FLEETCAST_BENCH_TARGETS` (1,000) targets, each with its own `server` label in
//! a `file_sd` file, are scraped for `FLEETCAST_BENCH_ROUNDS` (5) rounds, one right after the
//! other (the interval is 1 s, shorter than a round), `concurrency` 64 as by default; samples
//! go to a private nats-server with acknowledgements. The scraper runs on one actix
//! (current-thread) system, so its HTTP client, parsing, derivations and NATS client share one
//! core; that thread's CPU time is measured. The baseline, in the same run, is the same fetches
//! with the same client and concurrency on one thread (the scraper stopped), pages dropped
//! unread.
//!
//! The target: 1,000 targets every 15 s on one core, i.e. a round of 1,000 in at most 15
//! CPU-seconds of that thread.
//!
//! `cargo bench --bench scrape`.

use actix_web::{App, HttpResponse, HttpServer, web};
use fleetcast::actors::node_exporter::{self, http_client};
use fleetcast::actors::stage::Stop;
use fleetcast::bus::{Bus, NatsServer, find_server_binary};
use fleetcast::settings::Settings;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, {model}, load average {}",
        load.split_whitespace().next().unwrap_or("?")
    )
}

/// Serves the recorded pages on a free loopback port from a thread of its own: the first
/// `targets` requests get the first page, the rest the second. Returns `host:port`.
fn serve_pages(targets: usize) -> String {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node_exporter");
    let first: Arc<str> = std::fs::read_to_string(root.join("vm-1.prom"))
        .unwrap()
        .into();
    let second: Arc<str> = std::fs::read_to_string(root.join("vm-2.prom"))
        .unwrap()
        .into();
    let hits = Arc::new(AtomicUsize::new(0));
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let (first, second, hits) = (first.clone(), second.clone(), hits.clone());
                App::new().route(
                    "/metrics",
                    web::get().to(move || {
                        let page = if hits.fetch_add(1, Ordering::Relaxed) < targets {
                            first.clone()
                        } else {
                            second.clone()
                        };
                        async move {
                            HttpResponse::Ok()
                                .content_type("text/plain; version=0.0.4")
                                .body(page.to_string())
                        }
                    }),
                )
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .expect("bind");
            address_tx.send(server.addrs()[0].to_string()).unwrap();
            server.run().await.expect("page server");
        });
    });
    address_rx.recv().expect("page server address")
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let targets = env_or("FLEETCAST_BENCH_TARGETS", 1000);
    let rounds = env_or("FLEETCAST_BENCH_ROUNDS", 5).max(2) as u64;
    let binary = find_server_binary("").expect("the benchmark needs nats-server");
    let dir = tempfile::tempdir().expect("temporary folder");
    let nats = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
    let pages = serve_pages(targets);
    let file = dir.path().join("targets.json");
    let groups: Vec<String> = (0..targets)
        .map(|index| {
            format!(r#"{{"targets": ["{pages}"], "labels": {{"server": "node-{index:05}"}}}}"#)
        })
        .collect();
    std::fs::write(&file, format!("[{}]", groups.join(","))).unwrap();
    let mut settings = Settings::default();
    settings.nats.url = nats.url().to_string();
    settings.nats.embedded = false;
    settings.node_exporter.files = vec![file];
    settings.node_exporter.interval_seconds = 1;
    settings.node_exporter.timeout_seconds = 1;
    settings.node_exporter.status_interval_seconds = 3600;
    let concurrency = settings.node_exporter.concurrency;
    println!("node_exporter scrape benchmark");
    println!("machine: {}", machine());
    println!("{targets} targets, {rounds} rounds, {concurrency} in flight, pages of ~58 kB");
    actix::System::new().block_on(async move {
        let bus = Bus::connect(&settings.nats).await.expect("connect");
        bus.ensure_streams().await.expect("streams");
        let cpu_before = thread_cpu_seconds();
        let started = Instant::now();
        let scraper = node_exporter::spawn(&settings, bus).await.expect("scraper");
        let mut round_walls = Vec::new();
        let mut last = Instant::now();
        let mut seen = 0;
        loop {
            let rounds_now = scraper.counters.snapshot().extra("rounds");
            if rounds_now > seen {
                seen = rounds_now;
                round_walls.push(last.elapsed().as_secs_f64());
                last = Instant::now();
            }
            if seen >= rounds {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let scrape_cpu = thread_cpu_seconds() - cpu_before;
        let scrape_wall = started.elapsed().as_secs_f64();
        let counters = scraper.counters.snapshot();
        scraper.send(Stop).await.unwrap();
        // Baseline: the same fetches with the scraper stopped, pages dropped.
        let client = http_client(Duration::from_secs(5), concurrency);
        let url = format!("http://{pages}/metrics");
        let cpu_before = thread_cpu_seconds();
        let started = Instant::now();
        let fetched: usize = futures::stream::iter(0..targets * rounds as usize)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let mut response = client.get(url).send().await.expect("fetch");
                    response.body().limit(1 << 24).await.expect("body").len()
                }
            })
            .buffer_unordered(concurrency)
            .fold(0, |sum, len| async move { sum + len.min(1) })
            .await;
        let fetch_cpu = thread_cpu_seconds() - cpu_before;
        let fetch_wall = started.elapsed().as_secs_f64();
        drop(client);

        assert_eq!(counters.extra("failed"), 0, "{counters:?}");
        assert!(counters.accepted >= targets as u64 * rounds, "{counters:?}");
        let scrapes = counters.accepted as f64;
        let per_cpu = scrapes / scrape_cpu.max(1e-9);
        println!();
        println!("| path | scrapes/s (wall) | scrapes per CPU-second of the thread | CPU-seconds for {targets} targets |");
        println!("|---|---:|---:|---:|");
        println!(
            "| fetch only (same client, pages dropped) | {:.0} | {:.0} | {:.2} |",
            fetched as f64 / fetch_wall,
            fetched as f64 / fetch_cpu.max(1e-9),
            targets as f64 * fetch_cpu / fetched as f64
        );
        println!(
            "| scraper: fetch, parse, derive, publish with acks | {:.0} | {per_cpu:.0} | {:.2} |",
            scrapes / scrape_wall,
            targets as f64 / per_cpu
        );
        println!(
            "round wall seconds: {}; samples {}, published {}, errors {}; scraper/fetch CPU cost {:.1}x",
            round_walls
                .iter()
                .map(|seconds| format!("{seconds:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            counters.extra("samples"),
            counters.published,
            counters.publish_errors,
            (scrape_cpu / scrapes) / (fetch_cpu / fetched as f64).max(1e-12)
        );
        println!(
            "capacity at a 15 s interval on one core: {:.0} targets (target: 1,000)",
            per_cpu * 15.0
        );
        drop(nats);
    });
}
