//! The fleet's fixed layout: how many servers of each profile, their names, the seeded
//! choices (problem children, incident-prone servers, which servers a scenario drives) and
//! the dependency graph a cascade travels along.

use super::profiles::{EDGES, Impact};
use super::{MAX_SERVERS, SimError};
use crate::catalog::Profile;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// One server's fixed description.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Name, e.g. `ppdb003`.
    pub name: String,
    /// Profile.
    pub profile: Profile,
    /// Number within its profile, from 1.
    pub ordinal: u32,
    /// More incidents: CRITICAL ×2 and OFFLINE ×1.5 in the Markov matrix, cascades ×1.5.
    pub problem_child: bool,
    /// Gets injected incident ramps (problem children and 20 % of the others).
    pub incident_prone: bool,
    pub(super) upstreams: Vec<Dependency>,
}

/// One upstream server a dependent feels in a cascade, and how.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Dependency {
    pub(super) upstream: u32,
    pub(super) impacts: &'static [(Impact, f64)],
    pub(super) strength: f64,
}

/// The fleet's fixed layout: servers, dependency graph and the seeded choices of which
/// servers each scenario drives. Cheap to share (the actor answers scenario requests from
/// it while a step is being computed elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetLayout {
    pub(super) servers: Vec<ServerSpec>,
    pub(super) scenario_rank: Vec<u32>,
    pub(super) cascade_sources: Vec<u32>,
}

/// Profile counts for a fleet of `servers` (catalog §3), in [`Profile::ALL`] order.
pub fn composition(servers: u32) -> [(Profile, u32); 7] {
    const SHARES: [(Profile, f64); 7] = [
        (Profile::WebApi, 0.28),
        (Profile::MlCompute, 0.22),
        (Profile::Database, 0.17),
        (Profile::DataIngest, 0.11),
        (Profile::RiskAnalytics, 0.09),
        (Profile::Generic, 0.07),
        (Profile::ConductorMgmt, 0.06),
    ];
    let mut counts = Profile::ALL.map(|profile| (profile, 0_u32));
    if servers < 7 {
        for (profile, _) in SHARES.iter().take(servers as usize) {
            counts[profile.index()].1 = 1;
        }
        return counts;
    }
    let mut others = 0_u32;
    for &(profile, share) in &SHARES[1..] {
        // int(n·p) as the original; truncation is intended.
        let mut count = ((f64::from(servers) * share) as u32).max(1);
        if profile == Profile::Generic {
            count = count.min(10);
        }
        counts[profile.index()].1 = count;
        others += count;
    }
    counts[Profile::WebApi.index()].1 = servers.saturating_sub(others);
    counts
}

/// The name of server `ordinal` (from 1) of `profile`.
pub fn server_name(profile: Profile, ordinal: u32) -> String {
    match profile {
        Profile::MlCompute => format!("ppml{ordinal:04}"),
        Profile::Database => format!("ppdb{ordinal:03}"),
        Profile::WebApi => format!("ppweb{ordinal:03}"),
        Profile::ConductorMgmt => format!("ppcon{ordinal:02}"),
        Profile::DataIngest => format!("ppetl{ordinal:03}"),
        Profile::RiskAnalytics => format!("pprisk{ordinal:03}"),
        Profile::Generic => format!("ppgen{ordinal:03}"),
    }
}

/// splitmix64's finaliser: a strong 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a per-server random stream is for.
#[derive(Clone, Copy)]
pub(super) enum Purpose {
    Values = 1,
    Markov,
    Incidents,
    Cascades,
    Traits,
    ProblemChild,
    ScenarioRank,
    CascadeSource,
}

/// The seed of one server's stream: a function of (seed, profile, ordinal, purpose) only.
fn stream_seed(seed: u64, profile: Profile, ordinal: u32, purpose: Purpose) -> u64 {
    let mut h = mix(seed);
    h = mix(h ^ (profile.index() as u64 + 1));
    h = mix(h ^ u64::from(ordinal));
    mix(h ^ purpose as u64)
}

/// One server's random stream for `purpose`.
pub(super) fn stream(seed: u64, spec: &ServerSpec, purpose: Purpose) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(stream_seed(seed, spec.profile, spec.ordinal, purpose))
}

impl FleetLayout {
    /// Lays out a fleet: names, profiles, problem children, dependency graph and scenario
    /// choices.
    ///
    /// # Errors
    /// [`SimError::Servers`] or [`SimError::ProblemChildShare`] for values out of range.
    pub fn build(servers: u32, seed: u64, problem_child_share: f64) -> Result<Self, SimError> {
        if !(1..=MAX_SERVERS).contains(&servers) {
            return Err(SimError::Servers(servers));
        }
        if !(0.0..=0.5).contains(&problem_child_share) {
            return Err(SimError::ProblemChildShare(problem_child_share));
        }
        let counts = composition(servers);
        let mut first_index = [0_u32; 7];
        let mut specs = Vec::with_capacity(servers as usize);
        for (profile, count) in counts {
            first_index[profile.index()] = specs.len() as u32;
            for ordinal in 1..=count {
                specs.push(ServerSpec {
                    name: server_name(profile, ordinal),
                    profile,
                    ordinal,
                    problem_child: false,
                    incident_prone: false,
                    upstreams: Vec::new(),
                });
            }
        }
        let key =
            |spec: &ServerSpec, purpose| stream_seed(seed, spec.profile, spec.ordinal, purpose);
        let ranked =
            |purpose: Purpose, specs: &[ServerSpec], filter: &dyn Fn(&ServerSpec) -> bool| {
                let mut indices: Vec<u32> = (0..specs.len() as u32)
                    .filter(|&index| filter(&specs[index as usize]))
                    .collect();
                indices.sort_by_key(|&index| key(&specs[index as usize], purpose));
                indices
            };
        let problem_children = (f64::from(servers) * problem_child_share).round() as usize;
        for index in ranked(Purpose::ProblemChild, &specs, &|_| true)
            .into_iter()
            .take(problem_children)
        {
            specs[index as usize].problem_child = true;
        }
        for spec in &mut specs {
            let mut traits = stream(seed, spec, Purpose::Traits);
            spec.incident_prone = spec.problem_child || traits.random_bool(0.2);
            for edge in EDGES.iter().filter(|edge| edge.downstream == spec.profile) {
                let upstream_count = counts[edge.upstream.index()].1;
                if upstream_count == 0 {
                    continue;
                }
                spec.upstreams.push(Dependency {
                    upstream: first_index[edge.upstream.index()]
                        + (spec.ordinal - 1) % upstream_count,
                    impacts: edge.impacts,
                    strength: edge
                        .impacts
                        .iter()
                        .map(|&(_, strength)| strength)
                        .fold(0.0, f64::max),
                });
            }
        }
        let scenario_rank = ranked(Purpose::ScenarioRank, &specs, &|_| true);
        let cascade_sources: Vec<u32> = ranked(Purpose::CascadeSource, &specs, &|spec| {
            spec.profile == Profile::Database
        })
        .into_iter()
        .take(2)
        .collect();
        Ok(FleetLayout {
            servers: specs,
            scenario_rank,
            cascade_sources,
        })
    }

    /// Every server, by index.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    /// Simulation size.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the fleet is empty (never: a fleet has at least one server).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}
