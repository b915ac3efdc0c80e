//! Push updates: Server-Sent Events at `/api/v1/events`.
//!
//! The gateway actor turns what changed into events and [`Push::send`]s each one once, as a
//! finished SSE frame, to a broadcast channel; every connected client reads the same frames
//! (fan-out costs one clone of a reference-counted buffer per client). Events:
//!
//! - `hello` (on connect): `{version, servers}` — fetch the state you need, then apply events.
//! - `risk`: `{servers: [{server, profile, score, level, sample_ms, forecast_status}]}`,
//!   the servers whose risk changed in the last `gateway.push_interval_ms`.
//! - `forecast`: `{servers: [{server, origin_s, model, model_version}]}`, servers with a new
//!   forecast in that interval (a page showing one of them refetches it).
//! - `alert`: one alert event (`AlertEvent` as in `nats/SUBJECTS.md`), as it happens.
//! - `summary`: the fleet summary (`FleetSummary`), as published.
//! - `status`: a stage's status (`StageStatus`: the window keeper's warm-up).
//! - `resync`: `{missed}` — this client fell behind and lost events; refetch.
//!
//! A comment line is sent every 15 s so proxies keep the connection open.

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// Frames a slow client may fall behind by before it is told to resync.
const CHANNEL_CAPACITY: usize = 4096;

/// Seconds between keep-alive comments.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The push channel: one sender (the gateway actor), any number of SSE clients.
#[derive(Debug)]
pub struct Push {
    sender: broadcast::Sender<Bytes>,
    sequence: AtomicU64,
    clients: Arc<AtomicUsize>,
    sent: AtomicU64,
}

impl Default for Push {
    fn default() -> Self {
        Push::new()
    }
}

impl Push {
    /// A channel with no client yet.
    pub fn new() -> Push {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Push {
            sender,
            sequence: AtomicU64::new(0),
            clients: Arc::new(AtomicUsize::new(0)),
            sent: AtomicU64::new(0),
        }
    }

    /// Sends event `name` with `data` (as JSON) to every connected client.
    pub fn send(&self, name: &str, data: &impl Serialize) {
        let id = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self.sender.receiver_count() == 0 {
            return;
        }
        let _ = self.sender.send(frame(id, name, data));
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Events sent since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A new client's stream of frames: `hello` (with `hello_data`) first, then every event,
    /// keep-alive comments in between, `resync` after a loss.
    pub fn subscribe(
        &self,
        hello_data: &serde_json::Value,
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + use<> {
        let receiver = self.sender.subscribe();
        let hello = frame(self.sequence.load(Ordering::Relaxed), "hello", hello_data);
        let guard = ClientGuard::new(self.clients.clone());
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = (receiver, keepalive, guard, Some(hello));
        futures::stream::unfold(
            state,
            |(mut receiver, mut keepalive, guard, hello)| async move {
                if let Some(hello) = hello {
                    // The interval's first tick is immediate: take it now so it sends nothing.
                    keepalive.tick().await;
                    return Some((Ok(hello), (receiver, keepalive, guard, None)));
                }
                let next = tokio::select! {
                    message = receiver.recv() => match message {
                        Ok(frame) => frame,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            frame(0, "resync", &serde_json::json!({ "missed": missed }))
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                };
                Some((Ok(next), (receiver, keepalive, guard, None)))
            },
        )
    }
}

/// One SSE frame: `id`, `event` and a one-line JSON `data`.
fn frame(id: u64, name: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).expect("push events serialize");
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {json}\n\n"))
}

/// Counts a connected client for as long as its stream lives.
#[derive(Debug)]
struct ClientGuard(Arc<AtomicUsize>);

impl ClientGuard {
    fn new(clients: Arc<AtomicUsize>) -> ClientGuard {
        clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard(clients)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A client gets `hello`, then the events sent after it connected, in order, and is
    /// counted while connected.
    #[tokio::test]
    async fn clients_get_hello_then_events() {
        let push = Push::new();
        push.send("risk", &serde_json::json!({"before": true}));
        let mut stream = Box::pin(push.subscribe(&serde_json::json!({"version": 7})));
        assert_eq!(push.clients(), 1);
        let hello = stream.next().await.unwrap().unwrap();
        assert!(hello.starts_with(b"id: 1\nevent: hello\ndata: {\"version\":7}\n\n"));
        push.send("alert", &serde_json::json!({"id": "x"}));
        let alert = stream.next().await.unwrap().unwrap();
        assert_eq!(&alert[..], b"id: 2\nevent: alert\ndata: {\"id\":\"x\"}\n\n");
        drop(stream);
        assert_eq!(push.clients(), 0);
    }

    /// A client that falls behind the channel is told to resync instead of silently missing
    /// events.
    #[tokio::test]
    async fn a_lagging_client_is_told_to_resync() {
        let push = Push::new();
        let mut stream = Box::pin(push.subscribe(&serde_json::Value::Null));
        stream.next().await.unwrap().unwrap();
        for index in 0..CHANNEL_CAPACITY + 10 {
            push.send("risk", &index);
        }
        let next = stream.next().await.unwrap().unwrap();
        assert!(
            String::from_utf8_lossy(&next).contains("event: resync"),
            "{next:?}"
        );
    }
}
