//! Scenario control: the scenario as requested on `control.scenario`, shared between the
//! actor (which answers requests) and its clock (which applies a switch before its next
//! step), and the reply to each request.

use crate::sim::{FleetLayout, Scenario, Simulation};
use crate::wire::{SCHEMA_VERSION, ScenarioReply};
use std::sync::{Arc, Mutex};

/// Most server names a scenario reply lists, so it stays well inside NATS's 1 MB payload
/// limit at 100,000 servers.
pub const MAX_LISTED_SERVERS: usize = 10_000;

/// State shared by the actor (control requests) and its clock loop.
#[derive(Debug)]
pub(super) struct Shared {
    layout: Arc<FleetLayout>,
    control: Mutex<Control>,
}

/// The scenario as requested; the clock applies `pending` before its next step.
#[derive(Debug)]
struct Control {
    scenario: Scenario,
    affected: Vec<u32>,
    pending: Vec<Scenario>,
    next_step: u64,
}

impl Shared {
    pub(super) fn new(simulation: &Simulation) -> Shared {
        Shared {
            layout: simulation.layout().clone(),
            control: Mutex::new(Control {
                scenario: simulation.scenario(),
                affected: simulation.affected().to_vec(),
                pending: Vec::new(),
                next_step: simulation.next_step(),
            }),
        }
    }

    /// Applies (or, for `status`, only reports) a scenario request.
    pub(super) fn answer(&self, requested: &str) -> ScenarioReply {
        let mut control = self.control.lock().expect("control lock");
        let old = control.scenario;
        let mut error = None;
        if requested != "status" {
            match requested.parse::<Scenario>() {
                Ok(new) if new == old => {}
                Ok(new) => {
                    control.affected = self.layout.plan(old, new).affected;
                    control.scenario = new;
                    control.pending.push(new);
                }
                Err(_) => {
                    error = Some(format!(
                        "unknown scenario `{requested}`; valid: {} (or `status`)",
                        Scenario::ALL.map(Scenario::name).join(", ")
                    ));
                }
            }
        }
        let servers = self.layout.servers();
        ScenarioReply {
            v: SCHEMA_VERSION,
            ok: error.is_none(),
            error,
            old_scenario: old.name().to_string(),
            new_scenario: control.scenario.name().to_string(),
            affected_servers: control
                .affected
                .iter()
                .take(MAX_LISTED_SERVERS)
                .map(|&index| servers[index as usize].name.clone())
                .collect(),
            affected_total: control.affected.len() as u32,
            step: control.next_step,
            fleet_size: servers.len() as u32,
        }
    }

    /// The switches requested since the last call, for the step numbered `step`: a request
    /// arriving while that step is computed takes effect at the next one.
    pub(super) fn take_pending(&self, step: u64) -> Vec<Scenario> {
        let mut control = self.control.lock().expect("control lock");
        control.next_step = step + 1;
        std::mem::take(&mut control.pending)
    }

    /// The scenario as last requested.
    pub(super) fn scenario(&self) -> Scenario {
        self.control.lock().expect("control lock").scenario
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    /// Replies stay inside NATS's payload limit at 100,000 servers, counting every server.
    #[test]
    fn big_fleet_replies_fit_a_nats_message() {
        let mut config = SimConfig::new(100_000, 42);
        config.scenario = Scenario::Natural;
        let shared = Shared::new(&Simulation::new(&config).unwrap());
        let reply = shared.answer("healthy");
        assert!(reply.ok);
        assert_eq!(reply.affected_total, 100_000);
        assert_eq!(reply.affected_servers.len(), MAX_LISTED_SERVERS);
        assert!(crate::wire::encode(&reply).len() < 512 * 1024);
        assert_eq!(shared.take_pending(0), vec![Scenario::Healthy]);
    }

    /// `status` and a refused name change nothing and queue nothing.
    #[test]
    fn status_and_unknown_names_change_nothing() {
        let shared = Shared::new(&Simulation::new(&SimConfig::new(30, 1)).unwrap());
        let status = shared.answer("status");
        assert!(status.ok);
        assert_eq!(status.new_scenario, "natural");
        let refused = shared.answer("Critical");
        assert!(!refused.ok);
        assert!(
            refused
                .error
                .unwrap()
                .contains("healthy, natural, degrading")
        );
        assert!(shared.take_pending(0).is_empty());
        let degrading = shared.answer("degrading");
        assert_eq!(degrading.affected_total, 6);
        let critical = shared.answer("critical");
        assert_eq!(critical.old_scenario, "degrading");
        assert_eq!(critical.affected_servers, degrading.affected_servers);
    }
}
