//! Test helpers: a real nats-server per test (free loopback port, JetStream in a temporary
//! folder, killed on drop) and settings pointing at it.

#![allow(dead_code)]

pub mod browser;
pub mod programs;

use fleetcast::actors::stage::{Counters, StageCounters};
use fleetcast::bus::{Bus, NatsServer, find_server_binary};
use fleetcast::settings::Settings;
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
        let binary = find_server_binary("")
            .unwrap_or_else(|error| panic!("integration tests need nats-server: {error}"));
        let dir = tempfile::tempdir().expect("temporary folder");
        let server = NatsServer::start(&binary, 0, dir.path()).expect("nats-server starts");
        let mut settings = Settings::default();
        settings.nats.url = server.url().to_string();
        settings.nats.embedded = false;
        settings.nats.data_dir = dir.path().to_path_buf();
        TestNats {
            server,
            settings,
            _dir: dir,
        }
    }

    /// A connected bus with the streams created.
    pub async fn bus(&self) -> Bus {
        let bus = Bus::connect(&self.settings.nats).await.expect("connect");
        bus.ensure_streams().await.expect("streams");
        bus
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
