//! Remote-write benchmark: Prometheus remote-write samples per second accepted and stored by
//! the receiver, side by side with the plain stream publish rate of the same bus.
//!
//! The requests are the bodies a real Prometheus 2.42 sent while scraping this machine's
//! node_exporter (`tests/fixtures/remote_write/*.bin`: 6 scrapes of ~1,080 series, 2 bodies
//! each), replayed for `FLEETCAST_BENCH_INSTANCES` instances (200; the `instance` label
//! rewritten to `node-NNNN:9100`) and `FLEETCAST_BENCH_BLOCKS` repetitions (5; timestamps moved
//! on each time), all encoded and compressed before the clock starts. A client thread posts
//! them with `FLEETCAST_BENCH_SENDERS` (8) requests in flight, as Prometheus's shards do; the
//! rate counts the remote-write samples of requests answered 204, i.e. decoded, mapped and
//! every derived `MetricSample` acknowledged by the `METRICS` stream. The receiver runs with its
//! default two HTTP workers; nats-server is a separate process on the same two cores.
//!
//! The baseline, in the same run: one task publishing `MetricSample`s (12 metrics, like the
//! derived ones) into the same stream with 1,024 acknowledgements outstanding, the way the
//! receiver and the generator publish.
//!
//! `cargo bench --bench remote_write`.

use bytes::Bytes;
use fleetcast::actors::remote_write::{self, GetAddress, proto};
use fleetcast::bus::{Bus, NatsServer, StreamPublisher, find_server_binary};
use fleetcast::settings::Settings;
use fleetcast::wire::{self, MetricSample, SCHEMA_VERSION};
use futures::StreamExt;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process, or of the calling thread.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
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

/// The recorded requests, decoded, in arrival order.
fn recorded() -> Vec<proto::WriteRequest> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/remote_write");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("recorded bodies")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| proto::decode_body(&std::fs::read(path).unwrap(), 64 << 20).unwrap())
        .collect()
}

/// Every request of the run: (remote-write samples in it, compressed body).
fn requests(instances: usize, blocks: usize) -> Vec<(usize, Bytes)> {
    let templates = recorded();
    let timestamps = || {
        templates
            .iter()
            .flat_map(|r| &r.timeseries)
            .flat_map(|s| &s.samples)
    };
    let first = timestamps().map(|sample| sample.timestamp).min().unwrap();
    let last = timestamps().map(|sample| sample.timestamp).max().unwrap();
    let block_ms = last - first + 2_000;
    let mut requests = Vec::new();
    for block in 0..blocks {
        for template in &templates {
            for instance in 0..instances {
                let mut request = template.clone();
                let name = Bytes::from(format!("node-{instance:04}:9100"));
                for series in &mut request.timeseries {
                    for label in &mut series.labels {
                        if label.name == "instance" {
                            label.value = name.clone();
                        }
                    }
                    for sample in &mut series.samples {
                        sample.timestamp += block as i64 * block_ms;
                    }
                }
                let samples = request.timeseries.iter().map(|s| s.samples.len()).sum();
                requests.push((samples, Bytes::from(proto::encode_body(&request))));
            }
        }
    }
    requests
}

/// Posts every request with `senders` in flight from a thread of its own; returns the wall
/// seconds, the samples of requests answered 204, the other answers, and the thread's CPU.
fn post_all(
    url: String,
    requests: Vec<(usize, Bytes)>,
    senders: usize,
) -> (f64, usize, usize, f64) {
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish();
            let cpu_before = cpu_seconds("/proc/thread-self/stat");
            let started = Instant::now();
            let answers: Vec<(usize, u16)> = futures::stream::iter(requests)
                .map(|(samples, body)| {
                    let client = client.clone();
                    let url = url.clone();
                    async move {
                        let response = client
                            .post(url)
                            .insert_header(("Content-Encoding", "snappy"))
                            .insert_header(("Content-Type", "application/x-protobuf"))
                            .send_body(body)
                            .await
                            .expect("the receiver answers");
                        (samples, response.status().as_u16())
                    }
                })
                .buffered(senders)
                .collect()
                .await;
            let seconds = started.elapsed().as_secs_f64();
            let accepted = answers
                .iter()
                .filter(|(_, status)| *status == 204)
                .map(|(samples, _)| samples)
                .sum();
            let refused = answers.iter().filter(|(_, status)| *status != 204).count();
            (
                seconds,
                accepted,
                refused,
                cpu_seconds("/proc/thread-self/stat") - cpu_before,
            )
        })
    })
    .join()
    .expect("client thread")
}

/// The baseline: `count` 12-metric samples published into the `METRICS` stream with a window
/// of acknowledgements; samples per second.
async fn plain_stream_rate(bus: &Bus, count: usize) -> f64 {
    let payloads: Vec<(String, Bytes)> = (0..count)
        .map(|index| {
            let server = format!("plain-{:04}", index % 1000);
            let sample = MetricSample {
                v: SCHEMA_VERSION,
                server: server.clone(),
                ts_ms: 1_700_000_000_000 + index as i64,
                profile: None,
                metrics: [
                    "cpu_user_pct",
                    "cpu_sys_pct",
                    "cpu_iowait_pct",
                    "cpu_idle_pct",
                    "mem_used_pct",
                    "swap_used_pct",
                    "disk_usage_pct",
                    "net_in_mb_s",
                    "net_out_mb_s",
                    "front_close_wait",
                    "load_average",
                    "uptime_days",
                ]
                .into_iter()
                .map(|name| (name.to_string(), 12.5))
                .collect(),
            };
            (
                bus.subjects().metrics(&server),
                Bytes::from(wire::encode(&sample)),
            )
        })
        .collect();
    let mut publisher =
        StreamPublisher::new(bus.client().clone(), fleetcast::bus::STREAM_PUBLISH_WINDOW);
    let started = Instant::now();
    let mut unstored = 0;
    for (subject, payload) in payloads {
        unstored += publisher.publish(subject, payload).await.expect("publish");
    }
    unstored += publisher.flush().await;
    assert_eq!(unstored, 0);
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let instances = env_or("FLEETCAST_BENCH_INSTANCES", 200);
    let blocks = env_or("FLEETCAST_BENCH_BLOCKS", 5);
    let senders = env_or("FLEETCAST_BENCH_SENDERS", 8);
    let binary = find_server_binary("").expect("the benchmark needs nats-server");
    let dir = tempfile::tempdir().expect("temporary folder");
    let server = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
    let mut settings = Settings::default();
    settings.nats.url = server.url().to_string();
    settings.nats.embedded = false;
    settings.remote_write.listen = "127.0.0.1:0".parse().expect("an address");
    let requests = requests(instances, blocks);
    let total_samples: usize = requests.iter().map(|(samples, _)| samples).sum();
    let bytes: usize = requests.iter().map(|(_, body)| body.len()).sum();
    println!("remote-write benchmark");
    println!("machine: {}", machine());
    println!(
        "{} requests ({instances} instances x {blocks} blocks of the recorded 12), {total_samples} samples, {:.1} MB compressed, {senders} in flight",
        requests.len(),
        bytes as f64 / 1e6
    );
    actix::System::new().block_on(async move {
        let bus = Bus::connect(&settings.nats).await.expect("connect");
        bus.ensure_streams().await.expect("streams");
        let receiver = remote_write::spawn(&settings, bus.clone()).await.expect("receiver");
        let address = receiver.send(GetAddress).await.unwrap();
        let url = format!("http://{address}{}", settings.remote_write.path);
        let process_before = cpu_seconds("/proc/self/stat");
        let (seconds, accepted, refused, client_cpu) =
            tokio::task::spawn_blocking(move || post_all(url, requests, senders)).await.unwrap();
        let receiver_cpu = cpu_seconds("/proc/self/stat") - process_before - client_cpu;
        let counters = receiver.counters.snapshot();
        assert_eq!(refused, 0, "every request answered 204: {counters:?}");
        assert_eq!(accepted, total_samples);
        let derived = counters.extra("stored") as usize;
        let plain = plain_stream_rate(&bus, derived.max(10_000)).await;
        let accepted_rate = accepted as f64 / seconds;
        println!();
        println!("| path | rate |");
        println!("|---|---:|");
        println!(
            "| remote write: samples accepted and stored (wall clock) | {accepted_rate:.0}/s |"
        );
        println!(
            "| remote write: samples per CPU-second of the receiver (its HTTP workers, mapping, NATS client) | {:.0} |",
            accepted as f64 / receiver_cpu.max(1e-9)
        );
        println!(
            "| remote write: MetricSamples derived and stored (wall clock) | {:.0}/s ({derived} in {seconds:.2} s) |",
            derived as f64 / seconds
        );
        println!("| plain stream publish of MetricSamples, 1,024 acks outstanding | {plain:.0}/s |");
        println!(
            "| remote-write samples per stored MetricSample | {:.0} |",
            accepted as f64 / derived.max(1) as f64
        );
        drop(server);
    });
}
