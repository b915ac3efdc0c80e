//! The Prometheus remote-write receiver: an HTTP endpoint a Prometheus forwards its samples
//! to; node_exporter series become [`MetricSample`]s per `instance`.
//!
//! - **Serves** `POST <remote_write.path>` (default `/api/v1/write`) on `remote_write.listen`
//!   (default `127.0.0.1:9201`): remote-write 1.0, a snappy-compressed (block format)
//!   protobuf `WriteRequest` ([`proto`]). The server is actix-web on the actors' system.
//! - **Maps** the node_exporter series of each `instance` exactly as the scraper does
//!   ([`node_series`](crate::actors::node_series)): rates from consecutive samples of the same
//!   series, a metric only when all its series for a timestamp have arrived (a scrape may be
//!   split over several requests), absent when its series are. Prometheus's `up` series gives
//!   each instance's health; `node_uname_info` its host name.
//! - **Answers** 204 once every sample derived from the request is stored (JetStream
//!   acknowledgement); 400 with the reason for a body that is not snappy, not a `WriteRequest`
//!   or too large (Prometheus does not retry a 4xx); 503 when the bus did not store
//!   everything (Prometheus retries a 5xx): the samples not stored are kept (up to
//!   [`MAX_UNSENT`]) and stored before those of the next request, since the retried request's
//!   samples are then already accounted for.
//! - **Publishes** `metrics.<server>` ([`MetricSample`]), `status.remote_write`
//!   ([`TargetHealth`] when an instance's `up` changes) and `rejected.remote_write`
//!   ([`Rejection`](crate::wire::Rejection): a bad body; series without an `instance` label; an
//!   instance that stays without a usable server name).
//! - **Server name** per instance: the series' `node_metrics.name_label` label (default
//!   `server`), else the instance's host when it is a DNS name, else `node_uname_info`'s
//!   `nodename` (an instance on `localhost` or an IP address; its samples wait, up to eight
//!   timestamps, until the name arrives).
//! - **State**, per instance: the series values of its open timestamps and the previous
//!   counter values; the samples not yet stored; the counters ([`GetCounters`]).
//! - **Failure**: bad input is answered and rejected, the server goes on. `spawn` fails when
//!   the address cannot be bound. The server stops with the actor ([`Stop`]) or its system.

pub mod proto;

use self::proto::{STALE_NAN, WriteRequest};
use crate::actors::node_series::{self, NodeConfig, NodeState, Series, UNAME_SERIES};
use crate::actors::stage::{Outbox, Rejects, StageCounters, Stop};
use crate::bus::{Bus, headers};
use crate::settings::Settings;
use crate::subjects::Subjects;
use crate::wire::{self, MetricSample, RejectKind, SCHEMA_VERSION, TargetHealth, now_ms};
use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The stage name in `rejected.<stage>`, `status.<stage>` and logs.
pub const STAGE: &str = "remote_write";

/// Most samples kept for a retry after the bus failed to store them; beyond, the oldest are
/// dropped and counted as errors.
pub const MAX_UNSENT: usize = 100_000;

/// How long a publish waits for the stream's acknowledgement before the request is answered
/// 503 (Prometheus's own `remote_timeout` is 30 s).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Timestamps an unnamed instance may collect before it is reported.
const UNNAMED_REPORT_AFTER: u32 = 8;

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address} (remote_write.listen): {source}")]
    Bind {
        /// The address.
        address: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// The receiver actor; it owns the HTTP server, which runs (and keeps the actor alive) until
/// the actor stops.
pub struct RemoteWrite {
    shared: Arc<Shared>,
    /// Taken when the actor starts: the server runs as a future of the actor's context.
    running: Option<actix_web::dev::Server>,
    server: actix_web::dev::ServerHandle,
    address: SocketAddr,
}

/// State shared by the HTTP workers.
struct Shared {
    node: NodeConfig,
    name_label: String,
    limit: usize,
    subjects: Subjects,
    jetstream: async_nats::jetstream::Context,
    outbox: Outbox,
    counters: StageCounters,
    ingest: Mutex<Ingest>,
    requests: AtomicU64,
    bad_requests: AtomicU64,
    unavailable: AtomicU64,
    series_in: AtomicU64,
    samples_in: AtomicU64,
    samples: AtomicU64,
    stored: AtomicU64,
}

/// What the receiver knows, behind one lock.
struct Ingest {
    instances: HashMap<String, Instance>,
    /// Encoded samples the bus did not store, oldest first.
    unsent: VecDeque<(String, Bytes)>,
    rejects: Rejects,
}

/// One `instance`.
#[derive(Default)]
struct Instance {
    node: NodeState,
    nodename: Option<String>,
    label_name: Option<String>,
    server: Option<String>,
    up: Option<bool>,
    last_ok_ms: Option<i64>,
    unnamed: u32,
    unnamed_reported: bool,
    metrics: Vec<String>,
}

/// The receiver's counters, as [`GetCounters`] returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct ReceiverCounters {
    /// Requests received.
    pub requests: u64,
    /// Requests answered 400.
    pub bad_requests: u64,
    /// Requests answered 503 (the bus did not store everything).
    pub unavailable: u64,
    /// Series received.
    pub series_in: u64,
    /// Remote-write samples received (all series).
    pub samples_in: u64,
    /// [`MetricSample`]s derived.
    pub samples: u64,
    /// [`MetricSample`]s stored (acknowledged by the stream).
    pub stored: u64,
    /// Inputs rejected.
    pub rejected: u64,
    /// Publishes that failed (health and rejections) and samples dropped past [`MAX_UNSENT`].
    pub errors: u64,
    /// Samples waiting to be stored.
    pub unsent: u64,
}

/// Asks the receiver for its counters.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ReceiverCounters")]
pub struct GetCounters;

/// Asks the receiver for the address it listens on (useful with port 0).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SocketAddr")]
pub struct GetAddress;

/// Binds the HTTP server and starts the receiver on the current actix system.
///
/// # Errors
/// [`RemoteWriteError::Bind`] when the address cannot be bound.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<RemoteWrite>, RemoteWriteError> {
    let receiver = &settings.remote_write;
    let counters = StageCounters::default();
    let subjects = bus.subjects().clone();
    let shared = Arc::new(Shared {
        node: settings.node_metrics.node_config(),
        name_label: settings.node_metrics.name_label.clone(),
        limit: receiver.max_body_bytes,
        jetstream: async_nats::jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(bus.client().clone()),
        outbox: Outbox::start(bus.client().clone(), counters.clone(), STAGE),
        counters,
        ingest: Mutex::new(Ingest {
            instances: HashMap::new(),
            unsent: VecDeque::new(),
            rejects: Rejects::new(STAGE, &subjects),
        }),
        subjects,
        requests: AtomicU64::new(0),
        bad_requests: AtomicU64::new(0),
        unavailable: AtomicU64::new(0),
        series_in: AtomicU64::new(0),
        samples_in: AtomicU64::new(0),
        samples: AtomicU64::new(0),
        stored: AtomicU64::new(0),
    });
    let data = web::Data::from(shared.clone());
    let limit = receiver.max_body_bytes;
    let path = receiver.path.clone();
    let bind_error = |source| RemoteWriteError::Bind {
        address: receiver.listen.clone(),
        source,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(limit))
            .route(&path, web::post().to(write))
    })
    .workers(receiver.workers)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(receiver.listen.as_str())
    .map_err(bind_error)?;
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tracing::info!(%address, path = receiver.path, "remote-write receiver listening");
    Ok(RemoteWrite::create(|_| RemoteWrite {
        shared,
        running: Some(server),
        server: handle,
        address,
    }))
}

impl Actor for RemoteWrite {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(server) = self.running.take() {
            ctx.spawn(actix::fut::wrap_future(async move {
                if let Err(error) = server.await {
                    tracing::error!(%error, "remote-write server stopped");
                }
            }));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let handle = self.server.clone();
        actix::spawn(async move { handle.stop(true).await });
    }
}

impl Handler<GetCounters> for RemoteWrite {
    type Result = ReceiverCounters;

    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> ReceiverCounters {
        let shared = &self.shared;
        let stage = shared.counters.snapshot();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReceiverCounters {
            requests: load(&shared.requests),
            bad_requests: load(&shared.bad_requests),
            unavailable: load(&shared.unavailable),
            series_in: load(&shared.series_in),
            samples_in: load(&shared.samples_in),
            samples: load(&shared.samples),
            stored: load(&shared.stored),
            rejected: stage.rejected,
            errors: stage.errors,
            unsent: shared.ingest.lock().expect("ingest lock").unsent.len() as u64,
        }
    }
}

impl Handler<GetAddress> for RemoteWrite {
    type Result = MessageResult<GetAddress>;

    fn handle(&mut self, _: GetAddress, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.address)
    }
}

impl Handler<Stop> for RemoteWrite {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// `POST /api/v1/write`.
async fn write(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let request = match proto::decode_body(&body, shared.limit) {
        Ok(request) => request,
        Err(error) => {
            shared.bad_requests.fetch_add(1, Ordering::Relaxed);
            let reason = error.to_string();
            shared.ingest.lock().expect("ingest lock").rejects.reject(
                &shared.counters,
                &shared.outbox,
                "http",
                None,
                match error {
                    proto::BodyError::TooLarge { .. } => RejectKind::BadContent,
                    _ => RejectKind::Undecodable,
                },
                reason.clone(),
            );
            return HttpResponse::BadRequest().body(reason);
        }
    };
    let samples = shared.ingest(&request);
    match shared.store(samples).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(reason) => {
            shared.unavailable.fetch_add(1, Ordering::Relaxed);
            HttpResponse::ServiceUnavailable().body(reason)
        }
    }
}

impl Shared {
    /// Folds a request into the instances' state; returns the encoded samples now settled.
    fn ingest(&self, request: &WriteRequest) -> Vec<(String, Bytes)> {
        let mut guard = self.ingest.lock().expect("ingest lock");
        let ingest = &mut *guard;
        let mut samples_in = 0;
        let mut touched: Vec<String> = Vec::new();
        let mut without_instance: Option<(usize, String)> = None;
        let mut health = Vec::new();
        for series in &request.timeseries {
            samples_in += series.samples.len() as u64;
            let Some(name) = series.name() else {
                continue;
            };
            // Most of a node_exporter scrape is not used: leave it before any other look-up.
            if !name.starts_with("node_") && name != "up" {
                continue;
            }
            let is_uname = name == UNAME_SERIES;
            let kind = if is_uname || name == "up" {
                None
            } else {
                match self.node.classify(name, |key| series.label(key)) {
                    Some(kind) => Some(kind),
                    None => continue,
                }
            };
            let Some(instance_label) = series.label("instance") else {
                let entry = without_instance.get_or_insert((0, name.to_string()));
                entry.0 += 1;
                continue;
            };
            if !ingest.instances.contains_key(instance_label) {
                ingest
                    .instances
                    .insert(instance_label.to_string(), Instance::default());
            }
            let instance = ingest
                .instances
                .get_mut(instance_label)
                .expect("inserted above");
            if let Some(label) = series.label(&self.name_label)
                && instance.label_name.as_deref() != Some(label)
            {
                instance.label_name = Some(label.to_string());
            }
            if is_uname {
                if let Some(nodename) = series.label("nodename")
                    && instance.nodename.as_deref() != Some(nodename)
                {
                    instance.nodename = Some(nodename.to_string());
                }
            } else if let Some(kind) = kind {
                for sample in &series.samples {
                    let value = if sample.value.to_bits() == STALE_NAN {
                        // The series ended: for close-wait that means no socket is left in
                        // the state (tcpstat lists only states that have sockets).
                        if kind != Series::CloseWait {
                            continue;
                        }
                        0.0
                    } else {
                        sample.value
                    };
                    instance.node.add(sample.timestamp, kind.clone(), value);
                }
            } else if let Some(last) = series
                .samples
                .iter()
                .rev()
                .find(|sample| sample.value.is_finite())
            {
                // `up`: 1 when Prometheus's last scrape of the instance worked.
                let up = last.value == 1.0;
                if up {
                    instance.last_ok_ms = Some(last.timestamp);
                }
                if instance.up != Some(up) {
                    instance.up = Some(up);
                    health.push(instance_label.to_string());
                }
            }
            if touched.last().map(String::as_str) != Some(instance_label) {
                touched.push(instance_label.to_string());
            }
        }
        self.series_in
            .fetch_add(request.timeseries.len() as u64, Ordering::Relaxed);
        self.samples_in.fetch_add(samples_in, Ordering::Relaxed);
        if let Some((count, example)) = without_instance {
            ingest.rejects.reject(
                &self.counters,
                &self.outbox,
                "http",
                None,
                RejectKind::BadServer,
                format!("{count} series without an `instance` label (e.g. `{example}`): left out"),
            );
        }
        touched.sort_unstable();
        touched.dedup();
        let mut out = Vec::new();
        for instance_label in &touched {
            let instance = ingest
                .instances
                .get_mut(instance_label)
                .expect("touched instances exist");
            let server = node_series::server_name(
                instance.label_name.as_deref(),
                node_series::host_of(instance_label),
                instance.nodename.as_deref(),
            );
            let Some(server) = server else {
                instance.unnamed += 1;
                if instance.unnamed >= UNNAMED_REPORT_AFTER && !instance.unnamed_reported {
                    instance.unnamed_reported = true;
                    ingest.rejects.reject(
                        &self.counters,
                        &self.outbox,
                        "http",
                        None,
                        RejectKind::BadServer,
                        format!(
                            "instance `{instance_label}` has no server name: add a `{}` label to its series in Prometheus, or enable node_exporter's uname collector",
                            self.name_label
                        ),
                    );
                }
                continue;
            };
            if instance.server.as_deref() != Some(server.as_str()) {
                instance.server = Some(server.clone());
                if !health.contains(instance_label) && instance.up.is_some() {
                    health.push(instance_label.clone());
                }
            }
            let subject = self.subjects.metrics(&server);
            for (ts_ms, metrics) in instance.node.ready(&self.node, None) {
                instance.metrics = metrics.keys().cloned().collect();
                let sample = MetricSample {
                    v: SCHEMA_VERSION,
                    server: server.clone(),
                    ts_ms,
                    profile: None,
                    metrics,
                };
                out.push((subject.clone(), Bytes::from(wire::encode(&sample))));
            }
        }
        for instance_label in health {
            let instance = &ingest.instances[&instance_label];
            let up = instance.up.unwrap_or(false);
            let message = TargetHealth {
                v: SCHEMA_VERSION,
                stage: STAGE.to_string(),
                target: instance_label.clone(),
                server: instance.server.clone(),
                up,
                error: (!up).then(|| {
                    "prometheus reports up = 0: its scrape of the instance failed".to_string()
                }),
                at_ms: now_ms(),
                last_ok_ms: instance.last_ok_ms,
                metrics: instance.metrics.clone(),
            };
            if up {
                tracing::info!(instance = instance_label, "remote-write instance up");
            } else {
                tracing::warn!(
                    instance = instance_label,
                    "remote-write instance down (up = 0)"
                );
            }
            self.outbox.send(self.subjects.status(STAGE), &message);
        }
        self.samples.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Stores the samples left from earlier requests, then `samples`, waiting for every
    /// acknowledgement.
    ///
    /// # Errors
    /// A reason in words when some were not stored (they are kept for the next request).
    async fn store(&self, samples: Vec<(String, Bytes)>) -> Result<(), String> {
        let mut queue: Vec<(String, Bytes)> = {
            let mut ingest = self.ingest.lock().expect("ingest lock");
            ingest.unsent.drain(..).collect()
        };
        queue.extend(samples);
        if queue.is_empty() {
            return Ok(());
        }
        let total = queue.len();
        let mut failed: Vec<(String, Bytes)> = Vec::new();
        let mut first_error: Option<String> = None;
        // One deadline for the whole request: with the bus gone, a publish may wait for the
        // connection instead of failing, and Prometheus must get its answer in time.
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        let timed_out = || format!("no acknowledgement within {} s", ACK_TIMEOUT.as_secs());
        let mut queue = queue.into_iter().peekable();
        while queue.peek().is_some() {
            let mut acks = Vec::new();
            for (subject, payload) in queue.by_ref().take(crate::bus::STREAM_PUBLISH_WINDOW) {
                let publish = self.jetstream.publish_with_headers(
                    subject.clone(),
                    headers(),
                    payload.clone(),
                );
                match tokio::time::timeout_at(deadline, publish).await {
                    Ok(Ok(ack)) => acks.push((subject, payload, ack)),
                    Ok(Err(error)) => {
                        first_error.get_or_insert_with(|| error.to_string());
                        failed.push((subject, payload));
                    }
                    Err(_) => {
                        first_error.get_or_insert_with(timed_out);
                        failed.push((subject, payload));
                    }
                }
            }
            for (subject, payload, ack) in acks {
                match tokio::time::timeout_at(deadline, ack).await {
                    Ok(Ok(_)) => {
                        self.stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(error)) => {
                        first_error.get_or_insert_with(|| error.to_string());
                        failed.push((subject, payload));
                    }
                    Err(_) => {
                        first_error.get_or_insert_with(timed_out);
                        failed.push((subject, payload));
                    }
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        let not_stored = failed.len();
        let mut ingest = self.ingest.lock().expect("ingest lock");
        for message in failed.into_iter().rev() {
            ingest.unsent.push_front(message);
        }
        while ingest.unsent.len() > MAX_UNSENT {
            ingest.unsent.pop_front();
            self.counters.error();
        }
        drop(ingest);
        let error = first_error.unwrap_or_default();
        tracing::warn!(not_stored, total, %error, "the bus did not store every sample: answering 503");
        Err(format!(
            "the bus did not store {not_stored} of {total} samples ({error}); they are kept and stored before the next request's"
        ))
    }
}
