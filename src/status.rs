//! `fleetcast status`: one view of a running deployment, from what it says about itself.
//!
//! - **Stages**: every stage instance answering `$SRV.STATS` as `fleetcast-<stage>` with this
//!   deployment's prefix, with its counters (the `report` endpoint's data, see
//!   [`crate::actors::stage::service`]) and its facts (a predictor's model, the window
//!   keeper's warm-up, the generator's scenario).
//! - **Consumers**: each JetStream consumer on the deployment's streams, with its pending
//!   and unacknowledged counts.
//! - **Streams**: each stream's message count and size.
//!
//! `--json` prints the same as one JSON document; `--watch` refreshes.

use crate::bus::{Bus, RequestError};
use crate::wire::StageReport;
use futures::StreamExt;
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// Options of `fleetcast status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECONDS (default 2) until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
    /// Seconds to wait for the first stage to answer.
    #[arg(long, default_value_t = 1.0)]
    pub wait: f64,
}

/// One stage instance as its micro service reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStatus {
    /// The micro service's id.
    pub service_id: String,
    /// Its version.
    pub version: String,
    /// What it reports.
    #[serde(flatten)]
    pub report: StageReport,
}

/// One JetStream consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStatus {
    /// Its stream.
    pub stream: String,
    /// Its name (a durable's, or the server's for an ordered one).
    pub name: String,
    /// Messages not yet delivered to it.
    pub pending: u64,
    /// Delivered and not yet acknowledged.
    pub ack_pending: usize,
    /// Delivered more than once.
    pub redelivered: usize,
}

/// One JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// Its name.
    pub name: String,
    /// Messages it holds.
    pub messages: u64,
    /// Bytes it holds.
    pub bytes: u64,
    /// Consumers on it.
    pub consumers: usize,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeploymentStatus {
    /// Stage instances, by stage then instance.
    pub stages: Vec<StageStatus>,
    /// JetStream consumers, by stream then name.
    pub consumers: Vec<ConsumerStatus>,
    /// JetStream streams, by name.
    pub streams: Vec<StreamStatus>,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The `$SRV.STATS` request could not be sent.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The streams could not be listed.
    #[error("cannot list the jetstream streams")]
    Streams(#[source] async_nats::Error),
    /// No stage of this deployment answered.
    #[error("no fleetcast stage answers on $SRV.STATS (is `fleetcast up` running?)")]
    NoStages,
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Gathers the deployment's status: stages answering within `wait` (then until none answers
/// for a quarter second), every consumer and stream of its prefix.
///
/// # Errors
/// [`StatusError`] when the request cannot be sent or the streams cannot be listed.
pub async fn gather(bus: &Bus, wait: Duration) -> Result<DeploymentStatus, StatusError> {
    let replies = bus
        .scatter(
            "$SRV.STATS".to_string(),
            async_nats::HeaderMap::new(),
            bytes::Bytes::new(),
            wait,
            Duration::from_millis(250),
        )
        .await?;
    let mut stages: Vec<StageStatus> = replies
        .iter()
        .filter_map(|reply| serde_json::from_slice(&reply.payload).ok())
        .filter_map(|stats: async_nats::service::Stats| stage_of(stats, bus.subjects().prefix()))
        .collect();
    stages.sort_by(|a, b| {
        (&a.report.stage, &a.report.instance, &a.service_id).cmp(&(
            &b.report.stage,
            &b.report.instance,
            &b.service_id,
        ))
    });
    let (streams, consumers) = streams_and_consumers(bus)
        .await
        .map_err(StatusError::Streams)?;
    Ok(DeploymentStatus {
        stages,
        consumers,
        streams,
    })
}

/// The stage in one `$SRV.STATS` answer, when it is a fleetcast stage of `prefix`.
fn stage_of(stats: async_nats::service::Stats, prefix: &str) -> Option<StageStatus> {
    if !stats.name.starts_with("fleetcast-") {
        return None;
    }
    let data = stats
        .endpoints
        .into_iter()
        .find(|endpoint| endpoint.name == crate::actors::stage::service::REPORT_ENDPOINT)?
        .data?;
    let report: StageReport = serde_json::from_value(data).ok()?;
    (report.prefix == prefix).then_some(StageStatus {
        service_id: stats.id,
        version: stats.version,
        report,
    })
}

async fn streams_and_consumers(
    bus: &Bus,
) -> Result<(Vec<StreamStatus>, Vec<ConsumerStatus>), async_nats::Error> {
    let jetstream = bus.jetstream();
    let own = bus.subjects().stream_prefix();
    let mut streams = Vec::new();
    let mut consumers = Vec::new();
    let mut listed = jetstream.streams();
    while let Some(info) = listed.next().await {
        let info = info?;
        if !info.config.name.starts_with(&own) {
            continue;
        }
        streams.push(StreamStatus {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            consumers: info.state.consumer_count,
        });
        let stream = jetstream.get_stream(&info.config.name).await?;
        let mut listed_consumers = stream.consumers();
        while let Some(consumer) = listed_consumers.next().await {
            let consumer = consumer?;
            consumers.push(ConsumerStatus {
                stream: info.config.name.clone(),
                name: consumer.name,
                pending: consumer.num_pending,
                ack_pending: consumer.num_ack_pending,
                redelivered: consumer.num_redelivered,
            });
        }
    }
    streams.sort_by(|a, b| a.name.cmp(&b.name));
    consumers.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
    Ok((streams, consumers))
}

/// Lays `rows` out under `header` in left-aligned columns two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(header.iter().map(|title| title.to_string()).collect());
    for row in rows {
        text.push_str(&line(row.clone()));
    }
    text
}

/// The status as three tables (stages, consumers, streams).
pub fn render(status: &DeploymentStatus) -> String {
    let count = |report: &StageReport, name: &str| {
        report
            .counters
            .get(name)
            .map_or("-".to_string(), u64::to_string)
    };
    let stages: Vec<Vec<String>> = status
        .stages
        .iter()
        .map(|stage| {
            let report = &stage.report;
            let facts = report
                .facts
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                report.stage.clone(),
                report.instance.clone(),
                count(report, "received"),
                count(report, "accepted"),
                count(report, "rejected"),
                count(report, "published"),
                count(report, "publish_errors"),
                count(report, "outbox_full"),
                count(report, "consumer_lag"),
                facts,
            ]
        })
        .collect();
    let consumers: Vec<Vec<String>> = status
        .consumers
        .iter()
        .map(|consumer| {
            vec![
                consumer.stream.clone(),
                consumer.name.clone(),
                consumer.pending.to_string(),
                consumer.ack_pending.to_string(),
                consumer.redelivered.to_string(),
            ]
        })
        .collect();
    let streams: Vec<Vec<String>> = status
        .streams
        .iter()
        .map(|stream| {
            vec![
                stream.name.clone(),
                stream.messages.to_string(),
                format!("{:.1} MB", stream.bytes as f64 / 1e6),
                stream.consumers.to_string(),
            ]
        })
        .collect();
    [
        table(
            &[
                "STAGE",
                "INSTANCE",
                "RECEIVED",
                "ACCEPTED",
                "REJECTED",
                "PUBLISHED",
                "PUB ERRORS",
                "OUTBOX FULL",
                "LAG",
                "FACTS",
            ],
            &stages,
        ),
        table(
            &[
                "STREAM",
                "CONSUMER",
                "PENDING",
                "ACK PENDING",
                "REDELIVERED",
            ],
            &consumers,
        ),
        table(&["STREAM", "MESSAGES", "SIZE", "CONSUMERS"], &streams),
    ]
    .join("\n")
}

/// Prints the status to `out` once, or every `--watch` seconds until interrupted.
///
/// # Errors
/// [`StatusError`]; [`StatusError::NoStages`] when no stage of the deployment answers.
pub async fn run(bus: &Bus, args: &StatusArgs, out: &mut impl Write) -> Result<(), StatusError> {
    let wait = Duration::from_secs_f64(args.wait.max(0.05));
    loop {
        let status = gather(bus, wait).await?;
        if status.stages.is_empty() && args.watch.is_none() {
            return Err(StatusError::NoStages);
        }
        if args.json {
            serde_json::to_writer(&mut *out, &status).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            if args.watch.is_some() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                // Clear the screen and go home, as `watch` does.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write!(out, "{}", render(&status))?;
        }
        out.flush()?;
        let Some(every) = args.watch else {
            return Ok(());
        };
        tokio::time::sleep(Duration::from_secs_f64(every.max(0.2))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Tables align their columns and show facts and a missing counter as `-`.
    #[test]
    fn tables_align() {
        let report = StageReport {
            v: crate::wire::SCHEMA_VERSION,
            stage: "predictor".into(),
            instance: "host-1-0".into(),
            prefix: "fleetcast".into(),
            at_ms: 0,
            counters: BTreeMap::from([
                ("received".to_string(), 12),
                ("consumer_lag".to_string(), 3),
            ]),
            facts: BTreeMap::from([("model".to_string(), "tft-v2 2.0".to_string())]),
        };
        let status = DeploymentStatus {
            stages: vec![StageStatus {
                service_id: "X".into(),
                version: "0.1.0".into(),
                report,
            }],
            ..DeploymentStatus::default()
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("STAGE      INSTANCE  RECEIVED"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("predictor  host-1-0  12        -"),
            "{text}"
        );
        assert!(lines[1].ends_with("3    model=tft-v2 2.0"), "{text}");
    }
}
