//! The ingest hot path: decoding a [`MetricSample`](crate::wire::MetricSample) payload without
//! allocating, and validating it against the catalog.
//!
//! [`wire::decode`] builds a `String` per metric name and a `BTreeMap`; at hundreds of
//! thousands of samples a second that is most of the cost. [`SampleView`] reads the same
//! MessagePack (map or array form, the same fields, the same defaults) into borrowed strings and
//! a fixed `[f64; 14]` with presence bits, and [`decode`] applies the same version rule as
//! [`wire::decode`], so it accepts and refuses exactly the same payloads (a test checks this on
//! a corpus of valid, broken and mutated payloads). `MetricSample` stays the documented wire
//! type.

use super::MetricMask;
use crate::catalog::{self, METRIC_COUNT, Metric, Profile};
use crate::wire::{self, DecodeError, RejectKind};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt::{self, Write};

/// A decoded sample that borrows from its payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SampleView<'a> {
    /// Schema version.
    pub v: u16,
    /// Server name.
    #[serde(borrow)]
    pub server: &'a str,
    /// Measurement time, unix ms.
    pub ts_ms: i64,
    /// Profile name, when given.
    #[serde(default, borrow)]
    pub profile: Option<&'a str>,
    /// The metrics, by catalog position.
    pub metrics: MetricValues,
}

/// A sample's metrics: known ones by position, unknown names kept for the rejection reason.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricValues {
    /// Value per metric in model order; meaningful where `present` has the bit.
    pub values: [f64; METRIC_COUNT],
    /// Bit `m` set when metric `m` is in the sample.
    pub present: MetricMask,
    /// Names outside the catalog, in payload order (empty in the common case: no allocation).
    pub unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for MetricValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetricValuesVisitor)
    }
}

struct MetricValuesVisitor;

impl<'de> Visitor<'de> for MetricValuesVisitor {
    type Value = MetricValues;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a map of metric name to number")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetricValues, A::Error> {
        let mut metrics = MetricValues::default();
        while let Some(key) = map.next_key::<MetricKey>()? {
            // Read the value as `BTreeMap<String, f64>` would: any number, else an error.
            let value: f64 = map.next_value()?;
            match key {
                MetricKey::Known(metric) => {
                    metrics.values[metric.index()] = value;
                    metrics.present |= 1 << metric.index();
                }
                MetricKey::Unknown(name) => metrics.unknown.push(name),
            }
        }
        Ok(metrics)
    }
}

/// A metric name as a map key: accepts exactly what a `String` key accepts.
enum MetricKey {
    Known(Metric),
    Unknown(String),
}

impl MetricKey {
    fn from_str(name: &str) -> Self {
        metric_by_name(name).map_or_else(|| MetricKey::Unknown(name.to_string()), MetricKey::Known)
    }
}

impl<'de> Deserialize<'de> for MetricKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(MetricKeyVisitor)
    }
}

struct MetricKeyVisitor;

impl<'de> Visitor<'de> for MetricKeyVisitor {
    type Value = MetricKey;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<MetricKey, E> {
        Ok(MetricKey::from_str(name))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<MetricKey, E> {
        // `String` accepts UTF-8 bytes too.
        match std::str::from_utf8(bytes) {
            Ok(name) => Ok(MetricKey::from_str(name)),
            Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(bytes), &self)),
        }
    }
}

/// `Metric::from_name` as a jump on length and first bytes instead of a linear scan.
fn metric_by_name(name: &str) -> Option<Metric> {
    let metric = match name {
        "cpu_user_pct" => Metric::CpuUserPct,
        "cpu_sys_pct" => Metric::CpuSysPct,
        "cpu_iowait_pct" => Metric::CpuIowaitPct,
        "cpu_idle_pct" => Metric::CpuIdlePct,
        "java_cpu_pct" => Metric::JavaCpuPct,
        "mem_used_pct" => Metric::MemUsedPct,
        "swap_used_pct" => Metric::SwapUsedPct,
        "disk_usage_pct" => Metric::DiskUsagePct,
        "net_in_mb_s" => Metric::NetInMbS,
        "net_out_mb_s" => Metric::NetOutMbS,
        "back_close_wait" => Metric::BackCloseWait,
        "front_close_wait" => Metric::FrontCloseWait,
        "load_average" => Metric::LoadAverage,
        "uptime_days" => Metric::UptimeDays,
        _ => return None,
    };
    Some(metric)
}

/// Decodes a `MetricSample` payload, refusing exactly what [`wire::decode`] refuses.
///
/// # Errors
/// [`DecodeError::Malformed`] for bytes of the wrong shape, [`DecodeError::WrongVersion`] for
/// another schema version.
pub fn decode(payload: &[u8]) -> Result<SampleView<'_>, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u16,
    }
    match rmp_serde::from_slice::<SampleView>(payload) {
        Ok(sample) if sample.v == wire::SCHEMA_VERSION => Ok(sample),
        Ok(sample) => Err(DecodeError::WrongVersion {
            found: sample.v,
            expected: wire::SCHEMA_VERSION,
        }),
        Err(error) => match rmp_serde::from_slice::<VersionOnly>(payload) {
            Ok(VersionOnly { v }) if v != wire::SCHEMA_VERSION => Err(DecodeError::WrongVersion {
                found: v,
                expected: wire::SCHEMA_VERSION,
            }),
            _ => Err(DecodeError::Malformed(error)),
        },
    }
}

/// Why a decoded sample was refused: the first problem's kind and every problem in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Machine-readable kind of the first problem found.
    pub kind: RejectKind,
    /// Every problem, naming the field and the value, separated by `; `.
    pub reason: String,
}

/// Collects problems in the order they are found; the first one decides the kind.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    first: Option<RejectKind>,
    reason: String,
}

impl Problems {
    pub(crate) fn push(&mut self, kind: RejectKind, reason: fmt::Arguments<'_>) {
        if self.first.is_none() {
            self.first = Some(kind);
        } else {
            self.reason.push_str("; ");
        }
        let _ = self.reason.write_fmt(reason);
    }

    pub(crate) fn into_result(self) -> Result<(), Invalid> {
        match self.first {
            None => Ok(()),
            Some(kind) => Err(Invalid {
                kind,
                reason: self.reason,
            }),
        }
    }
}

/// Checks everything about a sample that needs no server state: the server name against the
/// subject's last token, the profile, and every metric's name, finiteness and range. Returns
/// the profile to use (given, or `None` to keep or infer the server's).
pub(crate) fn check_content(
    sample: &SampleView<'_>,
    subject_server: &str,
    problems: &mut Problems,
) -> Option<Profile> {
    if sample.server.is_empty() {
        problems.push(RejectKind::BadServer, format_args!("server is missing"));
    } else if !catalog::is_valid_server_name(sample.server) {
        problems.push(
            RejectKind::BadServer,
            format_args!(
                "server = {:?} is not a valid name (letters, digits, `-`, `_`, at most 128 bytes)",
                sample.server
            ),
        );
    } else if sample.server != subject_server {
        problems.push(
            RejectKind::BadServer,
            format_args!(
                "server = {:?} differs from the subject's server {subject_server:?}",
                sample.server
            ),
        );
    }
    let metrics = &sample.metrics;
    if metrics.present == 0 && metrics.unknown.is_empty() {
        problems.push(RejectKind::Empty, format_args!("metrics is empty"));
    }
    for name in &metrics.unknown {
        problems.push(
            RejectKind::UnknownMetric,
            format_args!("metric {name:?} is not in the catalog"),
        );
    }
    for metric in Metric::ALL {
        if metrics.present & (1 << metric.index()) == 0 {
            continue;
        }
        let value = metrics.values[metric.index()];
        let (low, high) = metric.range();
        if !value.is_finite() {
            problems.push(
                RejectKind::NonFinite,
                format_args!("{metric} = {value} is not a finite number"),
            );
        } else if value < low || value > high {
            if high == f64::MAX {
                problems.push(
                    RejectKind::OutOfRange,
                    format_args!("{metric} = {value} is below {low}"),
                );
            } else {
                problems.push(
                    RejectKind::OutOfRange,
                    format_args!("{metric} = {value} is outside {low}–{high}"),
                );
            }
        }
    }
    match sample.profile {
        None => None,
        Some(name) => match profile_by_name(name) {
            Some(profile) => Some(profile),
            None => {
                problems.push(
                    RejectKind::UnknownProfile,
                    format_args!("profile = {name:?} is not one of the 7 profiles"),
                );
                None
            }
        },
    }
}

fn profile_by_name(name: &str) -> Option<Profile> {
    Profile::ALL
        .into_iter()
        .find(|profile| profile.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MetricSample;
    use std::collections::BTreeMap;

    fn full_sample() -> MetricSample {
        MetricSample {
            v: wire::SCHEMA_VERSION,
            server: "ppdb001".into(),
            ts_ms: 1_700_000_000_000,
            profile: Some("database".into()),
            metrics: Metric::ALL
                .into_iter()
                .map(|metric| (metric.name().to_string(), metric.index() as f64 + 0.5))
                .collect(),
        }
    }

    /// A decode outcome reduced to comparable parts: version, server, time, profile, metrics.
    type Outcome = Result<(u16, String, i64, Option<String>, Vec<(String, u64)>), RejectKind>;

    /// What `wire::decode` makes of a payload, reduced to a comparable outcome.
    fn reference(payload: &[u8]) -> Outcome {
        wire::decode::<MetricSample>(payload)
            .map(|sample| {
                (
                    sample.v,
                    sample.server,
                    sample.ts_ms,
                    sample.profile,
                    sample
                        .metrics
                        .into_iter()
                        .map(|(name, value)| (name, value.to_bits()))
                        .collect(),
                )
            })
            .map_err(|error| error.kind())
    }

    /// What the fast decoder makes of it, in the same shape.
    fn fast(payload: &[u8]) -> Outcome {
        decode(payload)
            .map(|sample| {
                let mut metrics: BTreeMap<String, u64> = sample
                    .metrics
                    .unknown
                    .iter()
                    .map(|name| (name.clone(), 0))
                    .collect();
                for metric in Metric::ALL {
                    if sample.metrics.present & (1 << metric.index()) != 0 {
                        metrics.insert(
                            metric.name().to_string(),
                            sample.metrics.values[metric.index()].to_bits(),
                        );
                    }
                }
                // Unknown names carry no value here; compare names only for them.
                (
                    sample.v,
                    sample.server.to_string(),
                    sample.ts_ms,
                    sample.profile.map(str::to_string),
                    metrics.into_iter().collect(),
                )
            })
            .map_err(|error| error.kind())
    }

    fn same_verdict(payload: &[u8]) {
        let reference = reference(payload);
        let fast = fast(payload);
        match (&reference, &fast) {
            (Ok(reference), Ok(fast)) => {
                assert_eq!(reference.0, fast.0);
                assert_eq!(reference.1, fast.1);
                assert_eq!(reference.2, fast.2);
                assert_eq!(reference.3, fast.3);
                let names = |list: &Vec<(String, u64)>| {
                    list.iter()
                        .map(|(name, _)| name.clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(names(&reference.4), names(&fast.4), "{payload:?}");
                for (name, bits) in &fast.4 {
                    if metric_by_name(name).is_some() {
                        assert!(reference.4.contains(&(name.clone(), *bits)), "{name}");
                    }
                }
            }
            (Err(reference), Err(fast)) => assert_eq!(reference, fast, "{payload:?}"),
            _ => panic!("verdicts differ on {payload:?}: wire {reference:?}, fast {fast:?}"),
        }
    }

    /// The fast decoder reads a full sample exactly as the wire codec wrote it.
    #[test]
    fn decodes_a_full_sample() {
        let payload = wire::encode(&full_sample());
        let view = decode(&payload).unwrap();
        assert_eq!(view.server, "ppdb001");
        assert_eq!(view.profile, Some("database"));
        assert_eq!(view.metrics.present, super::super::ALL_METRICS);
        assert_eq!(view.metrics.values[5], 5.5);
        assert!(view.metrics.unknown.is_empty());
    }

    /// On valid, broken and hand-made payloads the fast decoder and `wire::decode` agree.
    #[test]
    fn agrees_with_the_wire_codec() {
        let mut corpus: Vec<Vec<u8>> = vec![
            wire::encode(&full_sample()),
            b"".to_vec(),
            b"\xc1garbage".to_vec(),
            b"\x80".to_vec(),
            rmp_serde::to_vec(&full_sample()).unwrap(), // array form
        ];
        let mut sample = full_sample();
        sample.v = 9;
        corpus.push(wire::encode(&sample));
        let mut sample = full_sample();
        sample.profile = None;
        sample.metrics.insert("cpu_pct".into(), 1.0);
        sample.metrics.insert("mem_used_pct".into(), f64::NAN);
        corpus.push(wire::encode(&sample));
        let mut sample = full_sample();
        sample.metrics.clear();
        corpus.push(wire::encode(&sample));
        // Hand-made maps: integer values, a missing field, an extra field, nil profile, a
        // non-numeric value, a non-string key, bytes as the server.
        let hand_made: Vec<serde_json::Value> = vec![
            serde_json::json!({"v": 1, "server": "a", "ts_ms": 5, "metrics": {"load_average": 3}}),
            serde_json::json!({"v": 1, "server": "a", "metrics": {}}),
            serde_json::json!({"v": 1, "server": "a", "ts_ms": 5, "metrics": {}, "extra": [1]}),
            serde_json::json!({"v": 1, "server": "a", "ts_ms": 5, "profile": null, "metrics": {}}),
            serde_json::json!({"v": 1, "server": "a", "ts_ms": 5, "metrics": {"load_average": "x"}}),
            serde_json::json!({"v": 2, "server": 7}),
            serde_json::json!({"v": 1, "server": "a", "ts_ms": -5.5, "metrics": {}}),
            serde_json::json!({"v": 70000, "server": "a", "ts_ms": 5, "metrics": {}}),
            serde_json::json!([1, "a", 5, null, {"uptime_days": 1.5}]),
            serde_json::json!([1, "a", 5]),
        ];
        for value in &hand_made {
            corpus.push(rmp_serde::to_vec(value).unwrap());
        }
        let mut integer_key =
            rmp_serde::to_vec(&serde_json::json!({"v": 1, "server": "a", "ts_ms": 5})).unwrap();
        integer_key[0] += 1; // one more entry in the fixmap
        integer_key.extend(rmp_serde::to_vec("metrics").unwrap());
        integer_key.extend([0x81, 0x07, 0x01]); // {7: 1}
        corpus.push(integer_key);
        let mut bytes_server = vec![0x84];
        bytes_server.extend(rmp_serde::to_vec("v").unwrap());
        bytes_server.push(0x01);
        bytes_server.extend(rmp_serde::to_vec("server").unwrap());
        bytes_server.extend([0xc4, 0x02, b'a', b'b']);
        bytes_server.extend(rmp_serde::to_vec("ts_ms").unwrap());
        bytes_server.push(0x05);
        bytes_server.extend(rmp_serde::to_vec("metrics").unwrap());
        bytes_server.extend([0x81, 0xc4, 0x0b]);
        bytes_server.extend(b"uptime_days");
        bytes_server.push(0x02);
        corpus.push(bytes_server);
        for payload in &corpus {
            same_verdict(payload);
        }
        // Every truncation and single-byte change of a valid payload.
        let valid = wire::encode(&full_sample());
        for cut in 0..valid.len() {
            same_verdict(&valid[..cut]);
        }
        for position in 0..valid.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xc0, 0xc1, 0xca, 0xcb, 0xd9, 0xff] {
                let mut mutated = valid.clone();
                mutated[position] = byte;
                same_verdict(&mutated);
            }
        }
    }

    fn problems_of(sample: &MetricSample, subject_server: &str) -> Option<Invalid> {
        let payload = wire::encode(sample);
        let view = decode(&payload).unwrap();
        let mut problems = Problems::default();
        check_content(&view, subject_server, &mut problems);
        problems.into_result().err()
    }

    /// Each content problem is named with its field and value; the first decides the kind.
    #[test]
    fn content_problems_name_field_and_value() {
        assert_eq!(problems_of(&full_sample(), "ppdb001"), None);
        let mut sample = full_sample();
        sample.metrics.insert("mem_used_pct".into(), 140.0);
        let invalid = problems_of(&sample, "ppdb001").unwrap();
        assert_eq!(invalid.kind, RejectKind::OutOfRange);
        assert_eq!(invalid.reason, "mem_used_pct = 140 is outside 0–100");
        sample.metrics.insert("net_in_mb_s".into(), -1.0);
        sample.metrics.insert("load_average".into(), f64::INFINITY);
        sample.metrics.insert("bogus".into(), 1.0);
        sample.profile = Some("mainframe".into());
        let invalid = problems_of(&sample, "ppdb002").unwrap();
        assert_eq!(invalid.kind, RejectKind::BadServer);
        for part in [
            "ppdb002",
            "bogus",
            "net_in_mb_s = -1",
            "load_average = inf",
            "mainframe",
        ] {
            assert!(
                invalid.reason.contains(part),
                "{part} in {}",
                invalid.reason
            );
        }
        let mut sample = full_sample();
        sample.metrics.clear();
        assert_eq!(
            problems_of(&sample, "ppdb001").unwrap().kind,
            RejectKind::Empty
        );
        let mut sample = full_sample();
        sample.server = String::new();
        assert_eq!(
            problems_of(&sample, "ppdb001").unwrap().reason,
            "server is missing"
        );
        let mut sample = full_sample();
        sample.metrics.insert("uptime_days".into(), 400.0);
        assert!(
            problems_of(&sample, "ppdb001")
                .unwrap()
                .reason
                .contains("uptime_days = 400 is outside 0–365")
        );
    }
}
