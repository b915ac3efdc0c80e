//! `[nats]`, `[time]` and `[log]`: the bus, the step, the logs. What the file says is what
//! the program uses, so one type serves both stages; `check` reports bad values.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The local URL `up` serves itself with a private nats-server by default.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `[nats]`: where the bus is and what to do when it is not there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL, or the URLs of a cluster's nodes separated by commas (the client connects
    /// to one and moves to another when it goes).
    pub url: String,
    /// Prefix of every subject and stream name.
    pub prefix: String,
    /// Start a private nats-server when nothing answers at a loopback URL (127.0.0.1 or
    /// localhost).
    pub embedded: bool,
    /// JetStream storage folder of the private server.
    pub data_dir: PathBuf,
    /// nats-server binary; empty means `.tools/bin/nats-server`, then `PATH`, then
    /// `/usr/sbin/nats-server`.
    pub server_bin: String,
    /// Messages a subscription may buffer before the client drops (slow consumer).
    pub subscription_capacity: usize,
    /// Replicas of each JetStream stream: 1 on a single server, 3 on a three-node cluster.
    pub stream_replicas: usize,
    /// Forecasts the FORECASTS stream keeps per server: how many steps the risk scorer and
    /// the alert router may fall behind (or stay stopped) before the oldest are gone.
    pub forecast_history: i64,
    /// Risk scores the RISK stream keeps per server (about two per step): how far the alert
    /// router may fall behind.
    pub risk_history: i64,
    /// How long the risk scorer's and alert router's durable consumers wait for an
    /// acknowledgement before they hand a message out again, seconds.
    pub ack_wait_seconds: u64,
    /// Messages each of those consumers hands out before it waits for acknowledgements.
    pub max_ack_pending: i64,
    /// A nats-server configuration file the private server of `up` is started with (e.g.
    /// `nats/auth.conf` for the per-actor users); empty: none, anyone may connect.
    pub server_config: String,
    /// Credentials per [`BusRole`] (`[nats.users.<role>]`): a role with a user connects as it,
    /// on a connection of its own; a role without connects anonymously on the shared one.
    pub users: BTreeMap<String, BusUser>,
    /// TLS to the bus (`[nats.tls]`).
    pub tls: BusTls,
}

/// `[nats.tls]`: TLS to the bus, as the cluster configs of `nats/cluster/` require. Without
/// a CA file the client uses TLS only when the server asks for it (or the URL is `tls://`),
/// checking it against the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusTls {
    /// PEM file of the certificate authority the servers' certificates are checked against
    /// (`scripts/nats-certs` writes `ca.pem`); when set, every connection requires TLS.
    pub ca_file: String,
    /// PEM file of a client certificate, for a server that verifies its clients; empty: none.
    pub cert_file: String,
    /// The client certificate's key (PEM).
    pub key_file: String,
}

/// Who a connection to the bus is: one role per actor, `client` (read-only: `tail`,
/// `status`), `operator` (client plus `scenario` and `model load`) and `admin` (creates the
/// JetStream streams). `nats/auth.conf` grants each exactly its subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BusRole {
    /// Creates and updates the streams (`up`, `streams`).
    Admin,
    /// Reads: `tail`, `status`, subscribers.
    Client,
    /// Reads and steers: `scenario`, `model load`.
    Operator,
    /// The synthetic fleet.
    Generator,
    /// The per-server windows.
    WindowKeeper,
    /// The predictor workers.
    Predictor,
    /// The risk scorer.
    RiskScorer,
    /// The alert router.
    AlertRouter,
    /// The HTTP gateway.
    Gateway,
    /// The node_exporter scraper.
    NodeExporter,
    /// The remote-write receiver.
    RemoteWrite,
}

impl BusRole {
    /// Every role.
    pub const ALL: [BusRole; 11] = [
        BusRole::Admin,
        BusRole::Client,
        BusRole::Operator,
        BusRole::Generator,
        BusRole::WindowKeeper,
        BusRole::Predictor,
        BusRole::RiskScorer,
        BusRole::AlertRouter,
        BusRole::Gateway,
        BusRole::NodeExporter,
        BusRole::RemoteWrite,
    ];

    /// Its key under `[nats.users]`, which is also its user name in `nats/auth.conf` and its
    /// inbox prefix (`_INBOX_<key>`).
    pub fn key(self) -> &'static str {
        match self {
            BusRole::Admin => "admin",
            BusRole::Client => "client",
            BusRole::Operator => "operator",
            BusRole::Generator => "generator",
            BusRole::WindowKeeper => "window_keeper",
            BusRole::Predictor => "predictor",
            BusRole::RiskScorer => "risk_scorer",
            BusRole::AlertRouter => "alert_router",
            BusRole::Gateway => "gateway",
            BusRole::NodeExporter => "node_exporter",
            BusRole::RemoteWrite => "remote_write",
        }
    }
}

/// `[nats.users.<role>]`: one NATS user. The password is best given by the environment
/// (`FLEETCAST_NATS__USERS__<ROLE>__PASSWORD`, the variable `nats/auth.conf` reads too), so
/// no secret sits in a file; `fleetcast config` prints it as `***`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusUser {
    /// The user name.
    pub user: String,
    /// Its password.
    #[serde(serialize_with = "redact")]
    pub password: String,
}

fn redact<S: serde::Serializer>(password: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if password.is_empty() { "" } else { "***" })
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.into(),
            prefix: "fleetcast".into(),
            embedded: true,
            data_dir: PathBuf::from(".data/nats"),
            server_bin: String::new(),
            subscription_capacity: 1 << 20,
            stream_replicas: 1,
            forecast_history: 16,
            risk_history: 64,
            ack_wait_seconds: 10,
            max_ack_pending: 20_000,
            server_config: String::new(),
            users: BTreeMap::new(),
            tls: BusTls::default(),
        }
    }
}

impl NatsSettings {
    /// The credentials of `role`, when `[nats.users.<role>]` names a user.
    pub fn user(&self, role: BusRole) -> Option<&BusUser> {
        self.users
            .get(role.key())
            .filter(|user| !user.user.is_empty())
    }

    pub(super) fn check(&self, problems: &mut Problems) {
        for (key, user) in &self.users {
            let name = format!("nats.users.{key}");
            if !BusRole::ALL.iter().any(|role| role.key() == key) {
                problems.add(
                    &name,
                    format!(
                        "`{key}` is not a role; valid: {}",
                        BusRole::ALL.map(BusRole::key).join(", ")
                    ),
                );
                continue;
            }
            problems.check(
                user.user.is_empty() || !user.password.is_empty(),
                &format!("{name}.password"),
                || {
                    format!(
                        "user `{}` has no password (set FLEETCAST_NATS__USERS__{}__PASSWORD)",
                        user.user,
                        key.to_uppercase()
                    )
                },
            );
            problems.check(
                !user.user.is_empty() || user.password.is_empty(),
                &format!("{name}.user"),
                || "a password without a user".to_string(),
            );
        }
        for (name, path) in [
            ("nats.server_config", &self.server_config),
            ("nats.tls.ca_file", &self.tls.ca_file),
            ("nats.tls.cert_file", &self.tls.cert_file),
            ("nats.tls.key_file", &self.tls.key_file),
        ] {
            problems.check(
                path.is_empty() || std::path::Path::new(path).is_file(),
                name,
                || format!("`{path}` is not a file"),
            );
        }
        problems.check(
            self.tls.cert_file.is_empty() == self.tls.key_file.is_empty(),
            "nats.tls.key_file",
            || "a client certificate needs its key, and a key its certificate".to_string(),
        );
        for part in self.url.split(',').map(str::trim) {
            problems.check(
                (part.starts_with("nats://") || part.starts_with("tls://"))
                    && crate::bus::server_addrs(part).is_ok(),
                "nats.url",
                || format!("`{part}` must be a server URL starting with nats:// or tls://"),
            );
        }
        problems.check(
            crate::catalog::is_valid_server_name(&self.prefix),
            "nats.prefix",
            || {
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it is a subject token)",
                    self.prefix
                )
            },
        );
        problems.check(
            self.subscription_capacity >= 1024,
            "nats.subscription_capacity",
            || {
                format!(
                    "{} is below the minimum of 1024",
                    self.subscription_capacity
                )
            },
        );
        problems.check(
            (1..=5).contains(&self.stream_replicas),
            "nats.stream_replicas",
            || format!("{} is outside 1–5", self.stream_replicas),
        );
        for (name, value) in [
            ("nats.forecast_history", self.forecast_history),
            ("nats.risk_history", self.risk_history),
        ] {
            problems.check((1..=10_000).contains(&value), name, || {
                format!("{value} is outside 1–10000")
            });
        }
        problems.check(
            (1..=3600).contains(&self.ack_wait_seconds),
            "nats.ack_wait_seconds",
            || format!("{} is outside 1–3600", self.ack_wait_seconds),
        );
        problems.check(
            (1..=1_000_000).contains(&self.max_ack_pending),
            "nats.max_ack_pending",
            || format!("{} is outside 1–1000000", self.max_ack_pending),
        );
    }
}

/// `[time]`: the model's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeSettings {
    /// Length of one step in seconds (the model's resolution).
    pub step_seconds: u32,
}

impl Default for TimeSettings {
    fn default() -> Self {
        Self { step_seconds: 300 }
    }
}

impl TimeSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            (60..=86_400).contains(&self.step_seconds) && 86_400 % self.step_seconds == 0,
            "time.step_seconds",
            || {
                format!(
                    "{} must divide a day and lie in 60–86400",
                    self.step_seconds
                )
            },
        );
    }
}

/// `[log]`: what the logs say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter, e.g. `info` or `fleetcast=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl LogSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            tracing_subscriber::EnvFilter::try_new(&self.level).is_ok(),
            "log.level",
            || format!("`{}` is not a tracing filter", self.level),
        );
    }
}
