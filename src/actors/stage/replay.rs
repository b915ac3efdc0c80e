//! Reading a JetStream stream back at start-up, so a restarted stage rebuilds its view (the
//! risk scorer's latest sample and forecast per server, the alert router's open alerts).
//!
//! In a cluster an ordered consumer (one replica, placed by the server on any of the
//! stream's peers) may sit on a node still catching up after a restart, whose copy of the
//! stream ends early: its pending count then says "nothing more" too soon. So every read-back
//! first asks the stream's leader for the newest message on its filter ([`newest_message`])
//! and reads on until it has it.

use crate::bus::Bus;
use crate::subjects::StreamKind;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::LastRawMessageErrorKind,
};
use futures::StreamExt;
use std::time::Duration;

/// Longest wait for the next message of a replay before it is given up.
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Why a stream could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A step of reading it failed.
    #[error("cannot read stream {stream} back ({step})")]
    Failed {
        /// The stream.
        stream: String,
        /// What it was doing: `get stream`, `create consumer`, `read`.
        step: &'static str,
        /// What the server or client said.
        #[source]
        source: async_nats::Error,
    },
    /// The next message did not come in time.
    #[error("reading stream {stream} back: no message within {} s", REPLAY_WAIT.as_secs())]
    Stalled {
        /// The stream.
        stream: String,
    },
    /// The consumer ended before the last message.
    #[error("reading stream {stream} back: the consumer ended early")]
    Ended {
        /// The stream.
        stream: String,
    },
}

/// Reads back the messages of one JetStream stream on subjects matching `filter`
/// (`LastPerSubject`: the latest per subject; `All`: everything kept), oldest first, with an
/// ordered consumer that is deleted afterwards (so `fleetcast status` does not show it as
/// lagging until the server expires it). An empty stream gives an empty list.
///
/// # Errors
/// [`ReplayError`] when the stream is missing, the consumer cannot be made, or a message
/// does not come within [`REPLAY_WAIT`].
pub async fn replay(
    bus: &Bus,
    kind: StreamKind,
    filter: String,
    deliver_policy: DeliverPolicy,
) -> Result<Vec<async_nats::Message>, ReplayError> {
    let name = bus.subjects().stream_name(kind);
    let failed = |step: &'static str| {
        let stream = name.clone();
        move |source: async_nats::Error| ReplayError::Failed {
            stream,
            step,
            source,
        }
    };
    let stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .map_err(|error| failed("get stream")(error.into()))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: filter.clone(),
            ..Default::default()
        })
        .await
        .map_err(|error| failed("create consumer")(error.into()))?;
    let consumer_name = consumer.cached_info().name.clone();
    let newest = newest_message(&stream, &filter)
        .await
        .map_err(failed("newest message"))?;
    let replayed = match newest {
        None => Ok(Vec::new()),
        Some(newest) => read_all(&name, consumer, newest.sequence).await,
    };
    // Best effort: an ordered consumer also expires by itself once nobody reads it.
    let _ = stream.delete_consumer(&consumer_name).await;
    replayed
}

/// Every message `consumer` has pending, oldest first, at least up to stream sequence
/// `newest` (a consumer on a replica still catching up sees nothing pending before it).
async fn read_all(
    name: &str,
    consumer: async_nats::jetstream::consumer::Consumer<OrderedConfig>,
    newest: u64,
) -> Result<Vec<async_nats::Message>, ReplayError> {
    let failed = |step: &'static str| {
        move |source: async_nats::Error| ReplayError::Failed {
            stream: name.to_string(),
            step,
            source,
        }
    };
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| failed("read")(error.into()))?;
    let mut replayed = Vec::new();
    loop {
        let message = tokio::time::timeout(REPLAY_WAIT, messages.next())
            .await
            .map_err(|_| ReplayError::Stalled {
                stream: name.to_string(),
            })?
            .ok_or_else(|| ReplayError::Ended {
                stream: name.to_string(),
            })?
            .map_err(|error| failed("read")(error.into()))?;
        let info = message.info().map_err(failed("read"))?;
        let done = info.pending == 0 && info.stream_sequence >= newest;
        replayed.push(message.message);
        if done {
            return Ok(replayed);
        }
    }
}

/// The newest message on subjects matching `filter`, `None` when there is none. A message
/// get is answered by the stream's leader, so this is the newest the stream has stored,
/// whatever replica a consumer reads from.
///
/// # Errors
/// What the server or client said when the get fails for another reason than "no message".
pub async fn newest_message(
    stream: &jetstream::stream::Stream,
    filter: &str,
) -> Result<Option<jetstream::message::StreamMessage>, async_nats::Error> {
    match stream.get_last_raw_message_by_subject(filter).await {
        Ok(message) => Ok(Some(message)),
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}
