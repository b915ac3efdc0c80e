//! Window-keeper ingest benchmark: samples per second through NATS into windows, side by side
//! with plain consumers that only receive the same messages from the same server (the bus's
//! own rate).
//!
//! The keeper reads the JetStream `METRICS` stream (an ordered consumer), so its baseline is a
//! plain ordered consumer on a stream of its own; a plain core subscriber (no stream at all)
//! shows what the stream itself costs.
//!
//! One run starts a private nats-server, pre-encodes `servers × steps` full samples (14
//! metrics, profile set, the `Content-Type` header, in step-major order like the generator),
//! and then, for each round, measures the three consumers the same way: from the moment a
//! separate publisher thread starts publishing to the moment the consumer has the last message
//! (received, for the plain ones; decoded, validated and aggregated into its window, for the
//! keeper). The consumers run on one actix (current-thread) system, so each uses one core for
//! its NATS client and its work; the publisher and nats-server share the other. Each round's
//! keeper samples are the next `steps` steps, so the keeper's windows are full (288 steps)
//! from the second round on. Each consumer's messages go to a subject prefix of its own, all
//! of the same length, so none sees another's. Predict jobs are off (they are per step, not
//! per sample; their cost is printed separately).
//!
//! `cargo bench --bench ingest`; sizes from `FLEETCAST_BENCH_SERVERS` (1000),
//! `FLEETCAST_BENCH_STEPS` (300) and `FLEETCAST_BENCH_ROUNDS` (3).

use async_nats::Subject;
use bytes::Bytes;
use fleetcast::actors::stage::StageHandle;
use fleetcast::actors::window_keeper::fleet::{Fleet, Verdict};
use fleetcast::actors::window_keeper::{self, GetFullWindows};
use fleetcast::bus::{self, Bus, NatsServer, StreamPublisher, find_server_binary};
use fleetcast::catalog::{Metric, Profile};
use fleetcast::samples::{IngestRules, WindowShape};
use fleetcast::settings::Settings;
use fleetcast::subjects::{StreamKind, Subjects};
use fleetcast::wire::{self, MetricSample, SCHEMA_VERSION};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP_MS: i64 = 300_000;

/// The plain core subscriber's subjects (no stream captures them): as long as the keeper's
/// `fleetcast`, so each consumer gets only its own round's messages of the same size.
const CORE_PREFIX: &str = "plaincore";

/// The plain stream consumer's subjects, captured by a `METRICS` stream of their own.
const STREAM_PREFIX: &str = "plaincast";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Pre-encoded messages of one round: every server's sample for each step, step by step.
fn messages(
    subjects: &Subjects,
    servers: &[String],
    first_step_ms: i64,
    steps: usize,
) -> Arc<Vec<(Subject, Bytes)>> {
    let mut messages = Vec::with_capacity(servers.len() * steps);
    for step in 0..steps {
        for (index, server) in servers.iter().enumerate() {
            let wave = ((step + index) % 97) as f64;
            let sample = MetricSample {
                v: SCHEMA_VERSION,
                server: server.clone(),
                ts_ms: first_step_ms + step as i64 * STEP_MS + (index as i64 % 1000),
                profile: Some(Profile::infer(server).name().to_string()),
                metrics: Metric::ALL
                    .into_iter()
                    .map(|metric| {
                        let value = match metric {
                            Metric::UptimeDays => 12.0,
                            _ => 10.0 + wave * 0.5 + metric.index() as f64,
                        };
                        (metric.name().to_string(), value)
                    })
                    .collect(),
            };
            messages.push((
                Subject::from(subjects.metrics(server)),
                Bytes::from(wire::encode(&sample)),
            ));
        }
    }
    Arc::new(messages)
}

/// How the publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Core publishes, nothing waited for (the core subscriber's round: no stream).
    Core,
    /// JetStream publishes with [`STREAM_WINDOW`] acknowledgements outstanding, as fleetcast's
    /// own publishers do (a core burst into a stream is dropped past its ingest buffer).
    Stream,
}

/// Acknowledgements the benchmark's stream publisher keeps outstanding.
const STREAM_WINDOW: usize = 4096;

/// Publishes every message from a thread of its own; returns when publishing starts.
fn publish_in_background(
    url: String,
    messages: Arc<Vec<(Subject, Bytes)>>,
    mode: Publish,
) -> Instant {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = async_nats::connect(url).await.expect("publisher connects");
            let headers = bus::headers();
            let mut stream = StreamPublisher::new(client.clone(), STREAM_WINDOW);
            let mut unstored = 0;
            started_tx.send(Instant::now()).expect("bench waits");
            for (subject, payload) in messages.iter() {
                match mode {
                    Publish::Core => client
                        .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                        .await
                        .expect("publish"),
                    Publish::Stream => {
                        unstored += stream
                            .publish(subject.to_string(), payload.clone())
                            .await
                            .expect("publish");
                    }
                }
            }
            unstored += stream.flush().await;
            client.flush().await.expect("flush");
            assert_eq!(unstored, 0, "every message stored");
        });
    });
    started_rx.recv().expect("publisher starts")
}

/// Rate of a plain core subscriber that only counts what it receives (on [`CORE_PREFIX`]'s
/// subjects).
async fn core_round(settings: &Settings, messages: Arc<Vec<(Subject, Bytes)>>) -> Rates {
    let bus = Bus::connect(&settings.nats).await.expect("connect");
    let subscriber = bus
        .client()
        .subscribe(Subjects::new(CORE_PREFIX).metrics_all())
        .await
        .expect("subscribe");
    bus.client().flush().await.expect("flush");
    let url = settings.nats.url.clone();
    counting_round(
        url,
        messages,
        Publish::Core,
        subscriber,
        "plain core subscriber",
    )
    .await
}

/// Rate of a plain ordered consumer, opened like the keeper's, on a `METRICS` stream of
/// [`STREAM_PREFIX`]'s own: it only counts what it receives.
async fn stream_round(settings: &Settings, messages: Arc<Vec<(Subject, Bytes)>>) -> Rates {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let bus = Bus::connect(&settings.nats).await.expect("connect");
    let subjects = Subjects::new(STREAM_PREFIX);
    let mut stream = bus
        .jetstream()
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: subjects.stream_name(StreamKind::Metrics),
            subjects: vec![subjects.metrics_all()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let last_sequence = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: last_sequence + 1,
            },
            filter_subject: subjects.metrics_all(),
            ..Default::default()
        })
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("consumer messages");
    let url = settings.nats.url.clone();
    counting_round(
        url,
        messages,
        Publish::Stream,
        consumer,
        "plain stream consumer",
    )
    .await
}

/// Publishes `messages` while `consumer` only counts what arrives, until it has them all.
async fn counting_round<S: futures::Stream + Unpin>(
    url: String,
    messages: Arc<Vec<(Subject, Bytes)>>,
    mode: Publish,
    mut consumer: S,
    name: &str,
) -> Rates {
    let total = messages.len();
    let cpu_before = thread_cpu_seconds();
    let started = publish_in_background(url, messages, mode);
    let mut received = 0usize;
    // One deadline for the whole round, so the loop does nothing per message but receive.
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while received < total && consumer.next().await.is_some() {
            received += 1;
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = thread_cpu_seconds() - cpu_before;
    assert_eq!(received, total, "{name} lost messages in {seconds:.1} s");
    Rates::of(total, seconds, cpu_seconds)
}

/// Rate of the window keeper (reading its `METRICS` stream): until every sample is accepted
/// into its window.
async fn keeper_round(
    settings: &Settings,
    keeper: &StageHandle<window_keeper::WindowKeeper>,
    messages: Arc<Vec<(Subject, Bytes)>>,
) -> Rates {
    let before = keeper.counters.snapshot();
    let total = messages.len() as u64;
    let cpu_before = thread_cpu_seconds();
    let started = publish_in_background(settings.nats.url.clone(), messages, Publish::Stream);
    let mut last_progress = (Instant::now(), before.received);
    loop {
        let counters = keeper.counters.snapshot();
        if counters.received - before.received >= total {
            assert_eq!(
                counters.accepted - before.accepted,
                total,
                "every sample accepted: {counters:?}"
            );
            break;
        }
        if counters.received != last_progress.1 {
            last_progress = (Instant::now(), counters.received);
        }
        assert!(
            last_progress.0.elapsed() < Duration::from_secs(5),
            "keeper stalled (messages lost?): {counters:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Rates::of(total as usize, seconds, thread_cpu_seconds() - cpu_before)
}

/// Samples per wall-clock second, and per CPU second of the consumer's thread (its NATS
/// client and its work): the second is what one core does, however busy the machine is.
#[derive(Debug, Clone, Copy)]
struct Rates {
    wall: f64,
    cpu: f64,
}

impl Rates {
    fn of(samples: usize, seconds: f64, cpu_seconds: f64) -> Self {
        Self {
            wall: samples as f64 / seconds,
            cpu: samples as f64 / cpu_seconds.max(0.01),
        }
    }

    /// The median of each rate on its own.
    fn median(rates: &mut [Rates]) -> Rates {
        let mut wall: Vec<f64> = rates.iter().map(|rate| rate.wall).collect();
        let mut cpu: Vec<f64> = rates.iter().map(|rate| rate.cpu).collect();
        Rates {
            wall: median(&mut wall),
            cpu: median(&mut cpu),
        }
    }
}

/// CPU time of the calling thread (user + system), from `/proc/thread-self/stat` in clock
/// ticks of 10 ms: the rounds last seconds, so the resolution is well under 1 %.
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
    // After the command name: state is field 3, utime 14, stime 15.
    (ticks(11) + ticks(12)) / 100.0
}

/// The keeper's own work (decode, validate, aggregate) on already received messages, without
/// NATS: samples per second on one core.
fn keeper_work_alone(settings: &Settings, messages: &[(Subject, Bytes)]) -> f64 {
    let rules = IngestRules {
        shape: WindowShape {
            context_steps: settings.window_keeper.context_steps as usize,
            step_seconds: i64::from(settings.time.step_seconds),
        },
        max_future_ms: 600_000,
        min_observed: settings.window_keeper.min_observed_steps as usize,
    };
    let mut fleet = Fleet::new(rules);
    let prefix = settings.subjects().metrics("");
    let now_ms = wire::now_ms();
    let cpu_before = thread_cpu_seconds();
    let started = Instant::now();
    for (subject, payload) in messages {
        let server = subject.as_str().strip_prefix(&prefix).unwrap_or(subject);
        let verdict = fleet.ingest(server, payload, now_ms);
        assert!(matches!(verdict, Verdict::Accepted { .. }), "{verdict:?}");
    }
    let seconds = started.elapsed().as_secs_f64();
    Rates::of(messages.len(), seconds, thread_cpu_seconds() - cpu_before).cpu
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    format!("{cores} cores, {model}")
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let servers = env_or("FLEETCAST_BENCH_SERVERS", 1000);
    let steps = env_or("FLEETCAST_BENCH_STEPS", 300);
    let rounds = env_or("FLEETCAST_BENCH_ROUNDS", 3).max(1);
    let binary = find_server_binary("").expect("the benchmark needs nats-server");
    let dir = tempfile::tempdir().expect("temporary folder");
    let server = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
    let mut settings = Settings::default();
    settings.nats.url = server.url().to_string();
    settings.nats.embedded = false;
    settings.window_keeper.publish_jobs = false;
    settings.window_keeper.rebuild_on_start = false;
    settings.window_keeper.status_interval_seconds = 3600;

    let names: Vec<String> = (0..servers)
        .map(|index| {
            let kind = ["ppml", "ppdb", "ppweb", "ppcon", "ppetl", "pprisk", "ppgen"][index % 7];
            format!("{kind}{index:05}")
        })
        .collect();
    let t0 = (wire::now_ms() - (rounds * steps) as i64 * STEP_MS - 86_400_000) / STEP_MS * STEP_MS;
    let core_messages = messages(&Subjects::new(CORE_PREFIX), &names, t0, steps);
    let stream_messages = messages(&Subjects::new(STREAM_PREFIX), &names, t0, steps);
    let payload_bytes = core_messages[0].1.len();
    println!("window keeper ingest benchmark");
    println!("machine: {}", machine());
    println!(
        "{servers} servers x {steps} steps = {} samples per round, {payload_bytes} bytes each, {rounds} rounds",
        core_messages.len()
    );

    // Every round's messages are encoded up front, so nothing but the rounds runs meanwhile.
    let keeper_messages: Vec<_> = (0..rounds)
        .map(|round| {
            messages(
                &settings.subjects(),
                &names,
                t0 + (round * steps) as i64 * STEP_MS,
                steps,
            )
        })
        .collect();
    let alone_messages = messages(&settings.subjects(), &names, t0, steps);
    let system = actix::System::new();
    system.block_on(async move {
        let bus = Bus::connect(&settings.nats).await.expect("connect");
        let keeper = window_keeper::spawn(&settings, bus).await.expect("keeper starts");
        let (mut core, mut stream, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for (round, round_messages) in keeper_messages.into_iter().enumerate() {
            let core_rates = core_round(&settings, core_messages.clone()).await;
            let stream_rates = stream_round(&settings, stream_messages.clone()).await;
            let keeper_rates = keeper_round(&settings, &keeper, round_messages).await;
            println!(
                "round {}: core {:>7.0}/s ({:>7.0}/cpu-s)   stream {:>7.0}/s ({:>7.0}/cpu-s)   keeper {:>7.0}/s ({:>7.0}/cpu-s)   keeper/stream {:.0}%",
                round + 1,
                core_rates.wall,
                core_rates.cpu,
                stream_rates.wall,
                stream_rates.cpu,
                keeper_rates.wall,
                keeper_rates.cpu,
                100.0 * keeper_rates.wall / stream_rates.wall
            );
            core.push(core_rates);
            stream.push(stream_rates);
            kept.push(keeper_rates);
        }
        let (core, stream, kept) = (
            Rates::median(&mut core),
            Rates::median(&mut stream),
            Rates::median(&mut kept),
        );
        println!(
            "median through NATS: core subscriber {:.0} samples/s, stream consumer {:.0}, keeper {:.0}; keeper/stream {:.0}%, keeper/core {:.0}%",
            core.wall,
            stream.wall,
            kept.wall,
            100.0 * kept.wall / stream.wall,
            100.0 * kept.wall / core.wall
        );
        println!(
            "median per CPU-second of the consumer thread: core subscriber {:.0}, stream consumer {:.0}, keeper {:.0} samples; keeper/stream {:.0}%",
            core.cpu,
            stream.cpu,
            kept.cpu,
            100.0 * kept.cpu / stream.cpu
        );
        println!(
            "keeper work alone (decode + validate + aggregate, no NATS): {:.0} samples/s on one core",
            keeper_work_alone(&settings, &alone_messages)
        );
        let counters = keeper.counters.snapshot();
        println!(
            "keeper counters: received {}, accepted {}, rejected {}, consumer errors {}",
            counters.received, counters.accepted, counters.rejected, counters.extra("consumer_errors")
        );
        // What a predict job costs when jobs are on: build the full window and encode it.
        let started = Instant::now();
        let jobs = keeper
            .send(GetFullWindows {
                after: None,
                limit: servers,
            })
            .await
            .expect("keeper alive");
        let bytes: usize = jobs.iter().map(|job| wire::encode(job).len()).sum();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "predict jobs: {} full windows built and encoded in {:.3} s ({:.0} jobs/s, {} bytes each)",
            jobs.len(),
            seconds,
            jobs.len() as f64 / seconds,
            bytes / jobs.len().max(1)
        );
    });
    drop(server);
}
