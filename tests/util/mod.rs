//! Test helpers: a real nats-server per test (free loopback port, JetStream in a temporary
//! folder, killed on drop) and settings pointing at it.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod programs;

use fleetcast::actors::stage::{Counters, StageCounters};
use fleetcast::bus::{Bus, ClusterNode, NatsServer, find_server_binary, password_env};
use fleetcast::settings::{BusRole, BusUser, Settings};
use futures::StreamExt;
use std::time::Duration;

/// A private nats-server and settings that point at it.
pub struct TestNats {
    /// The server process (killed on drop).
    pub server: NatsServer,
    /// Settings with `nats.url` set to the server and a unique prefix.
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

impl TestNats {
    /// Starts nats-server with JetStream. Panics, loudly, when no binary is installed:
    /// these tests never skip.
    pub fn start() -> TestNats {
        TestNats::launch(Settings::default(), None)
    }

    /// Starts nats-server with `nats/auth.conf` (one user per actor, no anonymous access);
    /// the settings carry every role's user with a password made for this test, which the
    /// server gets through its environment as `fleetcast up` gives it.
    pub fn start_authenticated() -> TestNats {
        TestNats::launch(authenticated_settings(), Some(&repo_file("nats/auth.conf")))
    }

    /// Starts nats-server on a free port in a temporary folder, with `config` when given and
    /// the passwords of `settings`' users in its environment, and points `settings` at it.
    fn launch(mut settings: Settings, config: Option<&std::path::Path>) -> TestNats {
        let dir = tempfile::tempdir().expect("temporary folder");
        let server = launch(&settings, config, 0, dir.path(), None, &[]);
        settings.nats.url = server.url().to_string();
        settings.nats.embedded = false;
        settings.nats.data_dir = dir.path().to_path_buf();
        TestNats {
            server,
            settings,
            _dir: dir,
        }
    }

    /// The server's log (`nats-server.log` in its data folder), e.g. to find permission
    /// violations.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.settings.nats.data_dir.join("nats-server.log"))
            .unwrap_or_default()
    }

    /// A connected bus with the streams created.
    pub async fn bus(&self) -> Bus {
        let bus = Bus::connect(&self.settings.nats).await.expect("connect");
        bus.ensure_streams().await.expect("streams");
        bus
    }
}

/// A file of the repository, by its path from the root.
pub fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Makes a cluster's TLS files in `dir` with `scripts/nats-certs` (a CA, and the nodes'
/// certificate for `hosts`, localhost and 127.0.0.1) and returns the environment the node
/// configs read them from (`NATS_TLS_CERT_FILE`, `NATS_TLS_KEY_FILE`, `NATS_TLS_CA_FILE`).
pub fn nats_certs(dir: &std::path::Path, hosts: &[&str]) -> Vec<(String, String)> {
    let made = std::process::Command::new(repo_file("scripts/nats-certs"))
        .arg(dir)
        .args(hosts)
        .output()
        .expect("scripts/nats-certs runs");
    assert!(
        made.status.success(),
        "scripts/nats-certs: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    [
        ("NATS_TLS_CERT_FILE", "server.pem"),
        ("NATS_TLS_KEY_FILE", "server-key.pem"),
        ("NATS_TLS_CA_FILE", "ca.pem"),
    ]
    .map(|(name, file)| {
        (
            name.to_string(),
            dir.join(file).to_string_lossy().into_owned(),
        )
    })
    .to_vec()
}

/// Default settings with every role a user of its own and a password made for this test
/// (what `nats/auth.conf` expects).
pub fn authenticated_settings() -> Settings {
    let mut settings = Settings::default();
    for role in BusRole::ALL {
        settings.nats.users.insert(
            role.key().to_string(),
            BusUser {
                user: role.key().to_string(),
                password: format!("pw-{}-{}", role.key(), std::process::id()),
            },
        );
    }
    settings
}

/// Starts one nats-server (JetStream on) on loopback `port` (0: a free one) with its data in
/// `data_dir`, `config` when given, the passwords of `settings`' users and `env` in its
/// environment, and as a cluster node when `cluster` is given. Panics, loudly, when no binary is
/// installed or the server does not start: these tests never skip.
pub fn launch(
    settings: &Settings,
    config: Option<&std::path::Path>,
    port: u16,
    data_dir: &std::path::Path,
    cluster: Option<&ClusterNode>,
    env: &[(String, String)],
) -> NatsServer {
    let binary = find_server_binary("")
        .unwrap_or_else(|error| panic!("integration tests need nats-server: {error}"));
    NatsServer::start_node(
        &binary,
        port,
        data_dir,
        config,
        &[password_env(&settings.nats), env.to_vec()].concat(),
        cluster,
    )
    .unwrap_or_else(|error| {
        let log = std::fs::read_to_string(data_dir.join("nats-server.log")).unwrap_or_default();
        panic!("nats-server starts (config {config:?}, port {port}): {error}\n{log}")
    })
}

impl Drop for TestNats {
    /// A failing test on an authenticated server shows what the server refused.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for line in self
                .server_log()
                .lines()
                .filter(|l| l.contains("Violation"))
            {
                eprintln!("nats-server: {line}");
            }
        }
    }
}

/// Collects up to `count` messages from `subscriber`, waiting at most `timeout` in all.
pub async fn collect(
    subscriber: &mut async_nats::Subscriber,
    count: usize,
    timeout: Duration,
) -> Vec<async_nats::Message> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while messages.len() < count {
        match tokio::time::timeout_at(deadline, subscriber.next()).await {
            Ok(Some(message)) => messages.push(message),
            _ => break,
        }
    }
    messages
}

/// Waits (on the counters' own change notifications, not on a clock) until `done` holds, at
/// most 10 s; returns the counters then, or the last ones seen.
pub async fn wait_counters(counters: &StageCounters, done: impl Fn(&Counters) -> bool) -> Counters {
    match counters.wait_until(done, Duration::from_secs(10)).await {
        Ok(counters) | Err(counters) => counters,
    }
}

/// Whether some instance of micro service `name` answers `$SRV.PING.<name>` (the server says
/// at once when nobody listens).
pub async fn answers(bus: &Bus, name: &str) -> bool {
    match bus
        .client()
        .request(format!("$SRV.PING.{name}"), "".into())
        .await
    {
        Ok(_) => true,
        Err(error) => {
            assert_eq!(
                error.kind(),
                async_nats::client::RequestErrorKind::NoResponders,
                "{error}"
            );
            false
        }
    }
}

/// Panics unless every pipeline stage's micro service answers `$SRV.PING` (`when`: at what
/// point of the test, for the message).
pub async fn assert_pipeline_answers(bus: &Bus, when: &str) {
    for name in [
        "fleetcast-generator",
        "fleetcast-window-keeper",
        "fleetcast-predictor",
        "fleetcast-risk-scorer",
        "fleetcast-alert-router",
    ] {
        bus.client()
            .request(format!("$SRV.PING.{name}"), "".into())
            .await
            .unwrap_or_else(|error| panic!("{name} does not answer $SRV.PING {when}: {error}"));
    }
}

/// Sends `subject` (a `$SRV` verb) and collects exactly `count` JSON answers (waiting at most
/// 10 s in all): discovery waits for the answers it expects, not for a quiet period.
pub async fn ask(bus: &Bus, subject: &str, count: usize) -> Vec<serde_json::Value> {
    let inbox = bus.client().new_inbox();
    let mut replies = bus.client().subscribe(inbox.clone()).await.unwrap();
    bus.client()
        .publish_with_reply(subject.to_string(), inbox, "".into())
        .await
        .unwrap();
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while answers.len() < count {
        let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            break;
        };
        answers.push(serde_json::from_slice(&reply.payload).expect("a JSON answer"));
    }
    answers
}
