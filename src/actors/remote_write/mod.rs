//! The Prometheus remote-write receiver: an HTTP endpoint a Prometheus forwards its samples
//! to; node_exporter series become [`MetricSample`]s per `instance`.
//!
//! - **Serves** `POST <remote_write.path>` (default `/api/v1/write`) on `remote_write.listen`
//!   (default `127.0.0.1:9201`): remote-write 1.0, a snappy-compressed (block format)
//!   protobuf `WriteRequest` ([`proto`]). The server is actix-web on the actors' system.
//! - **Maps** the node_exporter series of each `instance` exactly as the scraper does
//!   ([`node_series`](crate::node_series)): rates from consecutive samples of the same
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
//!   counter values; the samples not yet stored.
//! - **Failure**: bad input is answered and rejected, the server goes on. `spawn` fails when
//!   the address cannot be bound or its micro service cannot start. The server stops with
//!   the actor ([`Drain`], [`Stop`]) or its system.

//! - **Counters** ([stage toolkit](crate::actors::stage), micro service
//!   `fleetcast-remote-write`): `received` requests, `accepted` those answered 204,
//!   rejections by kind, publishes; extras `bad_requests` (400), `unavailable` (503),
//!   `series_in`, `samples_in`, `samples` (derived), `stored` (acknowledged by the stream),
//!   `dropped` (past [`MAX_UNSENT`]); fact `unsent`.
//! - **Drain** ([`Drain`]): the HTTP server stops taking connections and finishes the
//!   requests in hand (each bounded by the 5 s acknowledgement deadline), then the outbox
//!   flushes.

pub mod proto;

use self::proto::{STALE_NAN, WriteRequest};
use crate::actors::stage::{
    self, AsyncStage, Drain, Envelope, Extra, Facts, Reject, ServiceError, Stage, StageHandle,
    StageSpec, Staged, Stop,
};
use crate::bus::Bus;
use crate::node_series::{self, NodeConfig, NodeState, Series, UNAME_SERIES};
use crate::settings::Settings;
use crate::subjects::Subjects;
use crate::wire::{self, MetricSample, RejectKind, SCHEMA_VERSION, TargetHealth, now_ms};
use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The stage name in `rejected.<stage>`, `status.<stage>` and logs.
pub const STAGE: &str = "remote_write";

/// Most samples kept for a retry after the bus failed to store them; beyond, the oldest are
/// dropped and counted (`dropped`).
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
    #[error("cannot listen on {address} (remote_write.listen)")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Its micro service could not start.
    #[error("starting the receiver's micro service")]
    Service(#[from] ServiceError),
}

/// The receiver actor; it owns the HTTP server, which runs (and keeps the actor alive) until
/// the actor stops.
pub struct RemoteWrite {
    stage: Stage,
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
    stage: AsyncStage,
    facts: Facts,
    extras: Extras,
    ingest: Mutex<Ingest>,
}

/// The receiver's own counters (extras of its stage counters).
struct Extras {
    bad_requests: Extra,
    unavailable: Extra,
    series_in: Extra,
    samples_in: Extra,
    samples: Extra,
    stored: Extra,
    dropped: Extra,
}

/// The extras' names, in [`Extras`]' order.
const EXTRAS: [&str; 7] = [
    "bad_requests",
    "unavailable",
    "series_in",
    "samples_in",
    "samples",
    "stored",
    "dropped",
];

/// What the receiver knows, behind one lock.
struct Ingest {
    instances: HashMap<String, Instance>,
    /// Samples the bus did not store, oldest first.
    unsent: VecDeque<Unsent>,
}

/// An encoded sample on its way to the metrics stream.
struct Unsent {
    subject: String,
    /// `Nats-Msg-Id`: the stream keeps one copy of a sample sent twice (a retry after an
    /// acknowledgement that came too late).
    id: String,
    payload: Bytes,
}

/// What one request gave: samples to store, refusals and health changes to publish.
#[derive(Default)]
struct Ingested {
    samples: Vec<Unsent>,
    rejects: Vec<Reject>,
    health: Vec<TargetHealth>,
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

/// Asks the receiver for the address it listens on (useful with port 0).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SocketAddr")]
pub struct GetAddress;

/// Builds the stage (micro service, outbox), binds the HTTP server and starts the receiver
/// on the current actix system.
///
/// # Errors
/// [`RemoteWriteError::Bind`] when the address cannot be bound,
/// [`RemoteWriteError::Service`] when the micro service cannot start.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<RemoteWrite>, RemoteWriteError> {
    let receiver = &settings.remote_write;
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast remote-write receiver: Prometheus remote write into metric samples",
        )
        .extras(&EXTRAS),
    )
    .await?;
    let counters = stage.counters();
    let [
        bad_requests,
        unavailable,
        series_in,
        samples_in,
        samples,
        stored,
        dropped,
    ] = EXTRAS.map(|name| counters.extra(name));
    stage.facts().set("unsent", 0);
    let shared = Shared {
        node: settings.node_metrics.node_config(),
        name_label: settings.node_metrics.name_label.clone(),
        limit: receiver.max_body_bytes,
        subjects: bus.subjects().clone(),
        stage: stage.async_side(),
        facts: stage.facts().clone(),
        extras: Extras {
            bad_requests,
            unavailable,
            series_in,
            samples_in,
            samples,
            stored,
            dropped,
        },
        ingest: Mutex::new(Ingest {
            instances: HashMap::new(),
            unsent: VecDeque::new(),
        }),
    };
    let data = web::Data::new(shared);
    let limit = receiver.max_body_bytes;
    let path = receiver.path.clone();
    let bind_error = |source| RemoteWriteError::Bind {
        address: receiver.listen,
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
    .bind(receiver.listen)
    .map_err(bind_error)?;
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tracing::info!(%address, path = receiver.path, "remote-write receiver listening");
    Ok(stage::start(RemoteWrite {
        stage,
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

impl Staged for RemoteWrite {
    fn stage(&self) -> &Stage {
        &self.stage
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

impl Handler<Drain> for RemoteWrite {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        // A graceful stop: no new connection, the requests in hand finish.
        let server = self.server.clone();
        stage::drain(
            async move { server.stop(true).await },
            |_: &mut RemoteWrite, _| {},
        )
    }
}

/// `POST /api/v1/write`.
async fn write(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let stage = &shared.stage;
    stage.counters().received();
    let request = match proto::decode_body(&body, shared.limit) {
        Ok(request) => request,
        Err(error) => {
            shared.extras.bad_requests.incr();
            let reason = error.to_string();
            let kind = match error {
                proto::BodyError::TooLarge { .. } => RejectKind::BadContent,
                _ => RejectKind::Undecodable,
            };
            stage
                .reject("http", Reject::new(kind, reason.clone()))
                .await;
            return HttpResponse::BadRequest().body(reason);
        }
    };
    let Ingested {
        samples,
        rejects,
        health,
    } = shared.ingest(&request);
    for reject in rejects {
        stage.reject("http", reject).await;
    }
    for message in health {
        stage.publish(shared.subjects.status(STAGE), &message).await;
    }
    match shared.store(samples).await {
        Ok(()) => {
            stage.counters().accepted();
            HttpResponse::NoContent().finish()
        }
        Err(reason) => {
            shared.extras.unavailable.incr();
            HttpResponse::ServiceUnavailable().body(reason)
        }
    }
}

impl Shared {
    /// Folds a request into the instances' state; returns the encoded samples now settled,
    /// with the refusals and health changes to publish.
    fn ingest(&self, request: &WriteRequest) -> Ingested {
        let mut ingested = Ingested::default();
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
        self.extras.series_in.add(request.timeseries.len() as u64);
        self.extras.samples_in.add(samples_in);
        if let Some((count, example)) = without_instance {
            ingested.rejects.push(Reject::new(
                RejectKind::BadServer,
                format!("{count} series without an `instance` label (e.g. `{example}`): left out"),
            ));
        }
        touched.sort_unstable();
        touched.dedup();
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
                    ingested.rejects.push(Reject::new(
                        RejectKind::BadServer,
                        format!(
                            "instance `{instance_label}` has no server name: add a `{}` label to its series in Prometheus, or enable node_exporter's uname collector",
                            self.name_label
                        ),
                    ));
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
                ingested.samples.push(Unsent {
                    subject: subject.clone(),
                    id: format!("{server}:{ts_ms}"),
                    payload: Bytes::from(wire::encode(&sample)),
                });
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
            ingested.health.push(message);
        }
        self.extras.samples.add(ingested.samples.len() as u64);
        ingested
    }

    /// Stores the samples left from earlier requests, then `samples`, through the outbox,
    /// waiting for every acknowledgement.
    ///
    /// # Errors
    /// A reason in words when some were not stored (they are kept for the next request).
    async fn store(&self, samples: Vec<Unsent>) -> Result<(), String> {
        let mut queue: Vec<Unsent> = {
            let mut ingest = self.ingest.lock().expect("ingest lock");
            ingest.unsent.drain(..).collect()
        };
        queue.extend(samples);
        if queue.is_empty() {
            return Ok(());
        }
        let total = queue.len();
        // One deadline for the whole request: with the bus gone, a publish may wait for the
        // connection instead of failing, and Prometheus must get its answer in time.
        let envelopes = queue
            .iter()
            .map(|sample| {
                Envelope::encoded(sample.subject.clone(), sample.payload.clone(), true)
                    .with_msg_id(sample.id.clone())
            })
            .collect();
        let outcomes = self.stage.publish_confirmed(envelopes, ACK_TIMEOUT).await;
        let mut failed: Vec<Unsent> = Vec::new();
        let mut timed_out = false;
        for (sample, outcome) in queue.into_iter().zip(outcomes) {
            match outcome {
                Some(true) => self.extras.stored.incr(),
                Some(false) => failed.push(sample),
                None => {
                    timed_out = true;
                    failed.push(sample);
                }
            }
        }
        let mut ingest = self.ingest.lock().expect("ingest lock");
        let not_stored = failed.len();
        for sample in failed.into_iter().rev() {
            ingest.unsent.push_front(sample);
        }
        while ingest.unsent.len() > MAX_UNSENT {
            ingest.unsent.pop_front();
            self.extras.dropped.incr();
        }
        self.facts.set("unsent", ingest.unsent.len());
        drop(ingest);
        if not_stored == 0 {
            return Ok(());
        }
        let error = if timed_out {
            format!("no acknowledgement within {} s", ACK_TIMEOUT.as_secs())
        } else {
            "the stream did not store them".to_string()
        };
        tracing::warn!(not_stored, total, %error, "the bus did not store every sample: answering 503");
        Err(format!(
            "the bus did not store {not_stored} of {total} samples ({error}); they are kept and stored before the next request's"
        ))
    }
}
