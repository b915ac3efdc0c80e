//! The fuzzer's mutations: structured ones (a valid message's fields set to interesting
//! values through `arbitrary`, encoded again) and byte-level ones (flips, cuts, inserted,
//! deleted and duplicated runs, MessagePack markers).

use arbitrary::Unstructured;
use fleetcast::actors::remote_write::proto;
use fleetcast::wire::{self, Forecast, MetricSample, PredictJob, RiskScore, WireMessage};
use rand::RngExt;
use rand_pcg::Pcg64;

/// An interesting float: NaN, ±inf, -0, extremes, ranges' edges, or anything.
pub(crate) fn float(u: &mut Unstructured) -> f64 {
    const EDGES: [f64; 12] = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        100.0,
        100.000001,
        -1e-300,
        1e308,
        f64::MAX,
        f64::MIN_POSITIVE,
        365.0,
    ];
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => EDGES[u.choose_index(EDGES.len()).unwrap_or(0)],
        1 => u.arbitrary::<f64>().unwrap_or(0.0),
        _ => u.int_in_range(-1000..=1000i32).unwrap_or(0) as f64 / 7.0,
    }
}

pub(crate) fn int(u: &mut Unstructured) -> i64 {
    const EDGES: [i64; 8] = [
        i64::MIN,
        i64::MAX,
        0,
        -1,
        1_767_571_200_000,
        1_767_571_200,
        i64::MAX / 1000,
        300,
    ];
    if u.arbitrary::<bool>().unwrap_or(false) {
        EDGES[u.choose_index(EDGES.len()).unwrap_or(0)]
    } else {
        u.arbitrary().unwrap_or(0)
    }
}

pub(crate) fn name(u: &mut Unstructured, valid: &str) -> String {
    match u.int_in_range(0..=6u8).unwrap_or(0) {
        0 => String::new(),
        1 => "x".repeat(u.int_in_range(100..=5000usize).unwrap_or(200)),
        2 => "a.b".into(),
        3 => "web>*".into(),
        4 => u.arbitrary::<String>().unwrap_or_default(),
        _ => valid.to_string(),
    }
}

pub(crate) fn version(u: &mut Unstructured, valid: u16) -> u16 {
    if u.ratio(1, 5u8).unwrap_or(false) {
        u.arbitrary().unwrap_or(0)
    } else {
        valid
    }
}

pub(crate) fn length(u: &mut Unstructured, valid: usize) -> usize {
    match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => 0,
        1 => valid.saturating_sub(1),
        2 => valid + 1,
        3 => u.int_in_range(0..=10_000usize).unwrap_or(0),
        _ => valid,
    }
}

pub(crate) fn metric_name(u: &mut Unstructured) -> String {
    let all = fleetcast::catalog::Metric::ALL;
    if u.ratio(1, 6u8).unwrap_or(false) {
        name(u, "cpu_user_pct")
    } else {
        all[u.choose_index(all.len()).unwrap_or(0)]
            .name()
            .to_string()
    }
}

pub(crate) fn profile(u: &mut Unstructured, valid: &str) -> String {
    let all = fleetcast::catalog::Profile::ALL;
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => name(u, valid),
        1 => all[u.choose_index(all.len()).unwrap_or(0)]
            .name()
            .to_string(),
        _ => valid.to_string(),
    }
}

pub(crate) fn reencode<T: WireMessage>(
    seed: &[u8],
    u: &mut Unstructured,
    mutate: impl FnOnce(&mut T, &mut Unstructured),
) -> Vec<u8> {
    let mut message: T = wire::decode(seed).expect("a valid seed");
    mutate(&mut message, u);
    wire::encode(&message)
}

pub(crate) fn mutate_sample(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<MetricSample>(seed, u, |s, u| {
        s.v = version(u, s.v);
        s.server = name(u, &s.server);
        if u.arbitrary().unwrap_or(false) {
            s.ts_ms = int(u);
        } else {
            s.ts_ms += u.int_in_range(-3_600_000..=3_600_000i64).unwrap_or(0);
        }
        if u.ratio(1, 3u8).unwrap_or(false) {
            s.profile = Some(profile(u, "database"));
        }
        let count = length(u, s.metrics.len()).min(5_000);
        s.metrics = (0..count).map(|_| (metric_name(u), float(u))).collect();
    })
}

pub(crate) fn mutate_job(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<PredictJob>(seed, u, |j, u| {
        j.v = version(u, j.v);
        j.server = name(u, &j.server);
        j.profile = profile(u, &j.profile);
        if u.ratio(1, 4u8).unwrap_or(false) {
            j.steps = u.arbitrary().unwrap_or(0);
        }
        if u.ratio(1, 4u8).unwrap_or(false) {
            j.step_seconds = u.arbitrary().unwrap_or(0);
        }
        if u.ratio(1, 4u8).unwrap_or(false) {
            j.last_step_s = int(u);
        }
        if u.ratio(1, 3u8).unwrap_or(false) {
            let count = length(u, j.metrics.len()).min(40);
            j.metrics = (0..count).map(|_| metric_name(u)).collect();
        }
        let len = length(u, j.metrics.len() * j.steps as usize).min(200_000);
        j.values.resize(len, 0.0);
        for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
            if !j.values.is_empty() {
                let at = u.choose_index(j.values.len()).unwrap_or(0);
                j.values[at] = float(u) as f32;
            }
        }
    })
}

pub(crate) fn mutate_series(u: &mut Unstructured, series: &mut Vec<f32>) {
    let len = length(u, series.len()).min(20_000);
    series.resize(len, 50.0);
    for _ in 0..u.int_in_range(0..=6u8).unwrap_or(0) {
        if !series.is_empty() {
            let at = u.choose_index(series.len()).unwrap_or(0);
            series[at] = float(u) as f32;
        }
    }
}

pub(crate) fn mutate_forecast(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<Forecast>(seed, u, |f, u| {
        f.v = version(u, f.v);
        f.server = name(u, &f.server);
        f.profile = profile(u, &f.profile);
        if u.ratio(1, 4u8).unwrap_or(false) {
            f.origin_s = int(u);
        }
        if u.ratio(1, 4u8).unwrap_or(false) {
            f.step_seconds = u.arbitrary().unwrap_or(0);
        }
        if u.ratio(1, 3u8).unwrap_or(false) {
            let len = length(u, f.step_s.len()).min(20_000);
            let step = i64::from(f.step_seconds);
            let origin = f.origin_s;
            f.step_s = (0..len as i64)
                .map(|i| origin.wrapping_add(i.wrapping_mul(step)))
                .collect();
            if let Some(last) = f.step_s.last_mut() {
                *last = int(u);
            }
        }
        let keys: Vec<String> = f.metrics.keys().cloned().collect();
        for key in keys {
            if u.ratio(1, 2u8).unwrap_or(false) {
                let mut series = f.metrics.remove(&key).expect("a key");
                mutate_series(u, &mut series.p10);
                mutate_series(u, &mut series.p50);
                mutate_series(u, &mut series.p90);
                if u.ratio(1, 4u8).unwrap_or(false) {
                    std::mem::swap(&mut series.p10, &mut series.p90);
                }
                series.observed_steps = if u.ratio(1, 4u8).unwrap_or(false) {
                    u.arbitrary().unwrap_or(0)
                } else {
                    series.observed_steps
                };
                let key = if u.ratio(1, 5u8).unwrap_or(false) {
                    metric_name(u)
                } else {
                    key
                };
                f.metrics.insert(key, series);
            }
        }
        if u.ratio(1, 8u8).unwrap_or(false) {
            f.metrics.clear();
        }
    })
}

pub(crate) fn mutate_risk(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<RiskScore>(seed, u, |r, u| {
        r.v = version(u, r.v);
        r.server = name(u, &r.server);
        r.profile = profile(u, &r.profile);
        if u.arbitrary().unwrap_or(false) {
            r.score = float(u);
        }
        if u.ratio(1, 3u8).unwrap_or(false) {
            r.current = float(u);
            r.predicted = float(u);
        }
        if u.ratio(1, 3u8).unwrap_or(false) {
            r.at_ms = int(u);
            r.sample_ms = int(u);
        }
        if u.ratio(1, 4u8).unwrap_or(false) {
            r.level = name(u, "critical");
            r.forecast_status = name(u, "used");
        }
        if u.ratio(1, 4u8).unwrap_or(false) {
            r.forecast_origin_s = Some(int(u));
        }
    })
}

pub(crate) fn mutate_scenario(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<wire::ScenarioRequest>(seed, u, |r, u| {
        r.v = version(u, r.v);
        let names = [
            "healthy",
            "natural",
            "degrading",
            "critical",
            "cascade",
            "status",
        ];
        r.scenario = if u.arbitrary().unwrap_or(false) {
            names[u.choose_index(names.len()).unwrap_or(0)].into()
        } else {
            name(u, "critical")
        };
    })
}

pub(crate) fn mutate_model_load(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    reencode::<wire::ModelLoadRequest>(seed, u, |r, u| {
        r.v = version(u, r.v);
        r.path = name(u, &r.path);
    })
}

pub(crate) fn mutate_remote_write(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    let Ok(mut request) = proto::decode_body(seed, 32 << 20) else {
        return seed.to_vec();
    };
    let len = request.timeseries.len();
    if len > 0 {
        for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
            let series = &mut request.timeseries[u.choose_index(len).unwrap_or(0)];
            match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => {
                    for sample in &mut series.samples {
                        sample.value = float(u);
                        sample.timestamp = int(u);
                    }
                }
                1 => {
                    for label in &mut series.labels {
                        label.value = name(u, &String::from_utf8_lossy(&label.value)).into();
                    }
                }
                2 => series.labels.clear(),
                _ => series.samples.clear(),
            }
        }
    }
    proto::encode_body(&request)
}

pub(crate) fn mutate_page(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    let text = String::from_utf8_lossy(seed);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..u.int_in_range(1..=20u8).unwrap_or(1) {
        if lines.is_empty() {
            break;
        }
        let at = u.choose_index(lines.len()).unwrap_or(0);
        match u.int_in_range(0..=5u8).unwrap_or(0) {
            0 => {
                // Replace the value with an interesting number.
                if let Some((head, _)) = lines[at].rsplit_once(' ') {
                    lines[at] = format!("{head} {}", float(u));
                }
            }
            1 => lines[at] = u.arbitrary::<String>().unwrap_or_default(),
            2 => {
                let cut = u.int_in_range(0..=lines[at].len()).unwrap_or(0);
                lines[at] = lines[at].chars().take(cut).collect();
            }
            3 => {
                let other = u.choose_index(lines.len()).unwrap_or(0);
                lines.swap(at, other);
            }
            4 => {
                lines.remove(at);
            }
            _ => lines[at] = lines[at].replace('"', "").replace('}', "{"),
        }
    }
    lines.join("\n").into_bytes()
}

pub(crate) fn mutate_feed(seed: &[u8], u: &mut Unstructured) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(seed).expect("json");
    let records = body["records"].as_array_mut().expect("records");
    for record in records.iter_mut() {
        let object = record.as_object_mut().expect("an object");
        for _ in 0..u.int_in_range(0..=4u8).unwrap_or(0) {
            let key = match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => "server_name".to_string(),
                1 => "timestamp".to_string(),
                2 => "profile".to_string(),
                _ => metric_name(u),
            };
            let value = match u.int_in_range(0..=5u8).unwrap_or(0) {
                0 => serde_json::json!(int(u)),
                1 => serde_json::Number::from_f64(float(u))
                    .map_or(serde_json::Value::Null, Into::into),
                2 => serde_json::json!(name(u, "ppdb001")),
                3 => serde_json::json!([1, 2, {"a": null}]),
                4 => serde_json::Value::Null,
                _ => serde_json::json!("2026-13-45T99:00:00Z"),
            };
            object.insert(key, value);
        }
    }
    if u.ratio(1, 10u8).unwrap_or(false) {
        let n = u.int_in_range(0..=2_000usize).unwrap_or(0);
        let copy = records.first().cloned().unwrap_or_default();
        records.extend(std::iter::repeat_n(copy, n));
    }
    serde_json::to_vec(&body).expect("json")
}

pub(crate) fn mutate_bytes(input: &[u8], rng: &mut Pcg64) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=8u8) {
        let len = out.len();
        match rng.random_range(0..7u8) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                out[at] ^= 1 << rng.random_range(0..8u8);
            }
            1 if len > 0 => out.truncate(rng.random_range(0..len)),
            2 => {
                let at = rng.random_range(0..=len);
                let run: Vec<u8> = (0..rng.random_range(1..16usize))
                    .map(|_| rng.random())
                    .collect();
                out.splice(at..at, run);
            }
            3 if len > 1 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                out.drain(start..end);
            }
            4 if len > 1 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                let chunk = out[start..end].to_vec();
                let at = rng.random_range(0..=out.len());
                out.splice(at..at, chunk);
            }
            5 if len > 0 => {
                // MessagePack markers and boundary bytes: nil, false, true, bin/str/array/map
                // headers of every width, fixints at the edges.
                const INTERESTING: [u8; 16] = [
                    0xc0, 0xc2, 0xc3, 0xc4, 0xc6, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xcb, 0xcf,
                    0xd3, 0x7f, 0xff,
                ];
                let at = rng.random_range(0..len);
                out[at] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            _ if len > 0 => {
                let at = rng.random_range(0..len);
                out[at] = rng.random();
            }
            _ => out.push(rng.random()),
        }
    }
    out
}
