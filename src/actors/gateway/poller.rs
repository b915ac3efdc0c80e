//! The poller: every `gateway.poll_interval_seconds` it asks every NATS micro service for
//! `$SRV.INFO` and `$SRV.STATS` (the standard micro protocol: one request, every instance
//! replies; replies are gathered for up to a second) and reads the JetStream streams' sizes
//! and every consumer's state, for `/metrics`, `/api/v1/model` and `/api/v1/stages`. Only
//! services of this deployment count: metadata `prefix` equal to ours, or no prefix and a
//! `fleetcast-` name.

use crate::bus::Bus;
use crate::subjects::StreamKind;
use crate::wire;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One micro service instance as last polled.
#[derive(Debug, Clone)]
pub struct ServiceSeen {
    /// Its `$SRV.INFO` reply.
    pub info: async_nats::service::Info,
    /// Its endpoints' stats from `$SRV.STATS`: name, requests, errors, processing time, data.
    pub endpoints: Vec<EndpointSeen>,
}

/// One endpoint's stats.
#[derive(Debug, Clone)]
pub struct EndpointSeen {
    /// Endpoint name.
    pub name: String,
    /// Requests handled.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Total processing time.
    pub processing: Duration,
    /// What the stage adds (its counters).
    pub data: Option<serde_json::Value>,
}

/// One JetStream consumer's state.
#[derive(Debug, Clone)]
pub struct ConsumerSeen {
    /// Stream.
    pub stream: String,
    /// Consumer name.
    pub consumer: String,
    /// Messages not yet delivered (lag).
    pub pending: u64,
    /// Delivered, not acknowledged.
    pub ack_pending: u64,
    /// Redelivered.
    pub redelivered: u64,
}

/// What the poller last read.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    /// When, unix ms (0: never).
    pub at_ms: i64,
    /// Micro service instances of this deployment.
    pub services: Vec<ServiceSeen>,
    /// Streams: (name, messages, bytes).
    pub streams: Vec<(String, u64, u64)>,
    /// Consumers.
    pub consumers: Vec<ConsumerSeen>,
    /// Polls that failed in part.
    pub errors: u64,
}

/// Sends `subject` with a reply inbox and gathers every reply: up to `wait`, or until no new
/// reply came for a tenth of it after the first.
///
/// # Errors
/// A reason in words when the request cannot be sent.
pub async fn gather(
    client: &async_nats::Client,
    subject: &str,
    wait: Duration,
) -> Result<Vec<async_nats::Message>, String> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| format!("subscribe {inbox}: {error}"))?;
    client
        .publish_with_reply(subject.to_string(), inbox, bytes::Bytes::new())
        .await
        .map_err(|error| format!("request {subject}: {error}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut gathered = Vec::new();
    loop {
        let until = if gathered.is_empty() {
            deadline
        } else {
            deadline.min(tokio::time::Instant::now() + wait / 10)
        };
        match tokio::time::timeout_at(until, replies.next()).await {
            Ok(Some(message)) => gathered.push(message),
            _ => break,
        }
    }
    let _ = replies.unsubscribe().await;
    Ok(gathered)
}

/// Reads every micro service's info and stats (those of this deployment: metadata `prefix`
/// equal to ours, or no prefix and a `fleetcast-` name).
///
/// # Errors
/// A reason in words when a request cannot be sent.
pub async fn poll_services(bus: &Bus, wait: Duration) -> Result<Vec<ServiceSeen>, String> {
    let client = bus.client();
    let prefix = bus.subjects().prefix();
    let infos = gather(client, "$SRV.INFO", wait).await?;
    let stats = gather(client, "$SRV.STATS", wait).await?;
    let mut stats_by_id: BTreeMap<String, Vec<EndpointSeen>> = BTreeMap::new();
    for reply in stats {
        let Ok(stats) = serde_json::from_slice::<async_nats::service::Stats>(&reply.payload) else {
            continue;
        };
        let endpoints = stats
            .endpoints
            .into_iter()
            .map(|endpoint| EndpointSeen {
                name: endpoint.name,
                requests: endpoint.requests as u64,
                errors: endpoint.errors as u64,
                processing: endpoint.processing_time,
                data: endpoint.data,
            })
            .collect();
        stats_by_id.insert(stats.id, endpoints);
    }
    let mut services: Vec<ServiceSeen> = infos
        .into_iter()
        .filter_map(|reply| {
            serde_json::from_slice::<async_nats::service::Info>(&reply.payload).ok()
        })
        .filter(|info| match info.metadata.get("prefix") {
            Some(theirs) => theirs == prefix,
            None => info.name.starts_with("fleetcast"),
        })
        .map(|info| ServiceSeen {
            endpoints: stats_by_id.remove(&info.id).unwrap_or_default(),
            info,
        })
        .collect();
    services.sort_by(|a, b| (&a.info.name, &a.info.id).cmp(&(&b.info.name, &b.info.id)));
    Ok(services)
}

/// Reads the streams' sizes and every consumer's state.
async fn poll_jetstream(bus: &Bus, polled: &mut Polled) -> Result<(), String> {
    let jetstream = bus.jetstream();
    for kind in StreamKind::ALL {
        let name = bus.subjects().stream_name(kind);
        let mut stream = match jetstream.get_stream(&name).await {
            Ok(stream) => stream,
            Err(_) => continue,
        };
        let info = stream.info().await.map_err(|e| format!("{name}: {e}"))?;
        polled
            .streams
            .push((name.clone(), info.state.messages, info.state.bytes));
        let mut consumers = stream.consumers();
        while let Some(consumer) = consumers.next().await {
            let consumer = consumer.map_err(|e| format!("{name} consumers: {e}"))?;
            polled.consumers.push(ConsumerSeen {
                stream: name.clone(),
                consumer: consumer.name,
                pending: consumer.num_pending,
                ack_pending: consumer.num_ack_pending as u64,
                redelivered: consumer.num_redelivered as u64,
            });
        }
    }
    Ok(())
}

/// The poller: every `interval`, reads services and JetStream into `polled`.
pub async fn poll(bus: Bus, polled: Arc<RwLock<Polled>>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut next = Polled::default();
        let errors = polled.read().map_or(0, |held| held.errors);
        next.errors = errors;
        match poll_services(&bus, Duration::from_secs(1).min(interval)).await {
            Ok(services) => next.services = services,
            Err(error) => {
                next.errors += 1;
                tracing::debug!(stage = super::STAGE, %error, "polling services failed");
            }
        }
        if let Err(error) = poll_jetstream(&bus, &mut next).await {
            next.errors += 1;
            tracing::debug!(stage = super::STAGE, %error, "polling jetstream failed");
        }
        next.at_ms = wire::now_ms();
        *polled
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }
}
