//! `[gateway]`: where the HTTP server listens, who may call it, and how much it keeps. The
//! listen address becomes a [`SocketAddr`].

use super::Problems;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `[gateway]` as the file and the environment say it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGatewaySettings {
    /// See [`GatewaySettings::enabled`].
    pub enabled: bool,
    /// `address:port`.
    pub bind: String,
    /// See [`GatewaySettings::api_key`].
    pub api_key: String,
    /// See [`GatewaySettings::metrics_requires_key`].
    pub metrics_requires_key: bool,
    /// See [`GatewaySettings::cors_origins`].
    pub cors_origins: Vec<String>,
    /// See [`GatewaySettings::workers`].
    pub workers: usize,
    /// See [`GatewaySettings::max_body_bytes`].
    pub max_body_bytes: usize,
    /// See [`GatewaySettings::feed_rate_per_minute`].
    pub feed_rate_per_minute: u32,
    /// See [`GatewaySettings::recent_steps`].
    pub recent_steps: usize,
    /// See [`GatewaySettings::poll_interval_seconds`].
    pub poll_interval_seconds: u64,
    /// See [`GatewaySettings::push_interval_ms`].
    pub push_interval_ms: u64,
    /// See [`GatewaySettings::history_limit`].
    pub history_limit: usize,
}

impl Default for RawGatewaySettings {
    fn default() -> Self {
        let defaults = GatewaySettings::default();
        Self {
            enabled: defaults.enabled,
            bind: defaults.bind.to_string(),
            api_key: defaults.api_key,
            metrics_requires_key: defaults.metrics_requires_key,
            cors_origins: defaults.cors_origins,
            workers: defaults.workers,
            max_body_bytes: defaults.max_body_bytes,
            feed_rate_per_minute: defaults.feed_rate_per_minute,
            recent_steps: defaults.recent_steps,
            poll_interval_seconds: defaults.poll_interval_seconds,
            push_interval_ms: defaults.push_interval_ms,
            history_limit: defaults.history_limit,
        }
    }
}

/// `[gateway]`, validated: the HTTP API, push updates, `/metrics` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewaySettings {
    /// Run the gateway inside `fleetcast up`.
    pub enabled: bool,
    /// Address and port to listen on (`127.0.0.1:8000`; `0.0.0.0:8000` for every interface).
    pub bind: SocketAddr,
    /// When not empty, every request but `/health`, the dashboard's static files and (unless
    /// `metrics_requires_key`) `/metrics` must carry this key in `X-API-Key`.
    pub api_key: String,
    /// Whether `/metrics` needs the API key too (Prometheus then sends it as a header).
    pub metrics_requires_key: bool,
    /// Origins allowed to call the API from a browser page served elsewhere (CORS), e.g.
    /// `["http://localhost:3000"]`; `["*"]` allows any. Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// HTTP worker threads.
    pub workers: usize,
    /// Largest request body accepted, bytes (a bigger `POST /feed/data` gets 413).
    pub max_body_bytes: usize,
    /// `POST /feed/data` requests allowed per client address per minute (a token bucket of
    /// this size refilled over a minute); 0 turns the limit off.
    pub feed_rate_per_minute: u32,
    /// Recent steps of each server's actual values kept for its page (step means).
    pub recent_steps: usize,
    /// Seconds between reads of the stages' `$SRV.STATS` / `$SRV.INFO` and the JetStream
    /// consumers' state, which `/metrics` and `/api/v1/model` serve from.
    pub poll_interval_seconds: u64,
    /// Milliseconds over which risk and forecast changes are gathered into one push event.
    pub push_interval_ms: u64,
    /// Most alert events one history request reads from the alert stream.
    pub history_limit: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_key: String::new(),
            metrics_requires_key: false,
            cors_origins: Vec::new(),
            workers: 2,
            max_body_bytes: 8 << 20,
            feed_rate_per_minute: 120,
            recent_steps: 48,
            poll_interval_seconds: 5,
            push_interval_ms: 500,
            history_limit: 100_000,
        }
    }
}

impl RawGatewaySettings {
    pub(super) fn validate(self, problems: &mut Problems) -> GatewaySettings {
        let bind = self.bind.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add(
                "gateway.bind",
                format!(
                    "`{}` is not an address:port such as 127.0.0.1:8000",
                    self.bind
                ),
            );
            GatewaySettings::default().bind
        });
        problems.check(
            self.api_key.is_empty() || self.api_key.len() >= 8,
            "gateway.api_key",
            || "must be empty (no auth) or at least 8 characters".into(),
        );
        for origin in &self.cors_origins {
            problems.check(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                "gateway.cors_origins",
                || format!("`{origin}` must be `*` or start with http:// or https://"),
            );
        }
        problems.check((1..=64).contains(&self.workers), "gateway.workers", || {
            format!("{} is outside 1–64", self.workers)
        });
        problems.check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            "gateway.max_body_bytes",
            || format!("{} is outside 1024–1073741824", self.max_body_bytes),
        );
        problems.check(
            (1..=10_000).contains(&self.recent_steps),
            "gateway.recent_steps",
            || format!("{} is outside 1–10000", self.recent_steps),
        );
        problems.check(
            (1..=3600).contains(&self.poll_interval_seconds),
            "gateway.poll_interval_seconds",
            || format!("{} is outside 1–3600", self.poll_interval_seconds),
        );
        problems.check(
            (10..=60_000).contains(&self.push_interval_ms),
            "gateway.push_interval_ms",
            || format!("{} is outside 10–60000", self.push_interval_ms),
        );
        problems.check(
            (1..=10_000_000).contains(&self.history_limit),
            "gateway.history_limit",
            || format!("{} is outside 1–10000000", self.history_limit),
        );
        GatewaySettings {
            enabled: self.enabled,
            bind,
            api_key: self.api_key,
            metrics_requires_key: self.metrics_requires_key,
            cors_origins: self.cors_origins,
            workers: self.workers,
            max_body_bytes: self.max_body_bytes,
            feed_rate_per_minute: self.feed_rate_per_minute,
            recent_steps: self.recent_steps,
            poll_interval_seconds: self.poll_interval_seconds,
            push_interval_ms: self.push_interval_ms,
            history_limit: self.history_limit,
        }
    }
}
