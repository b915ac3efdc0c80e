//! The node_exporter scraper: reads Prometheus node_exporter pages and publishes what they
//! tell about each host as [`MetricSample`]s.
//!
//! - **Reads** every target (`node_exporter.targets`, plus `file_sd` JSON files in
//!   `node_exporter.files`, re-read when they change; see [`targets`]) over HTTP every
//!   `node_exporter.interval_seconds` (15), at most `concurrency` at once, each within
//!   `timeout_seconds`. Pages are parsed by the `prom_text_format_parser` crate ([`page`]) and
//!   turned into metrics by [`node_series`](crate::node_series) (which metric comes
//!   from which series, and how).
//! - **Publishes** `metrics.<server>` ([`MetricSample`], as a JetStream publish with a window
//!   of acknowledgements, like the generator; only the metrics the page gives, `profile` from a
//!   target's `profile` label when it names one), `status.node_exporter` ([`TargetHealth`]:
//!   each target's health when it changes and every `status_interval_seconds`) and
//!   `rejected.node_exporter` ([`Rejection`](crate::wire::Rejection): a family that does not
//!   parse, a value that is not a number, a target without a usable name, a bad `file_sd`
//!   file).
//! - **Server name**: the target's `node_metrics.name_label` label (default `server`), else the
//!   target's host when it is a DNS name, else the host's own name from `node_uname_info`
//!   (a target on `localhost` or an IP address); see [`node_series::server_name`].
//! - **State**, per target: the previous counter values (rates need two scrapes: a target's
//!   first scrape publishes only the gauges), its health and name.
//! - **Failure**: a target that does not answer, times out, answers other than 200 or with a
//!   page that has no node_exporter series is **down**: its health says why and no sample is
//!   published for it (never zeros). The rest of the targets go on. Bad parts of a page are
//!   rejected, named, and the rest of the page is used. `spawn` fails before starting when
//!   there is nothing to scrape or its micro service cannot start. The actor stops on
//!   [`Drain`], [`Stop`] or when its system stops.

//! - **Counters** ([stage toolkit](crate::actors::stage), micro service
//!   `fleetcast-node-exporter`): `received` scrapes, `accepted` those that gave a
//!   node_exporter page, rejections by kind, publishes; extras `failed` (target down),
//!   `samples`, `resets` (counter resets, each leaving one rate out), `rounds`; facts
//!   `targets` and `targets_up`.
//! - **Drain** ([`Drain`]): the round in hand finishes (each scrape is bounded by
//!   `timeout_seconds`), no new one starts, the outbox flushes.

pub mod page;
pub mod targets;

use self::targets::{Target, TargetSet};
use crate::actors::stage::{
    self, AsyncStage, Drain, Extra, Facts, Reject, ServiceError, Stage, StageHandle, StageSpec,
    Staged, Stop,
};
use crate::bus::Bus;
use crate::catalog::Profile;
use crate::node_series::{self, NodeConfig, NodeState};
use crate::settings::{NodeExporterSettings, Settings};
use crate::subjects::Subjects;
use crate::wire::{MetricSample, RejectKind, SCHEMA_VERSION, TargetHealth, now_ms};
use actix::prelude::*;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The stage name in `rejected.<stage>`, `status.<stage>` and logs.
pub const STAGE: &str = "node_exporter";

/// Largest page read, in bytes (node_exporter pages are 50–200 kB).
const MAX_PAGE_BYTES: usize = 16 << 20;

/// Why the scraper could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeExporterError {
    /// Neither static targets nor `file_sd` files are configured.
    #[error("nothing to scrape: set node_exporter.targets or node_exporter.files")]
    NoTargets,
    /// Its micro service could not start.
    #[error("starting the scraper's micro service")]
    Service(#[from] ServiceError),
}

/// The scraper actor: it owns the scrape loop (a task of its own) and its stage.
pub struct NodeExporter {
    stage: Stage,
    run: Option<Run>,
    /// Tells the scrape loop to stop after the round in hand.
    stop: watch::Sender<bool>,
    /// The scrape loop, once started.
    scraping: Option<tokio::task::JoinHandle<()>>,
}

/// What the scrape loop needs; moved into it when the actor starts.
struct Run {
    stage: AsyncStage,
    facts: Facts,
    subjects: Subjects,
    settings: NodeExporterSettings,
    node: NodeConfig,
    name_label: String,
    targets: TargetSet,
    stop: watch::Receiver<bool>,
}

/// The scraper's own counters (extras of its stage counters).
struct Extras {
    failed: Extra,
    samples: Extra,
    resets: Extra,
    rounds: Extra,
}

/// Checks the settings, reads the `file_sd` files once, builds the stage (micro service,
/// outbox), then starts the scraper on the current actix system.
///
/// # Errors
/// [`NodeExporterError::NoTargets`] when nothing is configured to scrape,
/// [`NodeExporterError::Service`] when the micro service cannot start.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<NodeExporter>, NodeExporterError> {
    let scraper = &settings.node_exporter;
    if scraper.targets.is_empty() && scraper.files.is_empty() {
        return Err(NodeExporterError::NoTargets);
    }
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast node_exporter scraper: node_exporter pages into metric samples",
        )
        .extras(&["failed", "samples", "resets", "rounds"]),
    )
    .await?;
    tracing::info!(
        targets = scraper.targets.len(),
        files = scraper.files.len(),
        interval_seconds = scraper.interval_seconds,
        "node_exporter scraper starting"
    );
    let (stop, stopped) = watch::channel(false);
    let run = Run {
        stage: stage.async_side(),
        facts: stage.facts().clone(),
        subjects: bus.subjects().clone(),
        settings: scraper.clone(),
        node: settings.node_metrics.node_config(),
        name_label: settings.node_metrics.name_label.clone(),
        targets: TargetSet::new(&scraper.targets, &scraper.files),
        stop: stopped,
    };
    Ok(stage::start(NodeExporter {
        stage,
        run: Some(run),
        stop,
        scraping: None,
    }))
}

impl Actor for NodeExporter {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        if let Some(run) = self.run.take() {
            self.scraping = Some(actix::spawn(scrape_loop(run)));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(scraping) = self.scraping.take() {
            scraping.abort();
        }
    }
}

impl Staged for NodeExporter {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Handler<Stop> for NodeExporter {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Drain> for NodeExporter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        let _ = self.stop.send(true);
        let scraping = self.scraping.take();
        stage::drain(
            async move {
                if let Some(scraping) = scraping {
                    let _ = scraping.await;
                }
            },
            |_: &mut NodeExporter, _| {},
        )
    }
}

/// What the scraper keeps per target.
#[derive(Default)]
struct TargetState {
    node: NodeState,
    up: Option<bool>,
    server: Option<String>,
    error: Option<String>,
    last_ok_ms: Option<i64>,
    metrics: Vec<String>,
}

/// The outcome of one scrape: the page's text, or why there is none.
type Fetched = Result<String, String>;

/// Scrapes every target each interval until told to stop (after the round in hand).
async fn scrape_loop(run: Run) {
    let Run {
        stage,
        facts,
        subjects,
        settings,
        node,
        name_label,
        mut targets,
        mut stop,
    } = run;
    let counters = stage.counters();
    let extras = Extras {
        failed: counters.extra("failed"),
        samples: counters.extra("samples"),
        resets: counters.extra("resets"),
        rounds: counters.extra("rounds"),
    };
    let timeout = Duration::from_secs(settings.timeout_seconds);
    let client = http_client(timeout, settings.concurrency);
    let mut states: HashMap<Target, TargetState> = HashMap::new();
    let mut current: Vec<Target> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(settings.interval_seconds));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status_every = Duration::from_secs(settings.status_interval_seconds);
    let mut last_status = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        let (changed, errors) = targets.refresh();
        for error in errors {
            stage
                .reject(
                    "file_sd",
                    Reject::new(RejectKind::BadContent, error.to_string()),
                )
                .await;
        }
        if changed || current.is_empty() {
            current = targets.targets();
            states.retain(|target, _| current.contains(target));
            facts.set("targets", current.len());
            tracing::info!(targets = current.len(), "scrape targets");
        }
        let round_started = Instant::now();
        let mut pages = futures::stream::iter(current.iter().cloned().map(|target| {
            let url = format!("http://{}{}", target.address, settings.metrics_path);
            let client = client.clone();
            async move {
                let fetched = fetch(&client, &url, timeout).await;
                (target, url, now_ms(), fetched)
            }
        }))
        .buffer_unordered(settings.concurrency);
        let context = PageContext {
            node: &node,
            name_label: &name_label,
            subjects: &subjects,
            stage: &stage,
            extras: &extras,
        };
        while let Some((target, url, ts_ms, fetched)) = pages.next().await {
            let state = states.entry(target.clone()).or_default();
            let was = (state.up, state.server.clone());
            handle_page(&context, &target, &url, ts_ms, fetched, state).await;
            if was != (state.up, state.server.clone()) {
                if state.up == Some(false) {
                    tracing::warn!(
                        target = url,
                        error = state.error.as_deref().unwrap_or(""),
                        "target down"
                    );
                } else {
                    tracing::info!(
                        target = url,
                        server = state.server.as_deref().unwrap_or(""),
                        "target up"
                    );
                }
                stage
                    .publish(subjects.status(STAGE), &health(&url, state))
                    .await;
            }
        }
        drop(pages);
        let up = states
            .values()
            .filter(|state| state.up == Some(true))
            .count();
        facts.set("targets_up", up);
        extras.rounds.incr();
        tracing::debug!(
            targets = current.len(),
            up,
            seconds = round_started.elapsed().as_secs_f64(),
            "scrape round done"
        );
        if last_status.elapsed() >= status_every {
            last_status = Instant::now();
            for target in &current {
                if let Some(state) = states.get(target) {
                    let url = format!("http://{}{}", target.address, settings.metrics_path);
                    stage
                        .publish(subjects.status(STAGE), &health(&url, state))
                        .await;
                }
            }
        }
    }
}

/// What handling a page needs besides the target's own state.
struct PageContext<'a> {
    node: &'a NodeConfig,
    name_label: &'a str,
    subjects: &'a Subjects,
    stage: &'a AsyncStage,
    extras: &'a Extras,
}

/// Turns one scrape into samples, rejections and the target's new health.
async fn handle_page(
    context: &PageContext<'_>,
    target: &Target,
    url: &str,
    ts_ms: i64,
    fetched: Fetched,
    state: &mut TargetState,
) {
    let (stage, extras) = (context.stage, context.extras);
    stage.counters().received();
    let text = match fetched {
        Ok(text) => text,
        Err(error) => {
            extras.failed.incr();
            state.up = Some(false);
            state.error = Some(error);
            return;
        }
    };
    let page = page::parse(&text, context.node);
    let server = node_series::server_name(
        target.labels.get(context.name_label).map(String::as_str),
        node_series::host_of(&target.address),
        page.nodename.as_deref(),
    );
    if !page.problems.is_empty() {
        let reject = Reject::new(RejectKind::Undecodable, page.problems.join("; "))
            .or_server(server.as_deref());
        stage.reject(url, reject).await;
    }
    if page.series.is_empty() && page.nodename.is_none() {
        extras.failed.incr();
        state.up = Some(false);
        state.error = Some(format!(
            "the page has none of the node_exporter series fleetcast uses ({} metric families; is it a node_exporter?)",
            page.families
        ));
        return;
    }
    let Some(server) = server else {
        extras.failed.incr();
        state.up = Some(false);
        let reason = format!(
            "no server name for {}: give the target a `{}` label, or enable node_exporter's uname collector",
            target.address, context.name_label
        );
        stage
            .reject(url, Reject::new(RejectKind::BadServer, reason.clone()))
            .await;
        state.error = Some(reason);
        return;
    };
    stage.counters().accepted();
    state.up = Some(true);
    state.error = None;
    state.last_ok_ms = Some(ts_ms);
    state.server = Some(server.clone());
    let resets = state.node.resets();
    for (series, value) in page.series {
        state.node.add(ts_ms, series, value);
    }
    let ready = state.node.ready(context.node, Some(ts_ms));
    extras.resets.add(state.node.resets() - resets);
    let profile = target
        .labels
        .get("profile")
        .filter(|name| name.parse::<Profile>().is_ok())
        .cloned();
    for (ts_ms, metrics) in ready {
        state.metrics = metrics.keys().cloned().collect();
        let sample = MetricSample {
            v: SCHEMA_VERSION,
            server: server.clone(),
            ts_ms,
            profile: profile.clone(),
            metrics,
        };
        extras.samples.incr();
        stage
            .publish_to_stream(context.subjects.metrics(&server), &sample)
            .await;
    }
}

/// A target's health message.
fn health(url: &str, state: &TargetState) -> TargetHealth {
    TargetHealth {
        v: SCHEMA_VERSION,
        stage: STAGE.to_string(),
        target: url.to_string(),
        server: state.server.clone(),
        up: state.up.unwrap_or(false),
        error: state.error.clone(),
        at_ms: now_ms(),
        last_ok_ms: state.last_ok_ms,
        metrics: state.metrics.clone(),
    }
}

/// The HTTP client of the scrape loop: plain HTTP, `timeout` per request, a connection pool
/// as wide as the concurrency.
pub fn http_client(timeout: Duration, concurrency: usize) -> awc::Client {
    awc::Client::builder()
        .timeout(timeout)
        .connector(awc::Connector::new().limit(concurrency).timeout(timeout))
        .finish()
}

/// Fetches one page within `timeout`: its text, or why not, in words.
async fn fetch(client: &awc::Client, url: &str, timeout: Duration) -> Fetched {
    tokio::time::timeout(timeout, fetch_page(client, url, timeout))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs_f64())))
}

async fn fetch_page(client: &awc::Client, url: &str, timeout: Duration) -> Fetched {
    let mut response = client.get(url).send().await.map_err(|error| match error {
        awc::error::SendRequestError::Timeout => {
            format!("no answer within {} s", timeout.as_secs_f64())
        }
        other => format!("cannot scrape {url}: {other}"),
    })?;
    if response.status() != awc::http::StatusCode::OK {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    let body = response
        .body()
        .limit(MAX_PAGE_BYTES)
        .await
        .map_err(|error| format!("cannot read the page from {url}: {error}"))?;
    String::from_utf8(body.to_vec()).map_err(|_| format!("the page from {url} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Two real node_exporter 1.5.0 pages of this machine, 15 s apart (tcpstat on).
    const FIRST: &str = include_str!("../../../tests/fixtures/node_exporter/vm-1.prom");
    const SECOND: &str = include_str!("../../../tests/fixtures/node_exporter/vm-2.prom");

    fn scrape(state: &mut NodeState, text: &str, ts_ms: i64) -> Option<BTreeMap<String, f64>> {
        let config = NodeConfig::default();
        let page = page::parse(text, &config);
        assert!(page.problems.is_empty(), "{:?}", page.problems);
        for (series, value) in page.series {
            state.add(ts_ms, series, value);
        }
        let mut ready = state.ready(&config, Some(ts_ms));
        assert!(ready.len() <= 1);
        ready.pop().map(|(_, metrics)| metrics)
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{series} on the page"))
    }

    /// The first page gives the gauges only, the second the rates too; nothing is invented.
    #[test]
    fn recorded_pages_give_the_node_metrics() {
        let mut state = NodeState::new();
        let first = scrape(&mut state, FIRST, 0).expect("gauges");
        let names: Vec<&str> = first.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "disk_usage_pct",
                "front_close_wait",
                "load_average",
                "mem_used_pct",
                "swap_used_pct",
                "uptime_days"
            ]
        );
        let total = value(FIRST, "node_memory_MemTotal_bytes");
        let available = value(FIRST, "node_memory_MemAvailable_bytes");
        assert_eq!(first["mem_used_pct"], 100.0 * (1.0 - available / total));
        assert_eq!(first["load_average"], value(FIRST, "node_load1"));
        let second = scrape(&mut state, SECOND, 15_000).expect("all metrics");
        let cpu: f64 = [
            "cpu_user_pct",
            "cpu_sys_pct",
            "cpu_iowait_pct",
            "cpu_idle_pct",
        ]
        .iter()
        .map(|name| second[*name])
        .sum();
        assert!((99.0..=100.0 + 1e-9).contains(&cpu), "cpu sums to {cpu}");
        assert!(second["net_in_mb_s"] >= 0.0 && second["net_out_mb_s"] >= 0.0);
        assert_eq!(second.len(), 12, "{second:?}");
        assert!(!second.contains_key("java_cpu_pct"));
        assert!(!second.contains_key("back_close_wait"));
    }

    /// Counters that went down (the pages in reverse order: a reboot) leave their rate out;
    /// counters that did not move (no network traffic between the pages) give 0.
    #[test]
    fn reversed_pages_are_a_counter_reset() {
        let mut state = NodeState::new();
        scrape(&mut state, SECOND, 0);
        let after_reset = scrape(&mut state, FIRST, 15_000).expect("gauges");
        assert!(!after_reset.contains_key("cpu_user_pct"), "{after_reset:?}");
        assert_eq!(
            after_reset.get("net_in_mb_s"),
            Some(&0.0),
            "{after_reset:?}"
        );
        assert!(state.resets() >= 1);
    }

    /// A page without a family lacks exactly the metrics that family feeds.
    #[test]
    fn a_missing_family_drops_only_its_metrics() {
        let without: String = FIRST
            .lines()
            .filter(|line| !line.contains("node_memory_MemAvailable_bytes"))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut state = NodeState::new();
        let metrics = scrape(&mut state, &without, 0).expect("gauges");
        assert!(!metrics.contains_key("mem_used_pct"));
        assert!(metrics.contains_key("swap_used_pct"));
        assert!(metrics.contains_key("disk_usage_pct"));
    }
}
