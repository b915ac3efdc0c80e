//! What tests, the gateway and in-process batch prediction may ask the window keeper: one
//! server's window, the fleet's warm-up, the memory the windows hold, and the ready windows as
//! predict jobs.

use super::WindowKeeper;
use super::window::ServerWindow;
use crate::catalog::METRIC_COUNT;
use crate::samples::{MetricMask, WindowShape};
use crate::wire::PredictJob;
use actix::prelude::*;

/// One server's window as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// Server name.
    pub server: String,
    /// Profile in use (wire name).
    pub profile: String,
    /// Closed steps held.
    pub filled: u32,
    /// Closed steps a full window holds.
    pub capacity: u32,
    /// Some metric has enough observed steps: jobs are published for it.
    pub ready: bool,
    /// Closed steps' values, step-major (`[step * 14 + metric]`), oldest first, NaN where
    /// not measured.
    pub values: Vec<f32>,
    /// Per closed step, oldest first: bit `m` set when metric `m` was measured.
    pub measured: Vec<MetricMask>,
    /// Closed steps held that were gaps (no sample at all).
    pub gap_steps: u32,
    /// Start of the newest closed step, unix seconds.
    pub last_step_s: Option<i64>,
    /// Start of the open step, unix seconds.
    pub open_step_s: Option<i64>,
}

impl WindowSnapshot {
    fn of(server: &str, window: &ServerWindow, shape: WindowShape, min_observed: usize) -> Self {
        let mut values = Vec::with_capacity(window.filled() * METRIC_COUNT);
        window.values_into(&mut values);
        Self {
            server: server.to_string(),
            profile: window.profile.name().to_string(),
            filled: window.filled() as u32,
            capacity: window.capacity() as u32,
            ready: window.is_ready(min_observed),
            values,
            measured: window.measured_marks(),
            gap_steps: window.gap_steps() as u32,
            last_step_s: window
                .newest_closed_step()
                .map(|step| shape.step_start_s(step)),
            open_step_s: window.open_step().map(|step| shape.step_start_s(step)),
        }
    }
}

/// Reads one server's window; `None` for a server never seen.
#[derive(Debug, Message)]
#[rtype(result = "Option<WindowSnapshot>")]
pub struct GetWindow {
    /// Server name.
    pub server: String,
}

impl Handler<GetWindow> for WindowKeeper {
    type Result = MessageResult<GetWindow>;

    fn handle(&mut self, request: GetWindow, _: &mut Self::Context) -> Self::Result {
        let fleet = &self.ingest.fleet;
        MessageResult(fleet.window(&request.server).map(|window| {
            let rules = fleet.rules();
            WindowSnapshot::of(&request.server, window, rules.shape, rules.min_observed)
        }))
    }
}

/// One server's warm-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerWarmup {
    /// Server name.
    pub server: String,
    /// Closed steps held.
    pub filled: u32,
    /// Observed steps of its best-observed metric.
    pub observed: u32,
    /// Observed steps a metric needs to be forecast.
    pub needed: u32,
    /// Some metric has enough observed steps.
    pub ready: bool,
}

/// Fleet warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Warmup {
    /// Servers with a window.
    pub servers_tracked: u32,
    /// Servers whose window is ready.
    pub servers_ready: u32,
    /// Mean over servers of filled/needed, 0–100.
    pub warmup_pct: f64,
    /// Per server, sorted by name (empty unless asked for).
    pub per_server: Vec<ServerWarmup>,
}

/// Reads the fleet's warm-up, per server when `per_server` is set.
#[derive(Debug, Message)]
#[rtype(result = "Warmup")]
pub struct GetWarmup {
    /// Include every server's warm-up.
    pub per_server: bool,
}

impl Handler<GetWarmup> for WindowKeeper {
    type Result = MessageResult<GetWarmup>;

    fn handle(&mut self, request: GetWarmup, _: &mut Self::Context) -> Self::Result {
        MessageResult(warmup(&self.ingest.fleet, request.per_server))
    }
}

/// The fleet's warm-up, per server when `per_server` is set.
pub(super) fn warmup(fleet: &super::fleet::Fleet, per_server: bool) -> Warmup {
    let (ready, warmup_pct) = fleet.warmup();
    let mut servers: Vec<ServerWarmup> = Vec::new();
    if per_server {
        servers = fleet
            .windows()
            .map(|(server, window)| ServerWarmup {
                server: server.to_string(),
                filled: window.filled() as u32,
                observed: window.observed_most() as u32,
                needed: fleet.rules().min_observed as u32,
                ready: window.is_ready(fleet.rules().min_observed),
            })
            .collect();
        servers.sort_by(|a, b| a.server.cmp(&b.server));
    }
    Warmup {
        servers_tracked: fleet.len() as u32,
        servers_ready: ready as u32,
        warmup_pct,
        per_server: servers,
    }
}

/// Memory held by the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReport {
    /// Servers tracked.
    pub servers: usize,
    /// Bytes held by windows and the server map (from the data structures' sizes).
    pub bytes: usize,
}

/// Reads the memory the windows hold.
#[derive(Debug, Message)]
#[rtype(result = "MemoryReport")]
pub struct GetMemory;

impl Handler<GetMemory> for WindowKeeper {
    type Result = MessageResult<GetMemory>;

    fn handle(&mut self, _: GetMemory, _: &mut Self::Context) -> Self::Result {
        MessageResult(MemoryReport {
            servers: self.ingest.fleet.len(),
            bytes: self.ingest.fleet.memory_bytes(),
        })
    }
}

/// Takes a batch of the ready windows as predict jobs, in server-name order: up to `limit`
/// servers whose name sorts after `after` (page through the fleet by passing the last
/// server of the previous page). For in-process batch prediction; the bus path is the
/// `jobs.predict.<server>` stream.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PredictJob>")]
pub struct GetFullWindows {
    /// Start after this server name (`None`: from the first).
    pub after: Option<String>,
    /// Most jobs returned.
    pub limit: usize,
}

impl Handler<GetFullWindows> for WindowKeeper {
    type Result = MessageResult<GetFullWindows>;

    fn handle(&mut self, request: GetFullWindows, _: &mut Self::Context) -> Self::Result {
        let fleet = &self.ingest.fleet;
        let mut ready: Vec<&str> = fleet
            .windows()
            .filter(|(server, window)| {
                window.is_ready(fleet.rules().min_observed)
                    && request.after.as_deref().is_none_or(|after| *server > after)
            })
            .map(|(server, _)| server)
            .collect();
        ready.sort_unstable();
        ready.truncate(request.limit);
        MessageResult(
            ready
                .into_iter()
                .filter_map(|server| fleet.job(server))
                .collect(),
        )
    }
}
