//! `fleetcast tail SUBJECT`: subscribe and print every message as one JSON line, the
//! readable answer to `nats sub` showing MessagePack as binary.
//!
//! Each line is `{"subject": ..., "data": <the payload as JSON>}`; a payload that is not
//! MessagePack prints as `{"subject": ..., "error": ..., "bytes": <length>}` and tailing goes
//! on.

use crate::bus::Bus;
use futures::StreamExt;
use std::io::Write;
use std::time::Duration;

/// Options of `fleetcast tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Subject to follow; wildcards allowed, e.g. 'fleetcast.metrics.>' or 'fleetcast.alerts.>'.
    pub subject: String,
    /// Stop after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// Why tailing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The subscription was refused.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The subscription could not be confirmed with the server.
    #[error("cannot confirm the subscription with the server")]
    Confirm(#[source] crate::bus::BusError),
    /// Writing to the output failed (e.g. a closed pipe).
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Renders one message as a JSON line (without the newline).
pub fn render(subject: &str, payload: &[u8]) -> String {
    let line = match crate::wire::to_json(payload) {
        Ok(data) => serde_json::json!({ "subject": subject, "data": data }),
        Err(error) => serde_json::json!({
            "subject": subject,
            "error": format!("not messagepack: {error}"),
            "bytes": payload.len(),
        }),
    };
    line.to_string()
}

/// A subscription ready to print: the server has it, so nothing published after
/// [`subscribe`] returns is missed.
#[derive(Debug)]
pub struct Tail {
    subscriber: async_nats::Subscriber,
    count: Option<u64>,
    seconds: Option<u64>,
}

/// Subscribes to `args.subject` and waits until the server has the subscription.
///
/// # Errors
/// [`TailError::Subscribe`] or [`TailError::Confirm`] when the client refuses.
pub async fn subscribe(bus: &Bus, args: &TailArgs) -> Result<Tail, TailError> {
    let subscriber = bus
        .client()
        .subscribe(args.subject.clone())
        .await
        .map_err(|source| TailError::Subscribe {
            subject: args.subject.clone(),
            source,
        })?;
    crate::bus::round_trip(bus.client())
        .await
        .map_err(TailError::Confirm)?;
    Ok(Tail {
        subscriber,
        count: args.count,
        seconds: args.seconds,
    })
}

impl Tail {
    /// Prints each message to `out` until the count or time limit, or forever. Returns how
    /// many were printed.
    ///
    /// # Errors
    /// [`TailError::Output`] when `out` cannot be written.
    pub async fn print(mut self, out: &mut impl Write) -> Result<u64, TailError> {
        let deadline = self
            .seconds
            .map(|seconds| tokio::time::Instant::now() + Duration::from_secs(seconds));
        let mut printed = 0;
        while self.count.is_none_or(|count| printed < count) {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.subscriber.next()).await {
                        Ok(next) => next,
                        Err(_elapsed) => break,
                    }
                }
                None => self.subscriber.next().await,
            };
            let Some(message) = next else { break };
            writeln!(
                out,
                "{}",
                render(message.subject.as_str(), &message.payload)
            )?;
            out.flush()?;
            printed += 1;
        }
        Ok(printed)
    }
}

/// Prints messages on `args.subject` to `out` until the count or time limit, or forever.
/// Returns how many were printed.
///
/// # Errors
/// [`TailError`] when the subscription is refused or `out` cannot be written.
pub async fn run(bus: &Bus, args: &TailArgs, out: &mut impl Write) -> Result<u64, TailError> {
    subscribe(bus, args).await?.print(out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garbage renders as an error line, not a crash.
    #[test]
    fn garbage_renders_as_an_error_line() {
        let line: serde_json::Value = serde_json::from_str(&render("a.b", b"\xc1")).unwrap();
        assert_eq!(line["subject"], "a.b");
        assert_eq!(line["bytes"], 1);
        assert!(line["error"].as_str().unwrap().contains("not messagepack"));
    }
}
