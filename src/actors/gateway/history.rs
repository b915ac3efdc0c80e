//! Alert history, read from the ALERTS stream (30 days) for one time range: the only requests
//! that read a stream.
//!
//! A range (`30m`, `1h`, `8h`, `1d`, `1w`, `1M` as the original, or any `<n><s|m|h|d|w|M>`)
//! ends at the fleet's "now": the later of the wall clock and the newest sample, so a simulated
//! clock running ahead of the wall works too. Events are kept when their own time (`at_ms`) is
//! inside the range. The stream is read from `wall now − range` (its storage time): an event
//! whose time is in range was stored no earlier than that as long as the fleet clock runs at
//! least as fast as the wall clock, so nothing in range is missed and far less is read.

use crate::actors::stage::replay::newest_message;
use crate::bus::Bus;
use crate::subjects::StreamKind;
use crate::wire::{self, AlertEvent};
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use std::time::Duration;

/// Longest wait for the next message of a history read.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Parses a range such as `1h` into milliseconds.
///
/// # Errors
/// A reason naming the text when it is not `<n><unit>` with unit s, m, h, d, w or M (30 days),
/// or longer than the stream keeps (30 days).
pub fn parse_range(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("time_range `{text}` has no unit (use e.g. 30m, 1h, 8h, 1d, 1w, 1M)")
    })?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("time_range `{text}` must start with a whole number"))?;
    let unit_ms: i64 = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "M" => 30 * 86_400_000,
        _ => {
            return Err(format!(
                "time_range `{text}` has unit `{unit}`: use s, m, h, d, w or M (30 days)"
            ));
        }
    };
    let range = number.saturating_mul(unit_ms);
    if range <= 0 || range > 30 * 86_400_000 {
        return Err(format!(
            "time_range `{text}` must be above 0 and at most 30 days (what the alert stream keeps)"
        ));
    }
    Ok(range)
}

/// Alert events of the range, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The events.
    pub events: Vec<AlertEvent>,
    /// Whether `gateway.history_limit` cut the read short.
    pub truncated: bool,
    /// Range start, unix ms.
    pub from_ms: i64,
    /// Range end, unix ms.
    pub to_ms: i64,
}

/// Reads the alert events of the `range_ms` ending at `fleet_now_ms` (of `server` only, when
/// given), at most `limit`.
///
/// # Errors
/// A reason in words when the stream cannot be read.
pub async fn read(
    bus: &Bus,
    fleet_now_ms: i64,
    wall_now_ms: i64,
    range_ms: i64,
    server: Option<&str>,
    limit: usize,
) -> Result<History, String> {
    let from_ms = fleet_now_ms - range_ms;
    let mut history = History {
        from_ms,
        to_ms: fleet_now_ms,
        ..History::default()
    };
    let subjects = bus.subjects();
    let filter = match server {
        Some(server) => subjects.alerts_of(server),
        None => subjects.alerts_all(),
    };
    let name = subjects.stream_name(StreamKind::Alerts);
    let stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .map_err(|error| format!("alert stream {name}: {error}"))?;
    let start_ns = i128::from(wall_now_ms - range_ms) * 1_000_000;
    let start_time = async_nats::datetime::DateTime::from_unix_timestamp_nanos(start_ns)
        .map_err(|error| format!("start time: {error}"))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            filter_subject: filter.clone(),
            ..Default::default()
        })
        .await
        .map_err(|error| format!("alert stream {name}: {error}"))?;
    // Asked of the leader: a consumer on a replica still catching up sees nothing pending
    // too soon.
    let newest = match newest_message(&stream, &filter)
        .await
        .map_err(|error| format!("alert stream {name}: {error}"))?
    {
        Some(newest) if newest.time >= start_time => newest.sequence,
        _ => return Ok(history),
    };
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| format!("alert stream {name}: {error}"))?;
    let mut read = 0;
    loop {
        let message = tokio::time::timeout(READ_WAIT, messages.next())
            .await
            .map_err(|_| format!("alert stream {name}: no message within 5 s"))?
            .ok_or_else(|| format!("alert stream {name}: the consumer ended early"))?
            .map_err(|error| format!("alert stream {name}: {error}"))?;
        let info = message
            .info()
            .map_err(|error| format!("alert stream {name}: {error}"))?;
        read += 1;
        if let Ok(event) = wire::decode::<AlertEvent>(&message.payload)
            && (from_ms..=fleet_now_ms).contains(&event.at_ms)
        {
            history.events.push(event);
        }
        if info.pending == 0 && info.stream_sequence >= newest {
            break;
        }
        if read >= limit {
            history.truncated = true;
            break;
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original's ranges parse; a bad one names what is wrong.
    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("30m"), Ok(1_800_000));
        assert_eq!(parse_range("1h"), Ok(3_600_000));
        assert_eq!(parse_range("1M"), Ok(30 * 86_400_000));
        assert!(parse_range("1y").unwrap_err().contains("unit `y`"));
        assert!(parse_range("h").unwrap_err().contains("whole number"));
        assert!(parse_range("12").unwrap_err().contains("no unit"));
        assert!(parse_range("5w").unwrap_err().contains("30 days"));
    }
}
