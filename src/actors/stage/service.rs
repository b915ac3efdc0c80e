//! Every stage instance is a NATS micro service (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`), so
//! `nats micro ls`, `fleetcast status` or any client can list and inspect every running
//! worker.
//!
//! - **Name** `fleetcast-<stage>` in kebab case (`fleetcast-risk-scorer`), version the crate's,
//!   one service id per instance (several predictor workers are several instances).
//! - **Metadata** (`$SRV.INFO`): [`META_STAGE`], [`META_INSTANCE`], [`META_PREFIX`] and what
//!   the stage adds at start (a predictor its [`FACT_MODEL`]).
//! - **Endpoints**: `report` on `<prefix>.control.report.<stage>.<service id>` (one subject
//!   per instance), answered with the instance's [`StageReport`] (MessagePack), plus the
//!   stage's own (the generator's `scenario`).
//! - **Stats** (`$SRV.STATS`): the `report` endpoint's `data` is the same [`StageReport`] as
//!   JSON, read from the shared counters and facts at the moment of the request.

use super::counters::StageCounters;
use crate::bus::{Bus, headers};
use crate::wire::{self, SCHEMA_VERSION, StageReport};
use async_nats::service::{self, ServiceExt};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Metadata key: the stage (`risk_scorer`).
pub const META_STAGE: &str = "stage";
/// Metadata key: the instance (`<host>-<pid>`, a predictor's worker id).
pub const META_INSTANCE: &str = "instance";
/// Metadata key: the deployment's subject prefix, so two deployments on one server stay apart.
pub const META_PREFIX: &str = "prefix";
/// Metadata and fact key: the model a predictor serves (`name version`).
pub const FACT_MODEL: &str = "model";
/// Fact key: the window keeper's warm-up, percent.
pub const FACT_WARMUP_PCT: &str = "warmup_pct";
/// Fact key: servers whose window is ready, of those tracked (`ready/tracked`).
pub const FACT_SERVERS_READY: &str = "servers_ready";
/// The endpoint every stage service has.
pub const REPORT_ENDPOINT: &str = "report";

/// What a stage says about itself beyond its counters (the model it serves, its scenario,
/// its warm-up), shared between the actor that sets them and the service that reports them.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    inner: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Facts {
    /// Sets fact `key` to `value`.
    pub fn set(&self, key: &str, value: impl ToString) {
        self.inner
            .lock()
            .expect("facts lock")
            .insert(key.to_string(), value.to_string());
    }

    /// Every fact now.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.inner.lock().expect("facts lock").clone()
    }
}

/// Who a stage instance is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stage (`risk_scorer`).
    pub stage: &'static str,
    /// The instance (`<host>-<pid>`, or a predictor's worker id).
    pub instance: String,
    /// The deployment's subject prefix.
    pub prefix: String,
}

impl Identity {
    /// The micro service's name: `fleetcast-<stage>` in kebab case.
    pub fn service_name(&self) -> String {
        format!("fleetcast-{}", self.stage.replace('_', "-"))
    }

    /// The instance's report, now.
    pub fn report(&self, counters: &StageCounters, facts: &Facts) -> StageReport {
        StageReport {
            v: SCHEMA_VERSION,
            stage: self.stage.to_string(),
            instance: self.instance.clone(),
            prefix: self.prefix.clone(),
            at_ms: wire::now_ms(),
            counters: counters.snapshot().to_map(),
            facts: facts.snapshot(),
        }
    }
}

/// This process's default instance name: `<hostname>-<pid>`.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// A running stage service; stopped by [`StageService::stop`] or on drop.
#[derive(Debug)]
pub struct StageService {
    /// `None` once stopped.
    service: std::sync::Mutex<Option<service::Service>>,
    id: String,
}

/// Why a stage service could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the nats micro service {name}")]
pub struct ServiceError {
    /// The service name.
    pub name: String,
    /// What the client said.
    #[source]
    pub source: async_nats::Error,
}

impl StageService {
    /// Starts the service for `identity` on the bus's connection, with `metadata` added to
    /// the standard keys and the `report` endpoint (answered by a task of its own) plus one
    /// endpoint per `(name, subject)` in `endpoints`, returned in that order for the actor
    /// to serve.
    ///
    /// # Errors
    /// [`ServiceError`] when the service or an endpoint cannot subscribe.
    pub async fn start(
        bus: &Bus,
        identity: &Identity,
        description: &str,
        metadata: &BTreeMap<String, String>,
        counters: StageCounters,
        facts: Facts,
        endpoints: &[(String, String)],
    ) -> Result<(StageService, Vec<service::endpoint::Endpoint>), ServiceError> {
        let name = identity.service_name();
        let failed = |source: async_nats::Error| ServiceError {
            name: name.clone(),
            source,
        };
        let mut all_metadata: HashMap<String, String> = metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        all_metadata.insert(META_STAGE.into(), identity.stage.into());
        all_metadata.insert(META_INSTANCE.into(), identity.instance.clone());
        all_metadata.insert(META_PREFIX.into(), identity.prefix.clone());
        let stats_identity = identity.clone();
        let stats_counters = counters.clone();
        let stats_facts = facts.clone();
        let service = bus
            .client()
            .service_builder()
            .description(description)
            .metadata(all_metadata)
            .stats_handler(move |endpoint, _| {
                if endpoint == REPORT_ENDPOINT {
                    serde_json::to_value(stats_identity.report(&stats_counters, &stats_facts))
                        .unwrap_or_default()
                } else {
                    serde_json::Value::Null
                }
            })
            .start(name.as_str(), env!("CARGO_PKG_VERSION"))
            .await
            .map_err(failed)?;
        let id = service.info().await.id;
        let mut report = service
            .endpoint_builder()
            .name(REPORT_ENDPOINT)
            .add(bus.subjects().stage_report(identity.stage, &id))
            .await
            .map_err(failed)?;
        let mut served = Vec::with_capacity(endpoints.len());
        for (endpoint, subject) in endpoints {
            served.push(
                service
                    .endpoint_builder()
                    .name(endpoint)
                    .add(subject.as_str())
                    .await
                    .map_err(failed)?,
            );
        }
        // Make sure every subscription is on the server before anyone is told we are up.
        crate::bus::round_trip(bus.client())
            .await
            .map_err(|error| failed(error.into()))?;
        let identity = identity.clone();
        tokio::spawn(async move {
            while let Some(request) = report.next().await {
                let payload = wire::encode(&identity.report(&counters, &facts));
                let _ = request
                    .respond_with_headers(Ok(payload.into()), headers())
                    .await;
            }
        });
        Ok((
            StageService {
                service: std::sync::Mutex::new(Some(service)),
                id,
            },
            served,
        ))
    }

    /// The service id (unique per instance).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops answering `$SRV` requests and closes the endpoints (their streams end).
    pub fn stop(&self) {
        let stopping = self.service.lock().expect("service lock").take();
        if let Some(service) = stopping {
            // `stop` does not wait on anything: it signals the endpoints and aborts the
            // verb handler.
            let _ = futures::FutureExt::now_or_never(service.stop());
        }
    }
}

impl Drop for StageService {
    fn drop(&mut self) {
        self.stop();
    }
}
