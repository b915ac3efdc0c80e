//! `[gateway]`: where the HTTP server listens, who may call it, and how much it keeps.
//!
//! The section lives beside the actor (the settings file only names it), so the gateway's keys,
//! defaults and checks are read in one place.

use serde::{Deserialize, Serialize};

/// `[gateway]`: the HTTP API, push updates, `/metrics` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Run the gateway inside `fleetcast up`.
    pub enabled: bool,
    /// Address and port to listen on (`127.0.0.1:8000`; `0.0.0.0:8000` for every interface).
    pub bind: String,
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
            bind: "127.0.0.1:8000".into(),
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

impl GatewaySettings {
    /// Appends one line per bad value, naming its key, to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        let mut check = |ok: bool, key: &str, why: String| {
            if !ok {
                problems.push(format!("gateway.{key}: {why}"));
            }
        };
        check(
            self.bind.parse::<std::net::SocketAddr>().is_ok(),
            "bind",
            format!(
                "`{}` is not an address:port such as 127.0.0.1:8000",
                self.bind
            ),
        );
        check(
            self.api_key.is_empty() || self.api_key.len() >= 8,
            "api_key",
            "must be empty (no auth) or at least 8 characters".into(),
        );
        for origin in &self.cors_origins {
            check(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                "cors_origins",
                format!("`{origin}` must be `*` or start with http:// or https://"),
            );
        }
        check(
            (1..=64).contains(&self.workers),
            "workers",
            format!("{} is outside 1–64", self.workers),
        );
        check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            "max_body_bytes",
            format!("{} is outside 1024–1073741824", self.max_body_bytes),
        );
        check(
            (1..=10_000).contains(&self.recent_steps),
            "recent_steps",
            format!("{} is outside 1–10000", self.recent_steps),
        );
        check(
            (1..=3600).contains(&self.poll_interval_seconds),
            "poll_interval_seconds",
            format!("{} is outside 1–3600", self.poll_interval_seconds),
        );
        check(
            (10..=60_000).contains(&self.push_interval_ms),
            "push_interval_ms",
            format!("{} is outside 10–60000", self.push_interval_ms),
        );
        check(
            (1..=10_000_000).contains(&self.history_limit),
            "history_limit",
            format!("{} is outside 1–10000000", self.history_limit),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults pass their own checks; bad values are reported with their keys.
    #[test]
    fn bad_values_name_their_keys() {
        let mut problems = Vec::new();
        GatewaySettings::default().check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let settings = GatewaySettings {
            bind: "localhost".into(),
            api_key: "short".into(),
            cors_origins: vec!["example.com".into()],
            workers: 0,
            ..GatewaySettings::default()
        };
        settings.check(&mut problems);
        for key in [
            "gateway.bind",
            "gateway.api_key",
            "gateway.cors_origins",
            "gateway.workers",
        ] {
            assert!(
                problems.iter().any(|line| line.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
    }
}
