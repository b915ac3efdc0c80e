//! The Prometheus remote-write 1.0 request: a snappy-compressed (block format) protobuf
//! `prometheus.WriteRequest`.
//!
//! Only the messages the receiver reads are declared, by hand (no protoc): `WriteRequest`
//! (field 1, `timeseries`), `TimeSeries` (1 `labels`, 2 `samples`), `Label` (1 `name`,
//! 2 `value`) and `Sample` (1 `value`, 2 `timestamp` in ms). Fields not declared (metadata,
//! exemplars, histograms) are skipped by the decoder. Label names and values are declared
//! as `bytes` (the same wire encoding as `string`), so they are slices of the request body
//! rather than one allocation each; the receiver checks UTF-8 only where it reads them.

use bytes::Bytes;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` the metric name (sorted by name by Prometheus).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name (UTF-8).
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    /// Label value (UTF-8).
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value; Prometheus's staleness marker is a NaN with the bits [`STALE_NAN`].
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The bits of Prometheus's staleness marker: the series ended (its target or the series
/// itself went away).
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Why a request body is not a remote-write request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not snappy block format.
    #[error("the body is not snappy-compressed (block format, as remote write sends it): {0}")]
    Snappy(#[source] snap::Error),
    /// Too large once decompressed.
    #[error(
        "the body decompresses to {size} bytes, above the limit of {limit} (remote_write.max_body_bytes)"
    )]
    TooLarge {
        /// Decompressed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a `WriteRequest`.
    #[error("the body is not a remote-write WriteRequest protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// Decompresses and decodes a request body.
///
/// # Errors
/// [`BodyError`] naming what is wrong.
pub fn decode_body(body: &[u8], limit: usize) -> Result<WriteRequest, BodyError> {
    let size = snap::raw::decompress_len(body).map_err(BodyError::Snappy)?;
    if size > limit {
        return Err(BodyError::TooLarge { size, limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(BodyError::Snappy)?;
    <WriteRequest as prost::Message>::decode(Bytes::from(raw)).map_err(BodyError::Protobuf)
}

/// Encodes and compresses a request (benches and tests build requests with it).
pub fn encode_body(request: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

impl TimeSeries {
    /// The value of label `name`, when present and UTF-8.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|label| label.name == name.as_bytes())
            .and_then(|label| std::str::from_utf8(&label.value).ok())
    }

    /// The metric name (`__name__`).
    pub fn name(&self) -> Option<&str> {
        self.label("__name__")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request survives encoding and decoding; garbage and plain protobuf are named.
    #[test]
    fn bodies_round_trip_and_bad_ones_are_named() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: Bytes::from_static(b"__name__"),
                    value: Bytes::from_static(b"node_load1"),
                }],
                samples: vec![Sample {
                    value: 0.5,
                    timestamp: 1_000,
                }],
            }],
        };
        let body = encode_body(&request);
        let decoded = decode_body(&body, 1 << 20).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(decoded.timeseries[0].name(), Some("node_load1"));
        let error = decode_body(b"hello world", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(error.contains("snappy"), "{error}");
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        let error = decode_body(&not_protobuf, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("WriteRequest"), "{error}");
        let error = decode_body(&body, 4).unwrap_err().to_string();
        assert!(error.contains("max_body_bytes"), "{error}");
    }
}
