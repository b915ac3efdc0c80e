//! Unit tests of the node_exporter series derivations.

use super::*;

fn cpu(cpu: &str, mode: &str) -> Series {
    Series::Cpu {
        cpu: cpu.into(),
        mode: mode.into(),
    }
}

fn page(
    state: &mut NodeState,
    ts_ms: i64,
    series: &[(Series, f64)],
) -> Vec<(i64, BTreeMap<String, f64>)> {
    for (series, value) in series {
        state.add(ts_ms, series.clone(), *value);
    }
    state.ready(&NodeConfig::default(), Some(ts_ms))
}

/// Two CPUs: each mode's share of all modes' increase; nice counts as user, irq as sys.
#[test]
fn cpu_shares_come_from_two_timestamps() {
    let mut state = NodeState::new();
    let first = page(
        &mut state,
        0,
        &[
            (cpu("0", "user"), 10.0),
            (cpu("0", "idle"), 100.0),
            (cpu("1", "nice"), 5.0),
            (cpu("1", "irq"), 1.0),
        ],
    );
    assert!(first.is_empty(), "one timestamp gives no rate: {first:?}");
    let second = page(
        &mut state,
        15_000,
        &[
            (cpu("0", "user"), 16.0),
            (cpu("0", "idle"), 110.0),
            (cpu("1", "nice"), 7.0),
            (cpu("1", "irq"), 3.0),
        ],
    );
    let metrics = &second[0].1;
    // Increases: user 6 + nice 2 = 8, idle 10, irq 2: total 20.
    assert_eq!(metrics["cpu_user_pct"], 40.0);
    assert_eq!(metrics["cpu_idle_pct"], 50.0);
    assert_eq!(metrics["cpu_sys_pct"], 10.0);
    assert_eq!(metrics["cpu_iowait_pct"], 0.0);
}

/// A counter that goes down is a reset: the rate is left out once, then resumes.
#[test]
fn a_counter_reset_skips_one_rate() {
    let mut state = NodeState::new();
    let rx = |value| (Series::NetRx("eth0".into()), value);
    page(&mut state, 0, &[rx(5e6)]);
    assert_eq!(
        page(&mut state, 10_000, &[rx(25e6)])[0].1["net_in_mb_s"],
        2.0
    );
    assert!(page(&mut state, 20_000, &[rx(1e6)]).is_empty());
    assert_eq!(state.resets(), 1);
    assert_eq!(
        page(&mut state, 30_000, &[rx(11e6)])[0].1["net_in_mb_s"],
        1.0
    );
}

/// Remote write: a group split over two requests is settled only when complete.
#[test]
fn split_groups_wait_for_every_series() {
    let config = NodeConfig::default();
    let mut state = NodeState::new();
    for (ts, user, idle) in [(0, 1.0, 1.0), (15_000, 2.0, 2.0)] {
        state.add(ts, cpu("0", "user"), user);
        state.add(ts, cpu("0", "idle"), idle);
    }
    // The first timestamp became the base when the second started; the second is
    // complete (same series set).
    let out = state.ready(&config, None);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1["cpu_user_pct"], 50.0);
    state.add(30_000, cpu("0", "user"), 4.0);
    assert!(
        state.ready(&config, None).is_empty(),
        "idle has not arrived"
    );
    state.add(30_000, cpu("0", "idle"), 2.0);
    let out = state.ready(&config, None);
    assert_eq!(out[0].1["cpu_user_pct"], 100.0);
}

/// Gauges: memory, swap (0 without swap), df's disk usage, load, uptime in whole days.
#[test]
fn gauges_follow_their_formulas() {
    let mut state = NodeState::new();
    let out = page(
        &mut state,
        10 * 86_400_000 + 5,
        &[
            (Series::MemTotal, 200.0),
            (Series::MemAvailable, 50.0),
            (Series::SwapTotal, 0.0),
            (Series::SwapFree, 0.0),
            (Series::FsSize, 100.0),
            (Series::FsFree, 30.0),
            (Series::FsAvail, 20.0),
            (Series::Load, 1.5),
            (Series::BootTime, 86_400.0 * 7.5),
            (Series::TcpstatUp, 1.0),
        ],
    );
    let metrics = &out[0].1;
    assert_eq!(metrics["mem_used_pct"], 75.0);
    assert_eq!(metrics["swap_used_pct"], 0.0);
    assert!((metrics["disk_usage_pct"] - 70.0 / 90.0 * 100.0).abs() < 1e-9);
    assert_eq!(metrics["load_average"], 1.5);
    assert_eq!(metrics["uptime_days"], 2.0);
    assert_eq!(metrics["front_close_wait"], 0.0);
    assert_eq!(metrics.len(), 6);
}

/// Missing series give absent metrics, never zeros (close-wait without tcpstat included).
#[test]
fn missing_series_are_absent() {
    let mut state = NodeState::new();
    let out = page(
        &mut state,
        0,
        &[(Series::MemTotal, 200.0), (Series::Load, 0.5)],
    );
    assert_eq!(out[0].1.keys().collect::<Vec<_>>(), ["load_average"]);
}

/// Nothing older than a published timestamp goes out.
#[test]
fn values_are_published_in_time_order() {
    let config = NodeConfig::default();
    let mut state = NodeState::new();
    state.add(20_000, Series::Load, 1.0);
    assert_eq!(state.ready(&config, None).len(), 1);
    state.add(10_000, Series::Load, 2.0);
    assert!(state.ready(&config, None).is_empty());
}

/// Names: a label wins, then a DNS host, then the node name; bad characters become `-`.
#[test]
fn server_names() {
    assert_eq!(
        server_name(Some("web-1"), "db", Some("x")).unwrap(),
        "web-1"
    );
    assert_eq!(
        server_name(None, "db7.example.com", Some("x")).unwrap(),
        "db7-example-com"
    );
    assert_eq!(server_name(None, "127.0.0.1", Some("vm")).unwrap(), "vm");
    assert_eq!(server_name(None, "localhost", Some("vm")).unwrap(), "vm");
    assert_eq!(server_name(None, "[::1]", None), None);
    assert_eq!(host_of("[::1]:9100"), "[::1]");
    assert_eq!(host_of("node:9100"), "node");
}
