//! The window keeper against a real nats-server: windows, step means, gaps, dead letters,
//! warm-up status, predict jobs, rebuild from the stream and memory with 10,000 servers.

use crate::util::{TestNats, collect};
use fleetcast::actors::stage::{Counters, StageHandle};
use fleetcast::actors::window_keeper::{
    self, GetFullWindows, GetMemory, GetWarmup, GetWindow, WindowKeeper,
};
use fleetcast::bus::{Bus, STREAM_PUBLISH_WINDOW, StreamPublisher};
use fleetcast::catalog::{METRIC_COUNT, Metric};
use fleetcast::settings::Settings;
use fleetcast::wire::{
    self, MetricSample, PredictJob, RejectKind, Rejection, SCHEMA_VERSION, StageStatus,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// One metric's series in a job (`values` is metric-major).
fn series(job: &PredictJob, metric: Metric) -> &[f32] {
    let index = job
        .metrics
        .iter()
        .position(|name| name == metric.name())
        .expect("metric in the job");
    let steps = job.steps as usize;
    &job.values[index * steps..(index + 1) * steps]
}

/// Values with NaN spelled out, so windows with unobserved steps compare with `assert_eq!`.
fn shown(values: impl IntoIterator<Item = f32>) -> Vec<String> {
    values.into_iter().map(|value| value.to_string()).collect()
}

const STEP_MS: i64 = 300_000;

/// A step boundary two days before now: old enough that no test sample is in the future.
fn t0() -> i64 {
    (wire::now_ms() - 2 * 86_400_000) / STEP_MS * STEP_MS
}

/// A sample with every metric set to `value` (uptime and percentages stay in range).
fn sample(server: &str, ts_ms: i64, value: f64) -> MetricSample {
    MetricSample {
        v: SCHEMA_VERSION,
        server: server.into(),
        ts_ms,
        profile: None,
        metrics: Metric::ALL
            .into_iter()
            .map(|metric| (metric.name().to_string(), value))
            .collect(),
    }
}

/// Settings with a window of `context_steps`, forecast once a metric fills it.
fn settings(nats: &TestNats, context_steps: u32) -> Settings {
    let mut settings = nats.settings.clone();
    settings.window_keeper.context_steps = context_steps;
    settings.window_keeper.min_observed_steps = context_steps;
    settings.window_keeper.status_interval_seconds = 1;
    settings
}

/// A subscription to every predict job, confirmed by the server.
async fn subscribe_jobs(bus: &Bus) -> async_nats::Subscriber {
    bus.client()
        .subscribe(bus.subjects().predict_jobs_all())
        .await
        .unwrap()
}

async fn publish(bus: &Bus, sample: &MetricSample) {
    bus.publish(bus.subjects().metrics(&sample.server), sample)
        .await
        .expect("publish");
}

/// Waits until the counters satisfy `done` (woken on each change; panics after 60 s, showing
/// them: generous, because the tests run in parallel on a shared 2-core machine).
async fn wait_for(
    keeper: &StageHandle<WindowKeeper>,
    done: impl Fn(&Counters) -> bool,
) -> Counters {
    keeper
        .counters
        .wait_until(done, Duration::from_secs(60))
        .await
        .unwrap_or_else(|counters| panic!("timed out; counters: {counters:?}"))
}

/// A window fills to exactly the configured length, oldest step first, and each closed step
/// of a full window yields one predict job with that window.
#[actix::test]
async fn window_fills_to_exactly_the_context_and_jobs_follow() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats, 6);
    let mut jobs = subscribe_jobs(&bus).await;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    for step in 0..10 {
        publish(&bus, &sample("ppdb001", t0 + step * STEP_MS, step as f64)).await;
    }
    wait_for(&keeper, |counters| counters.accepted == 10).await;
    let window = keeper
        .send(GetWindow {
            server: "ppdb001".into(),
        })
        .await
        .unwrap()
        .expect("window exists");
    assert_eq!((window.filled, window.capacity), (6, 6));
    assert!(window.ready);
    assert_eq!(window.values.len(), 6 * METRIC_COUNT);
    // Steps 0..=8 closed, 9 open: the window holds 3..=8.
    let firsts: Vec<f32> = window
        .values
        .chunks(METRIC_COUNT)
        .map(|step| step[0])
        .collect();
    assert_eq!(firsts, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert_eq!(window.last_step_s, Some((t0 + 8 * STEP_MS) / 1000));
    assert_eq!(window.profile, "database");
    // The window was first full when step 6 closed step 5: jobs for steps 5, 6, 7, 8.
    let messages = collect(&mut jobs, 4, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 4);
    let job: PredictJob = wire::decode(&messages[3].payload).unwrap();
    assert!(messages[3].subject.ends_with(".ppdb001"));
    assert_eq!(job.steps, 6);
    assert_eq!(job.metrics.len(), METRIC_COUNT);
    assert_eq!(series(&job, Metric::CpuUserPct), firsts.as_slice());
    assert_eq!(job.last_step_s, (t0 + 8 * STEP_MS) / 1000);
    assert_eq!(job.gap_steps, 0);
    let first: PredictJob = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(first.values[0], 0.0);
    assert_eq!(first.last_step_s, (t0 + 5 * STEP_MS) / 1000);
    let counters = keeper.counters.snapshot();
    assert_eq!(counters.extra("jobs_published"), 4);
    let batch = keeper
        .send(GetFullWindows {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(batch, vec![job]);
}

/// Samples at any rate and with any subset of metrics become one mean per metric per step;
/// a metric missing in a step is not observed there (NaN), never carried forward.
#[actix::test]
async fn steps_hold_the_mean_of_their_samples() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let keeper = window_keeper::spawn(&settings(&nats, 6), bus.clone())
        .await
        .unwrap();
    let t0 = t0();
    // Step 0: three samples of everything; step 1: two samples of load_average only.
    for (offset, value) in [(0, 10.0), (60_000, 20.0), (299_999, 60.0)] {
        publish(&bus, &sample("ppweb001", t0 + offset, value)).await;
    }
    for (offset, value) in [(1_000, 1.0), (2_000, 2.0)] {
        let mut partial = sample("ppweb001", t0 + STEP_MS + offset, value);
        partial.metrics = BTreeMap::from([("load_average".to_string(), value)]);
        publish(&bus, &partial).await;
    }
    publish(&bus, &sample("ppweb001", t0 + 2 * STEP_MS, 5.0)).await;
    wait_for(&keeper, |counters| counters.accepted == 6).await;
    let window = keeper
        .send(GetWindow {
            server: "ppweb001".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.filled, 2);
    let load = Metric::LoadAverage.index();
    let memory = Metric::MemUsedPct.index();
    assert_eq!(window.values[memory], 30.0);
    assert_eq!(window.values[load], 30.0);
    assert_eq!(window.values[METRIC_COUNT + load], 1.5);
    assert!(
        window.values[METRIC_COUNT + memory].is_nan(),
        "not measured in step 1"
    );
    assert_eq!(window.measured[0], (1 << METRIC_COUNT) - 1);
    assert_eq!(window.measured[1], 1 << load);
    assert_eq!(window.open_step_s, Some((t0 + 2 * STEP_MS) / 1000));
    let counters = keeper.counters.snapshot();
    assert_eq!(
        (counters.extra("steps_closed"), counters.extra("gap_steps")),
        (2, 0)
    );
}

/// Steps with no sample are not observed (NaN), marked as gaps and counted; a job follows once
/// a metric has `min_observed_steps` observed steps, and says how many of its steps were gaps.
#[actix::test]
async fn gaps_are_not_observed_and_counted() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut jobs = subscribe_jobs(&bus).await;
    let mut settings = settings(&nats, 6);
    settings.window_keeper.min_observed_steps = 4;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    for step in [0, 1, 2, 5, 6, 7] {
        publish(&bus, &sample("pprisk001", t0 + step * STEP_MS, step as f64)).await;
    }
    wait_for(&keeper, |counters| counters.accepted == 6).await;
    let window = keeper
        .send(GetWindow {
            server: "pprisk001".into(),
        })
        .await
        .unwrap()
        .unwrap();
    let firsts: Vec<f32> = window
        .values
        .chunks(METRIC_COUNT)
        .map(|step| step[0])
        .collect();
    // Steps 0..=6 closed (7 open): the window holds 1..=6, 3 and 4 not observed.
    assert_eq!(
        shown(firsts.iter().copied()),
        shown([1.0, 2.0, f32::NAN, f32::NAN, 5.0, 6.0])
    );
    let all = (1 << METRIC_COUNT) - 1;
    assert_eq!(window.measured, vec![all, all, 0, 0, all, all]);
    assert_eq!(window.gap_steps, 2);
    let counters = keeper.counters.snapshot();
    assert_eq!(counters.extra("gap_steps"), 2);
    // Four observed steps when step 6 closed step 5 (0, 1, 2, 5), and again when 7 closed 6.
    let messages = collect(&mut jobs, 3, Duration::from_secs(2)).await;
    assert_eq!(messages.len(), 2, "no job before four steps were observed");
    let job: PredictJob = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(job.gap_steps, 2);
    assert_eq!(job.last_step_s, (t0 + 5 * STEP_MS) / 1000);
    let job: PredictJob = wire::decode(&messages[1].payload).unwrap();
    assert_eq!(job.gap_steps, 2);
    assert_eq!(
        shown(series(&job, Metric::CpuUserPct).iter().copied()),
        shown(firsts),
        "step 0 fell out"
    );
}

/// A server reporting only CPU and memory gets its first job after `min_observed_steps` steps,
/// short of a full window, with exactly those two metrics (NaN before its history began).
#[actix::test]
async fn partial_server_gets_jobs_after_min_observed_steps() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut jobs = subscribe_jobs(&bus).await;
    let mut settings = settings(&nats, 288);
    settings.window_keeper.min_observed_steps = 24;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    for step in 0..25 {
        let mut partial = sample("node-a", t0 + step * STEP_MS, 0.0);
        partial.metrics = BTreeMap::from([
            ("cpu_user_pct".to_string(), 10.0 + step as f64),
            ("mem_used_pct".to_string(), 60.0),
        ]);
        publish(&bus, &partial).await;
    }
    wait_for(&keeper, |counters| counters.accepted == 25).await;
    let messages = collect(&mut jobs, 2, Duration::from_secs(2)).await;
    assert_eq!(
        messages.len(),
        1,
        "one job: the 25th sample closed the 24th step"
    );
    let job: PredictJob = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(job.metrics, ["cpu_user_pct", "mem_used_pct"]);
    assert_eq!(job.values.len(), 2 * 288);
    let cpu = series(&job, Metric::CpuUserPct);
    assert!(cpu[..264].iter().all(|value| value.is_nan()));
    assert_eq!(cpu[264], 10.0);
    assert_eq!(cpu[287], 33.0);
    assert_eq!(job.last_step_s, (t0 + 23 * STEP_MS) / 1000);
}

/// Every kind of bad input lands on the dead-letter subject with a reason naming the problem,
/// is counted by kind, and leaves the windows alone while good samples keep flowing.
#[actix::test]
async fn bad_input_is_dead_lettered_while_good_samples_flow() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut dead_letters = bus
        .client()
        .subscribe(bus.subjects().rejected("window_keeper"))
        .await
        .unwrap();
    let keeper = window_keeper::spawn(&settings(&nats, 6), bus.clone())
        .await
        .unwrap();
    let t0 = t0();
    let good = "ppweb001";
    let mut expected: Vec<(RejectKind, &str)> = Vec::new();
    let mut good_step = 0;
    // A good sample before each bad one keeps the good server's steps advancing.
    macro_rules! good_then_bad {
        ($kind:expr, $reason:expr, $publish:expr) => {
            publish(&bus, &sample(good, t0 + good_step * STEP_MS, 50.0)).await;
            good_step += 1;
            $publish;
            expected.push(($kind, $reason));
        };
    }
    good_then_bad!(RejectKind::Undecodable, "undecodable", {
        bus.client()
            .publish(bus.subjects().metrics(good), "not msgpack \u{1}".into())
            .await
            .unwrap();
    });
    good_then_bad!(RejectKind::SchemaVersion, "schema version 9", {
        let mut bad = sample(good, t0, 1.0);
        bad.v = 9;
        publish(&bus, &bad).await;
    });
    good_then_bad!(RejectKind::BadServer, "differs from the subject", {
        let bad = sample("ppweb002", t0, 1.0);
        bus.publish(bus.subjects().metrics(good), &bad)
            .await
            .unwrap();
    });
    good_then_bad!(RejectKind::BadServer, "server is missing", {
        let bad = sample("", t0, 1.0);
        bus.publish(bus.subjects().metrics(good), &bad)
            .await
            .unwrap();
    });
    good_then_bad!(
        RejectKind::UnknownMetric,
        "\"cpu_pct\" is not in the catalog",
        {
            let mut bad = sample(good, t0 + good_step * STEP_MS, 1.0);
            bad.metrics.insert("cpu_pct".into(), 1.0);
            publish(&bus, &bad).await;
        }
    );
    good_then_bad!(
        RejectKind::NonFinite,
        "swap_used_pct = NaN is not a finite number",
        {
            let mut bad = sample(good, t0 + good_step * STEP_MS, 1.0);
            bad.metrics.insert("swap_used_pct".into(), f64::NAN);
            publish(&bus, &bad).await;
        }
    );
    good_then_bad!(
        RejectKind::OutOfRange,
        "mem_used_pct = 140 is outside 0–100",
        {
            let mut bad = sample(good, t0 + good_step * STEP_MS, 1.0);
            bad.metrics.insert("mem_used_pct".into(), 140.0);
            publish(&bus, &bad).await;
        }
    );
    good_then_bad!(RejectKind::FutureTimestamp, "ahead of the fleet clock", {
        publish(&bus, &sample(good, wire::now_ms() + 86_400_000, 1.0)).await;
    });
    good_then_bad!(RejectKind::OutOfOrder, "older than the open step", {
        publish(&bus, &sample(good, t0, 1.0)).await;
    });
    good_then_bad!(RejectKind::Empty, "metrics is empty", {
        let mut bad = sample(good, t0 + good_step * STEP_MS, 1.0);
        bad.metrics.clear();
        publish(&bus, &bad).await;
    });
    good_then_bad!(RejectKind::UnknownProfile, "profile = \"mainframe\"", {
        let mut bad = sample(good, t0 + good_step * STEP_MS, 1.0);
        bad.profile = Some("mainframe".into());
        publish(&bus, &bad).await;
    });
    publish(&bus, &sample(good, t0 + good_step * STEP_MS, 50.0)).await;
    let good_count = good_step as u64 + 1;

    let messages = collect(&mut dead_letters, expected.len(), Duration::from_secs(5)).await;
    assert_eq!(messages.len(), expected.len());
    for (message, (kind, reason)) in messages.iter().zip(&expected) {
        let rejection: Rejection = wire::decode(&message.payload).unwrap();
        assert_eq!(rejection.kind, *kind, "{rejection:?}");
        assert!(
            rejection.reason.contains(reason),
            "{reason:?} in {rejection:?}"
        );
        assert_eq!(rejection.stage, "window_keeper");
        assert_eq!(rejection.subject, bus.subjects().metrics(good));
    }
    let counters = wait_for(&keeper, |counters| {
        counters.accepted + counters.rejected == good_count + expected.len() as u64
    })
    .await;
    assert_eq!(counters.accepted, good_count);
    assert_eq!(counters.rejected, expected.len() as u64);
    assert_eq!(counters.rejected_by_kind["bad_server"], 2);
    assert_eq!(counters.rejected_by_kind["out_of_range"], 1);
    let window = keeper
        .send(GetWindow {
            server: good.into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.filled, 6);
    assert!(
        window.values.iter().all(|&value| value == 50.0),
        "no bad value reached the window: {:?}",
        window.values
    );
    let other = keeper
        .send(GetWindow {
            server: "ppweb002".into(),
        })
        .await
        .unwrap();
    assert_eq!(other, None, "a refused sample creates no window");
}

/// Every status interval the keeper publishes its counters and per-fleet warm-up, and reports
/// warm-up per server on request.
#[actix::test]
async fn status_reports_warmup() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut status = bus
        .client()
        .subscribe(bus.subjects().status("window_keeper"))
        .await
        .unwrap();
    let keeper = window_keeper::spawn(&settings(&nats, 4), bus.clone())
        .await
        .unwrap();
    let t0 = t0();
    // a: 5 samples (4 closed: ready); b: 3 samples (2 closed: half way).
    for step in 0..5 {
        publish(&bus, &sample("a", t0 + step * STEP_MS, 1.0)).await;
    }
    for step in 0..3 {
        publish(&bus, &sample("b", t0 + step * STEP_MS, 1.0)).await;
    }
    wait_for(&keeper, |counters| counters.accepted == 8).await;
    let warmup = keeper.send(GetWarmup { per_server: true }).await.unwrap();
    assert_eq!((warmup.servers_tracked, warmup.servers_ready), (2, 1));
    assert_eq!(warmup.warmup_pct, 75.0);
    assert_eq!(warmup.per_server[1].server, "b");
    assert_eq!(
        (warmup.per_server[1].observed, warmup.per_server[1].needed),
        (2, 4)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let messages = collect(&mut status, 1, Duration::from_secs(3)).await;
        assert_eq!(messages.len(), 1, "a status message every second");
        let report: StageStatus = wire::decode(&messages[0].payload).unwrap();
        if report.servers == 2 {
            assert_eq!(report.servers_ready, 1);
            assert_eq!(report.warmup_pct, 75.0);
            assert_eq!(report.counters["accepted"], 8);
            assert_eq!(report.stage, "window_keeper");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report:?}");
    }
}

/// A keeper that stops is replaced by one that rebuilds the same windows from the metrics
/// stream, then carries on live without counting anything twice or republishing.
#[actix::test]
async fn windows_are_rebuilt_from_the_stream() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats, 6);
    let first = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    for step in 0..8 {
        publish(&bus, &sample("ppetl001", t0 + step * STEP_MS, step as f64)).await;
    }
    let mut bad = sample("ppetl001", t0, 1.0);
    bad.metrics.insert("mem_used_pct".into(), 140.0);
    publish(&bus, &bad).await;
    wait_for(&first, |counters| counters.received == 9).await;
    let before = first
        .send(GetWindow {
            server: "ppetl001".into(),
        })
        .await
        .unwrap()
        .unwrap();
    first.send(window_keeper::Stop).await.unwrap();
    let stream_name = bus
        .subjects()
        .stream_name(fleetcast::subjects::StreamKind::Metrics);
    let mut stream = bus.jetstream().get_stream(&stream_name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 9);
    let mut dead_letters = bus
        .client()
        .subscribe(bus.subjects().rejected("window_keeper"))
        .await
        .unwrap();
    let mut jobs = subscribe_jobs(&bus).await;
    bus.client().flush().await.unwrap();

    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let counters = keeper.counters.snapshot();
    assert_eq!(
        (
            counters.extra("replayed"),
            counters.accepted,
            counters.rejected
        ),
        (9, 8, 1)
    );
    let after = keeper
        .send(GetWindow {
            server: "ppetl001".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after, before,
        "the rebuilt window is the one the stopped keeper had"
    );
    assert_eq!(after.filled, 6);
    assert!(
        collect(&mut dead_letters, 1, Duration::from_millis(300))
            .await
            .is_empty(),
        "replayed rejections are not republished"
    );
    assert!(
        collect(&mut jobs, 1, Duration::from_millis(100))
            .await
            .is_empty(),
        "no jobs from the replay"
    );
    publish(&bus, &sample("ppetl001", t0 + 8 * STEP_MS, 8.0)).await;
    let counters = wait_for(&keeper, |counters| counters.received == 1).await;
    assert_eq!(counters.accepted, 9);
    let messages = collect(&mut jobs, 1, Duration::from_secs(5)).await;
    let job: PredictJob = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(
        series(&job, Metric::CpuUserPct),
        &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
}

/// Memory stays bounded with 10,000 servers: every window full (288 steps, most of them gaps)
/// through NATS, under 64 KiB per server, and unchanged by more samples.
#[actix::test]
async fn memory_is_bounded_with_10000_servers() {
    const SERVERS: usize = 10_000;
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = settings(&nats, 288);
    settings.window_keeper.publish_jobs = false;
    settings.window_keeper.rebuild_on_start = false;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    let names: Vec<String> = (0..SERVERS).map(|index| format!("srv{index:05}")).collect();
    // One sample, then one 400 steps later: the gap fills each window to all 288 steps. A
    // burst this size goes through acknowledgements, as fleetcast's own publishers do.
    let mut stream = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    for step in [0, 400] {
        for name in &names {
            let sample = sample(name, t0 + step * STEP_MS, 1.0);
            let unstored = stream
                .publish_message(bus.subjects().metrics(name), &sample)
                .await
                .expect("publish");
            assert_eq!(unstored, 0);
        }
    }
    assert_eq!(stream.flush().await, 0);
    wait_for(&keeper, |counters| counters.accepted == 2 * SERVERS as u64).await;
    let warmup = keeper.send(GetWarmup { per_server: false }).await.unwrap();
    assert_eq!(warmup.servers_tracked as usize, SERVERS);
    let memory = keeper.send(GetMemory).await.unwrap();
    let per_server = memory.bytes / memory.servers;
    println!(
        "window keeper memory: {} bytes for {} servers, {per_server} per server",
        memory.bytes, memory.servers
    );
    assert!(per_server < 64 * 1024, "{per_server} bytes per server");
    assert!(
        per_server > 288 * METRIC_COUNT * 4,
        "the estimate counts the values"
    );
    for name in names.iter().take(1000) {
        publish(&bus, &sample(name, t0 + 401 * STEP_MS, 2.0)).await;
    }
    wait_for(&keeper, |counters| {
        counters.accepted == 2 * SERVERS as u64 + 1000
    })
    .await;
    assert_eq!(keeper.send(GetMemory).await.unwrap(), memory);
}

/// The generator's stream (simulated clock starting now and running 15,000 times faster than
/// the wall, so soon hours ahead of it; every profile) fills every server's window with nothing
/// refused, and predict jobs follow.
#[actix::test]
async fn generator_samples_fill_every_window() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = settings(&nats, 6);
    settings.generator.servers = 14;
    settings.generator.step_interval_ms = 20;
    settings.generator.start = None;
    settings.generator.backfill_hours = 0;
    let mut jobs = subscribe_jobs(&bus).await;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let _generator = fleetcast::actors::generator::spawn(&settings, bus.clone())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let warmup = keeper.send(GetWarmup { per_server: false }).await.unwrap();
        let counters = keeper.counters.snapshot();
        // Wait past the point where the simulated clock leaves the wall clock behind.
        if warmup.servers_ready == 14 && counters.accepted >= 14 * 40 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{warmup:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counters = keeper.counters.snapshot();
    assert_eq!(counters.rejected, 0, "{counters:?}");
    assert!(counters.accepted >= 14 * 7, "{counters:?}");
    let messages = collect(&mut jobs, 1, Duration::from_secs(10)).await;
    let job: PredictJob = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(job.values.len(), 6 * METRIC_COUNT);
    assert_eq!(job.gap_steps, 0);
}

/// With `forecast_every_steps` = 3 each server gets a job for every third closed step only,
/// the steps of different servers offset by their names, and the steps between are counted.
#[actix::test]
async fn forecast_cadence_makes_a_job_every_n_steps_per_server() {
    const EVERY: i64 = 3;
    const STEPS: i64 = 20;
    let servers = [
        "ppdb001",
        "ppweb002",
        "ppml0003",
        "ppapi004",
        "ppcache05",
        "ppetl006",
    ];
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = settings(&nats, 2);
    settings.window_keeper.forecast_every_steps = EVERY as u32;
    let mut jobs = subscribe_jobs(&bus).await;
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let t0 = t0();
    for step in 0..STEPS {
        for server in servers {
            publish(&bus, &sample(server, t0 + step * STEP_MS, step as f64)).await;
        }
    }
    // Steps 1..=18 close with a full window (step 0 fills it; step 19 stays open).
    let closed_ready = (STEPS - 2) as u64 * servers.len() as u64;
    let counters = wait_for(&keeper, |c| {
        c.extra("jobs_published") + c.extra("jobs_between") == closed_ready
    })
    .await;
    let published = counters.extra("jobs_published");
    let messages = collect(&mut jobs, published as usize, Duration::from_secs(10)).await;
    assert_eq!(messages.len() as u64, published);
    let mut steps: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for message in &messages {
        let job: PredictJob = wire::decode(&message.payload).unwrap();
        steps
            .entry(job.server)
            .or_default()
            .push(job.last_step_s * 1000 / STEP_MS);
    }
    assert_eq!(
        steps.len(),
        servers.len(),
        "every server has jobs: {steps:?}"
    );
    for (server, steps) in &steps {
        assert_eq!(
            steps.len(),
            6,
            "{server}: every third of 18 steps: {steps:?}"
        );
        assert!(
            steps.windows(2).all(|pair| pair[1] - pair[0] == EVERY),
            "{server}: {steps:?}"
        );
    }
    let offsets: std::collections::BTreeSet<i64> = steps
        .values()
        .map(|steps| steps[0].rem_euclid(EVERY))
        .collect();
    assert!(offsets.len() > 1, "servers are offset: {steps:?}");
    assert_eq!(counters.extra("jobs_between"), closed_ready - published);
}

/// The replay reads on to the stream's last sequence at start; when the last messages were
/// deleted (so that sequence never comes), it ends once nothing is pending and nothing came
/// for a while, with the windows of what is left, and the keeper goes live.
#[actix::test]
async fn a_replay_whose_last_messages_are_gone_still_ends() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats, 4);
    let t0 = t0();
    for step in 0..6 {
        publish(&bus, &sample("ppetl001", t0 + step * STEP_MS, step as f64)).await;
    }
    let stream_name = bus
        .subjects()
        .stream_name(fleetcast::subjects::StreamKind::Metrics);
    let mut stream = bus.jetstream().get_stream(&stream_name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert_eq!(last, 6);
    for sequence in [last - 1, last] {
        stream.delete_message(sequence).await.unwrap();
    }
    let keeper = window_keeper::spawn(&settings, bus.clone()).await.unwrap();
    let counters = keeper.counters.snapshot();
    assert_eq!(counters.extra("replayed"), 4, "the four messages left");
    let window = keeper
        .send(GetWindow {
            server: "ppetl001".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.last_step_s, Some((t0 + 2 * STEP_MS) / 1000));
    publish(&bus, &sample("ppetl001", t0 + 6 * STEP_MS, 6.0)).await;
    let counters = wait_for(&keeper, |counters| counters.received == 1).await;
    assert_eq!(counters.accepted, 5, "live after the replay");
}
