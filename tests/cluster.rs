//! The pipeline under faults (issue 12, item 3): a node of a three-node cluster killed with
//! SIGKILL mid-stream and restarted, and every actor run as its own `fleetcast run` process
//! and killed once mid-stream. Both end with the same assertions, on what the streams hold
//! once the pipeline has handled everything (the generator stopped, nothing pending):
//!
//! - **no forecast stored twice** (one per server and origin), every server's newest closed
//!   step forecast; the steps from the first live ones without a forecast are counted, not
//!   refused: the PREDICT_JOBS work queue keeps the newest two jobs per server and drops
//!   older ones the predictor had not taken (while it lags or is down), and a restarted
//!   window keeper publishes no jobs for the steps it replays (README "Not built yet");
//! - **nothing a stage published was lost** (the cluster test, whose stages run in
//!   process: every `publish_errors` is 0 across the failover);
//! - **no lost or doubled alert event**: the ALERTS stream holds exactly the events an
//!   [`AlertBook`] computes from the RISK and FORECASTS streams in stream order (what the
//!   alert router read), each once. (The read-backs ask each stream's leader for its newest
//!   message and read on until they have it: an ordered consumer may sit on a replica still
//!   catching up, which once made this differ by an event or two after a failover.)
//!
//! The streams keep every forecast and risk score of the run (`nats.forecast_history`,
//! `nats.risk_history` raised), so the replay sees what the router saw.

use crate::durable::{key, stored};
use crate::e2e::{STEP_S, live_step_s, pipeline_settings};
use crate::util::cluster::{TestCluster, every_stream};
use crate::util::{TestNats, answers, ask, repo_file};
use async_nats::jetstream::consumer::pull;
use fleetcast::actors::alert_router::book::{AlertBook, BookConfig};
use fleetcast::actors::predictor;
use fleetcast::actors::stage::Drain;
use fleetcast::bus::Bus;
use fleetcast::pipeline::{self, ActorKind};
use fleetcast::settings::{BusRole, BusTls, Settings};
use fleetcast::sim::Scenario;
use fleetcast::subjects::StreamKind;
use fleetcast::wire::{self, AlertEvent, Forecast, MetricSample, RiskScore};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Servers in the simulated fleet.
const SERVERS: usize = 6;

/// Streams that keep the whole run: every forecast and risk score per server.
fn keep_everything(settings: &mut Settings) {
    settings.nats.forecast_history = 1000;
    settings.nats.risk_history = 10_000;
}

/// The newest forecast origin seen on a core subscription: how the tests wait for the
/// pipeline to move on (a wait on messages, never on a clock).
struct Progress {
    bus: Bus,
    forecasts: async_nats::Subscriber,
    newest_s: i64,
}

impl Progress {
    async fn new(bus: &Bus) -> Progress {
        let forecasts = bus
            .client()
            .subscribe(bus.subjects().forecasts_all())
            .await
            .expect("subscribe to forecasts");
        fleetcast::bus::round_trip(bus.client())
            .await
            .expect("the subscription is in place");
        Progress {
            bus: bus.clone(),
            forecasts,
            newest_s: i64::MIN,
        }
    }

    /// Waits until a forecast from `origin_s` or later arrives, at most `timeout`.
    async fn reach(&mut self, origin_s: i64, timeout: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.newest_s < origin_s {
            match tokio::time::timeout_at(deadline, self.forecasts.next()).await {
                Ok(Some(message)) => {
                    let forecast: Forecast = wire::decode(&message.payload).expect("a forecast");
                    self.newest_s = self.newest_s.max(forecast.origin_s);
                }
                _ => panic!(
                    "{what}: no forecast from {origin_s} within {timeout:?} (newest {})\n{}",
                    self.newest_s,
                    where_stuck(&self.bus).await
                ),
            }
        }
    }

    /// Waits for forecasts `steps` steps newer than the newest seen.
    async fn advance(&mut self, steps: i64, what: &str) {
        let target = self.newest_s + steps * STEP_S;
        self.reach(target, Duration::from_secs(60), what).await;
    }
}

/// What the streams and the stages' durable consumers hold, for a failure message: where
/// the pipeline stopped moving.
async fn where_stuck(bus: &Bus) -> String {
    let mut report = String::new();
    for kind in StreamKind::ALL {
        let name = bus.subjects().stream_name(kind);
        let Ok(mut stream) = bus.jetstream().get_stream(&name).await else {
            report += &format!("{name}: no answer\n");
            continue;
        };
        match stream.info().await {
            Ok(info) => {
                report += &format!(
                    "{name}: last {} cluster {:?}\n",
                    info.state.last_sequence, info.cluster
                )
            }
            Err(error) => report += &format!("{name}: {error}\n"),
        }
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = consumers.next().await {
            report += &format!(
                "  {}: pending {} unacknowledged {} delivered {} leader {:?}\n",
                info.name,
                info.num_pending,
                info.num_ack_pending,
                info.delivered.stream_sequence,
                info.cluster.and_then(|cluster| cluster.leader)
            );
        }
    }
    report
}

/// Whether every replica of every stream has stored all its leader has (trivially so on a
/// single server): an ordered consumer, such as the window keeper's, may read from any
/// replica, and one still catching up after a restart reports nothing pending too soon.
async fn replicas_caught_up(bus: &Bus) -> bool {
    every_stream(bus, |info| {
        info.cluster.as_ref().is_none_or(|cluster| {
            cluster
                .replicas
                .iter()
                .all(|replica| replica.current && replica.lag.unwrap_or(0) == 0)
        })
    })
    .await
}

/// The METRICS stream.
async fn metrics_stream(bus: &Bus) -> async_nats::jetstream::stream::Stream {
    bus.jetstream()
        .get_stream(bus.subjects().stream_name(StreamKind::Metrics))
        .await
        .expect("metrics stream")
}

/// The newest sample in the METRICS stream, simulated unix seconds.
async fn newest_sample_s(bus: &Bus) -> i64 {
    let stream = metrics_stream(bus).await;
    let last = stream
        .get_info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let message = stream.get_raw_message(last).await.expect("the last sample");
    wire::decode::<MetricSample>(&message.payload)
        .expect("a sample")
        .ts_ms
        / 1000
}

/// Whether every input has been handled: every replica caught up, no predict job waiting,
/// the predictor's and the risk scorer's and alert router's durable consumers with nothing
/// pending or unacknowledged, and the window keeper (asked through `$SRV.STATS` on `stats`)
/// with no lag.
async fn idle(bus: &Bus, stats: &Bus) -> bool {
    if !replicas_caught_up(bus).await {
        return false;
    }
    let subjects = bus.subjects();
    let consumers = [
        (StreamKind::PredictJobs, predictor::CONSUMER.to_string()),
        (
            StreamKind::Metrics,
            subjects.durable_consumer("risk_scorer", StreamKind::Metrics),
        ),
        (
            StreamKind::Forecasts,
            subjects.durable_consumer("risk_scorer", StreamKind::Forecasts),
        ),
        (
            StreamKind::Risk,
            subjects.durable_consumer("alert_router", StreamKind::Risk),
        ),
        (
            StreamKind::Forecasts,
            subjects.durable_consumer("alert_router", StreamKind::Forecasts),
        ),
    ];
    for (kind, name) in consumers {
        let Ok(stream) = bus.jetstream().get_stream(subjects.stream_name(kind)).await else {
            return false;
        };
        let Ok(mut consumer) = stream.get_consumer::<pull::Config>(&name).await else {
            return false;
        };
        let Ok(info) = consumer.info().await else {
            return false;
        };
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return false;
        }
    }
    let answers = ask(stats, "$SRV.STATS.fleetcast-window-keeper", 1).await;
    answers.first().is_some_and(|answer| {
        answer["endpoints"][0]["data"]["counters"]["consumer_lag"].as_u64() == Some(0)
    })
}

/// The last sequence of every stream downstream of the samples.
async fn last_sequences(bus: &Bus) -> Vec<u64> {
    let mut sequences = Vec::new();
    for kind in [
        StreamKind::PredictJobs,
        StreamKind::Forecasts,
        StreamKind::Risk,
        StreamKind::Alerts,
    ] {
        let stream = bus
            .jetstream()
            .get_stream(bus.subjects().stream_name(kind))
            .await
            .expect("stream");
        sequences.push(stream.get_info().await.expect("info").state.last_sequence);
    }
    sequences
}

/// Waits (the generator stopped) until the pipeline has handled everything: [`idle`] on two
/// looks in a row with no stream grown in between. At most 60 s.
async fn settle(bus: &Bus, stats: &Bus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut before = None;
    loop {
        let sequences = last_sequences(bus).await;
        if idle(bus, stats).await {
            if before.as_ref() == Some(&sequences) {
                return;
            }
            before = Some(sequences);
        } else {
            before = None;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipeline did not settle within 60 s"
        );
        // A look costs a few requests; the next one comes when they are answered plus this.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the forecast check found.
#[derive(Debug)]
struct ForecastCheck {
    /// Server-steps from the first checked one to the newest with a forecast.
    covered: usize,
    /// Server-steps without one: jobs the PREDICT_JOBS work queue dropped for newer ones of
    /// the same server (it keeps two per server) while the predictor lagged or was down, or
    /// steps that closed while the window keeper was down (its replay publishes no jobs).
    superseded: usize,
}

/// The step a server's newest job is for: its last sample opened a step and closed the ones
/// before it (the last one a gap when the simulation skipped a step), so the newest forecast
/// is of the step before the last sample's. Asked of the METRICS stream's leader.
async fn newest_closed_step_s(bus: &Bus, server: &str) -> i64 {
    let stream = metrics_stream(bus).await;
    let last = stream
        .get_last_raw_message_by_subject(&bus.subjects().metrics(server))
        .await
        .expect("the server's last sample");
    let sample_s = wire::decode::<MetricSample>(&last.payload)
        .expect("a sample")
        .ts_ms
        / 1000;
    sample_s - sample_s.rem_euclid(STEP_S) - STEP_S
}

/// The FORECASTS stream holds each forecast once (server, origin), every server has one,
/// and every server's newest closed step is forecast (nothing left behind once the pipeline
/// settled; a server whose simulated sample of the last step is missing closed one step
/// less). Counts the steps from `from_s` on that have none.
async fn check_forecasts(bus: &Bus, from_s: i64) -> ForecastCheck {
    let forecasts: Vec<Forecast> =
        stored(bus, StreamKind::Forecasts, bus.subjects().forecasts_all()).await;
    let mut origins: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for forecast in &forecasts {
        origins
            .entry(forecast.server.clone())
            .or_default()
            .insert(forecast.origin_s);
    }
    let unique: usize = origins.values().map(BTreeSet::len).sum();
    assert_eq!(unique, forecasts.len(), "a forecast stored twice");
    assert_eq!(origins.len(), SERVERS, "every server forecast");
    let newest = forecasts
        .iter()
        .map(|f| f.origin_s)
        .max()
        .expect("forecasts");
    assert!(
        newest >= from_s + 8 * STEP_S,
        "the run went on: newest {newest}"
    );
    let mut behind = Vec::new();
    for (server, have) in &origins {
        let closed_s = newest_closed_step_s(bus, server).await;
        if have.last() != Some(&closed_s) {
            behind.push((server.clone(), closed_s, have.last().copied()));
        }
    }
    assert!(
        behind.is_empty(),
        "servers whose newest closed step has no forecast (server, step, newest forecast): {behind:?}"
    );
    let mut check = ForecastCheck {
        covered: 0,
        superseded: 0,
    };
    for have in origins.values() {
        let newest = *have.last().expect("a forecast");
        for step_s in (from_s..=newest).step_by(STEP_S as usize) {
            if have.contains(&step_s) {
                check.covered += 1;
            } else {
                check.superseded += 1;
            }
        }
    }
    check
}

/// How the ALERTS stream compares with an alert book's replay of RISK and FORECASTS.
struct AlertCheck {
    /// Events in ALERTS (none doubled: asserted).
    routed: usize,
    /// Events the book computes that ALERTS lacks.
    missing: usize,
    /// Events in ALERTS the book does not compute.
    extra: usize,
}

/// The ALERTS stream holds each event once, and (when `exact`) exactly the events an alert
/// book computes from the RISK and FORECASTS streams.
async fn check_alerts(bus: &Bus, settings: &Settings, exact: bool) -> AlertCheck {
    let subjects = bus.subjects();
    let scores: Vec<RiskScore> = stored(bus, StreamKind::Risk, subjects.risk_all()).await;
    let forecasts: Vec<Forecast> =
        stored(bus, StreamKind::Forecasts, subjects.forecasts_all()).await;
    let mut book = AlertBook::new(BookConfig::from_settings(&settings.alerts));
    let mut expected = BTreeSet::new();
    for score in &scores {
        if let Ok(Some(event)) = book.on_risk(score) {
            expected.insert(key(&event));
        }
    }
    for forecast in &forecasts {
        if let Ok(events) = book.on_forecast(forecast) {
            expected.extend(events.iter().map(key));
        }
    }
    let routed: Vec<AlertEvent> = stored(bus, StreamKind::Alerts, subjects.alerts_all()).await;
    let unique: BTreeSet<_> = routed.iter().map(key).collect();
    assert_eq!(unique.len(), routed.len(), "an alert event doubled");
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        !exact || (missing.is_empty() && extra.is_empty()),
        "alert events lost: {missing:#?}\nnot computed by the book: {extra:#?}"
    );
    assert!(!routed.is_empty(), "the critical fleet raised alerts");
    AlertCheck {
        routed: routed.len(),
        missing: missing.len(),
        extra: extra.len(),
    }
}

/// The cluster speaks only TLS, to its clients and between its nodes: the admin, checking
/// the nodes against the cluster's own CA, creates the streams with three replicas each
/// (which needs the three nodes routed to one another, over TLS with certificates checked
/// both ways), and a client that does not know that CA is refused.
#[tokio::test]
async fn a_cluster_speaks_only_tls() {
    let cluster = TestCluster::start();
    let admin = cluster.bus().await;
    assert!(
        every_stream(&admin, |info| {
            info.config.num_replicas == 3
                && info
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| cluster.replicas.len() == 2)
        })
        .await,
        "every stream has a leader and two replicas"
    );
    let mut stranger = cluster.settings.nats.clone();
    stranger.tls = BusTls::default();
    let error = fleetcast::bus::connect_client(&stranger, "stranger", BusRole::Client)
        .await
        .expect_err("a client without the cluster's CA is refused");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "refused for its certificate check: {error:?}"
    );
}

/// A three-node cluster (the repository's node configs) with R3 streams runs the pipeline,
/// every actor on its own user and given all three nodes; the node leading the FORECASTS
/// stream is killed with SIGKILL mid-stream, the pipeline goes on over the other two, and
/// the node is restarted: no forecast lost or stored twice, and the ALERTS stream holds
/// exactly the events of an alert book, none doubled. Every connection is TLS (the configs
/// require it) with the cluster's own CA.
#[actix::test]
async fn a_cluster_node_killed_mid_stream_loses_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let mut cluster = TestCluster::start();
    keep_everything(&mut cluster.settings);
    let admin = cluster.bus().await;
    let leader = admin
        .jetstream()
        .get_stream(admin.subjects().stream_name(StreamKind::Forecasts))
        .await
        .expect("forecasts stream")
        .get_info()
        .await
        .expect("stream info")
        .cluster
        .and_then(|cluster| cluster.leader)
        .expect("the stream has a leader");
    let victim = cluster.node_named(&leader);
    // The test watches through a node that stays up, so its own subscriptions miss nothing.
    let mut watching = cluster.settings.nats.clone();
    watching.url = cluster.url((victim + 1) % 3);
    let client = Bus::connect_as(&watching, BusRole::Client)
        .await
        .expect("the client user connects");
    let settings = pipeline_settings(&cluster.settings, SERVERS as u32, Scenario::Critical, 1000);
    let mut progress = Progress::new(&client).await;
    let stages = [
        ActorKind::WindowKeeper,
        ActorKind::Predictor,
        ActorKind::RiskScorer,
        ActorKind::AlertRouter,
    ];
    let running = pipeline::start(&settings, &admin, &stages)
        .await
        .expect("the stages start");
    let generator = pipeline::start(&settings, &admin, &[ActorKind::Generator])
        .await
        .expect("the generator starts");
    let generator = generator.generator.expect("a generator");
    progress
        .reach(live_step_s(3), Duration::from_secs(120), "live")
        .await;

    cluster.kill(victim);
    progress.advance(4, "with a node down").await;
    cluster.restart(victim);
    progress.advance(4, "with the node back").await;

    generator.send(Drain).await.expect("the generator drains");
    settle(&admin, &client).await;
    let mut counters = vec![("generator", generator.counters.snapshot())];
    counters.extend(
        running
            .predictors
            .iter()
            .map(|p| ("predictor", p.counters.snapshot())),
    );
    for (stage, handle_counters) in [
        (
            "window_keeper",
            running
                .window_keeper
                .as_ref()
                .map(|h| h.counters.snapshot()),
        ),
        (
            "risk_scorer",
            running.risk_scorer.as_ref().map(|h| h.counters.snapshot()),
        ),
        (
            "alert_router",
            running.alert_router.as_ref().map(|h| h.counters.snapshot()),
        ),
    ] {
        counters.push((stage, handle_counters.expect("the stage runs")));
    }
    for (stage, counters) in &counters {
        assert_eq!(
            (counters.publish_errors, counters.rejected),
            (0, 0),
            "{stage} lost nothing it published: {counters:?}"
        );
    }
    let forecasts = check_forecasts(&admin, live_step_s(0)).await;
    let alerts = check_alerts(&admin, &settings, true).await;
    eprintln!(
        "cluster: {forecasts:?}; alert events {} routed, {} missing, {} not computed by the book",
        alerts.routed, alerts.missing, alerts.extra
    );
    running.drain(Duration::from_secs(6)).await;
}

/// One `fleetcast run <actor>` child process, its log in a file; killed on drop.
struct Actor {
    name: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Actor {
    fn start(name: &'static str, env: &[(String, String)], dir: &std::path::Path) -> Actor {
        let mut actor = Actor {
            name,
            env: env.to_vec(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        actor.spawn();
        actor
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fleetcast"))
            .args(["run", self.name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the fleetcast binary starts");
        self.child = Some(child);
    }

    /// SIGKILL, then the same command again.
    fn kill_and_restart(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        self.spawn();
    }

    /// SIGTERM (a drain) and waits for the exit, at most 10 s.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not drain",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The micro service name it answers `$SRV.PING` under.
    fn service(&self) -> String {
        format!("fleetcast-{}", self.name)
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- {} (last lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Waits until `actor` answers `$SRV.PING` (a restarted window keeper does once its replay
/// is done), at most 60 s.
async fn wait_answering(bus: &Bus, actor: &Actor) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !answers(bus, &actor.service()).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} does not answer after 60 s",
            actor.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every actor runs as its own `fleetcast run` process (one nats-server) and each is killed
/// once with SIGKILL mid-stream and started again, in pipeline order: no forecast lost
/// outside the window keeper's and the predictor's own down time, none stored twice, and
/// the ALERTS stream holds exactly the events of an alert book, none lost or doubled.
#[actix::test]
async fn every_actor_killed_once_loses_nothing() {
    let nats = TestNats::start();
    let mut settings = nats.settings.clone();
    keep_everything(&mut settings);
    let bus = Bus::connect(&settings.nats).await.expect("connect");
    bus.ensure_streams().await.expect("streams");
    let dir = tempfile::tempdir().expect("temporary folder");
    let env: Vec<(String, String)> = [
        ("FLEETCAST_NATS__URL", settings.nats.url.clone()),
        ("FLEETCAST_NATS__EMBEDDED", "false".into()),
        ("FLEETCAST_NATS__FORECAST_HISTORY", "1000".into()),
        ("FLEETCAST_NATS__RISK_HISTORY", "10000".into()),
        ("FLEETCAST_NATS__ACK_WAIT_SECONDS", "2".into()),
        ("FLEETCAST_GENERATOR__SERVERS", SERVERS.to_string()),
        ("FLEETCAST_GENERATOR__SEED", "7".into()),
        ("FLEETCAST_GENERATOR__SCENARIO", "critical".into()),
        ("FLEETCAST_GENERATOR__BACKFILL_HOURS", "25".into()),
        ("FLEETCAST_GENERATOR__STEP_INTERVAL_MS", "1000".into()),
        (
            "FLEETCAST_PREDICTOR__MODEL_DIR",
            repo_file("models/tft-v3").display().to_string(),
        ),
        ("FLEETCAST_PREDICTOR__INTRA_THREADS", "1".into()),
        ("FLEETCAST_PREDICTOR__WORKERS", "1".into()),
        ("FLEETCAST_PREDICTOR__ACK_WAIT_SECONDS", "2".into()),
        ("FLEETCAST_WINDOW_KEEPER__REBUILD_ON_START", "true".into()),
        ("FLEETCAST_LOG__LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    // The generator's clock starts 25 h before now (no fixed start: a restarted generator
    // resumes after the newest sample in the stream); live steps begin about now.
    let now_s = wire::now_ms() / 1000;
    let live_s = now_s - now_s.rem_euclid(STEP_S) + 3 * STEP_S;

    let mut progress = Progress::new(&bus).await;
    let mut actors = Vec::new();
    for name in [
        "alert-router",
        "risk-scorer",
        "predictor",
        "window-keeper",
        "generator",
    ] {
        let actor = Actor::start(name, &env, dir.path());
        wait_answering(&bus, &actor).await;
        actors.push(actor);
    }
    actors.reverse();
    progress
        .reach(live_s, Duration::from_secs(120), "live")
        .await;

    for actor in &mut actors {
        progress.advance(3, actor.name).await;
        let killed_s = newest_sample_s(&bus).await;
        actor.kill_and_restart();
        wait_answering(&bus, actor).await;
        let back_s = newest_sample_s(&bus).await;
        eprintln!(
            "chaos: {} killed at simulated {killed_s}, back at {back_s} ({} steps)",
            actor.name,
            (back_s - killed_s) / STEP_S
        );
    }
    progress.advance(4, "after the last restart").await;

    actors[0].stop();
    settle(&bus, &bus).await;
    let forecasts = check_forecasts(&bus, live_s).await;
    let alerts = check_alerts(&bus, &settings, true).await;
    eprintln!(
        "chaos: {forecasts:?}; alert events {} routed, {} missing, {} not computed by the book",
        alerts.routed, alerts.missing, alerts.extra
    );
}
