//! A three-node nats-server cluster on loopback, started from the repository's own node
//! configs (`nats/cluster/n1.conf`..`n3.conf`, which include `nats/auth.conf`): only the
//! addresses (client port, route port, routes, monitor) and the store folder are given on the
//! command line, as [`NatsServer::start_node`] does. Nodes can be killed (SIGKILL) and
//! restarted on the same ports with the same store. The configs require TLS: each cluster
//! gets its own CA and certificate from `scripts/nats-certs`, and its settings that CA.

use super::{authenticated_settings, launch, nats_certs, repo_file};
use async_nats::jetstream::stream;
use fleetcast::bus::{Bus, ClusterNode, NatsServer};
use fleetcast::settings::Settings;
use fleetcast::subjects::StreamKind;
use std::path::PathBuf;
use std::time::Duration;

/// Nodes in the cluster.
pub const NODES: usize = 3;

/// Three clustered servers with the per-actor users, and settings naming all three.
pub struct TestCluster {
    nodes: Vec<Option<NatsServer>>,
    client_ports: Vec<u16>,
    route_ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    /// The nodes' TLS files (`NATS_TLS_*_FILE`, which the configs read).
    tls_env: Vec<(String, String)>,
    /// Settings with `nats.url` listing the three nodes, `nats.stream_replicas = 3` and a
    /// user per role.
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

/// `count` distinct loopback ports free now, each node's client and route port (the route
/// ports must be known before the nodes start, as every node's routes name all three; a
/// client port the server picked itself could be one of them). All are held open until all
/// are picked, so none comes twice.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("its address").port())
        .collect()
}

impl TestCluster {
    /// Starts the three nodes (each on a free client port, its route port, routes to all
    /// three).
    pub fn start() -> TestCluster {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut ports = free_ports(2 * NODES);
        let tls = dir.path().join("tls");
        let tls_env = nats_certs(&tls, &[]);
        let mut settings = authenticated_settings();
        settings.nats.tls.ca_file = tls.join("ca.pem").to_string_lossy().into_owned();
        let mut cluster = TestCluster {
            nodes: (0..NODES).map(|_| None).collect(),
            route_ports: ports.split_off(NODES),
            client_ports: ports,
            dirs: (1..=NODES)
                .map(|node| dir.path().join(format!("n{node}")))
                .collect(),
            tls_env,
            settings,
            _dir: dir,
        };
        for node in 0..NODES {
            cluster.restart(node);
        }
        cluster.settings.nats.url = (0..NODES)
            .map(|node| cluster.url(node))
            .collect::<Vec<_>>()
            .join(",");
        cluster.settings.nats.embedded = false;
        cluster.settings.nats.stream_replicas = NODES;
        cluster.settings.nats.data_dir = cluster.dirs[0].clone();
        cluster
    }

    /// Starts node `node` (0-based: `nats/cluster/n{node+1}.conf`) again, on its ports and
    /// with its store, when it is not running.
    pub fn restart(&mut self, node: usize) {
        if self.nodes[node].is_some() {
            return;
        }
        let config = repo_file(&format!("nats/cluster/n{}.conf", node + 1));
        let server = launch(
            &self.settings,
            Some(&config),
            self.client_ports[node],
            &self.dirs[node],
            Some(&ClusterNode {
                port: self.route_ports[node],
                routes: self.route_ports.clone(),
            }),
            &self.tls_env,
        );
        self.client_ports[node] = server.port();
        self.nodes[node] = Some(server);
    }

    /// Kills node `node` with SIGKILL (no shutdown of any kind) and waits until it is gone.
    pub fn kill(&mut self, node: usize) {
        let server = self.nodes[node].take().expect("the node runs");
        let status = std::process::Command::new("kill")
            .args(["-9", &server.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {}", server.pid());
        // Dropping it reaps the process (it signals a dead process, which is harmless).
        drop(server);
    }

    /// The client URL of node `node`.
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[node])
    }

    /// Which node (0-based) is named `name` (`n1`..`n3`, the configs' `server_name`).
    pub fn node_named(&self, name: &str) -> usize {
        (0..NODES)
            .find(|node| name == format!("n{}", node + 1))
            .unwrap_or_else(|| panic!("no node is named {name}"))
    }

    /// Node `node`'s log.
    pub fn server_log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dirs[node].join("nats-server.log")).unwrap_or_default()
    }

    /// The admin's bus with the R3 streams created, once the cluster has formed (its
    /// JetStream meta group has a leader) and every stream has elected its leader (before,
    /// a stream's info requests go unanswered): retried until then, at most 30 s.
    pub async fn bus(&self) -> Bus {
        let bus = Bus::connect(&self.settings.nats)
            .await
            .expect("the admin connects");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match bus.ensure_streams().await {
                Ok(()) if streams_led(&bus).await => return bus,
                Ok(()) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "cluster not ready");
                    // The meta group elects its leader within a few seconds.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!(
                    "the cluster did not take the streams within 30 s: {error:?}\n{}",
                    self.server_log(0)
                ),
            }
        }
    }
}

/// Whether every stream answers its info and `check` holds for each.
pub async fn every_stream(bus: &Bus, check: impl Fn(&stream::Info) -> bool) -> bool {
    for kind in StreamKind::ALL {
        let Ok(mut stream) = bus
            .jetstream()
            .get_stream(bus.subjects().stream_name(kind))
            .await
        else {
            return false;
        };
        match stream.info().await {
            Ok(info) if check(info) => {}
            _ => return false,
        }
    }
    true
}

/// Whether every stream answers its info with a leader and all its replicas current.
async fn streams_led(bus: &Bus) -> bool {
    every_stream(bus, |info| {
        info.cluster.as_ref().is_some_and(|cluster| {
            cluster.leader.is_some()
                && cluster.replicas.len() + 1 >= NODES
                && cluster.replicas.iter().all(|replica| replica.current)
        })
    })
    .await
}

impl Drop for TestCluster {
    /// A failing test shows what the nodes warned about.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in 0..NODES {
                let log = self.server_log(node);
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|line| line.contains("[WRN]") || line.contains("[ERR]"))
                    .collect();
                eprintln!(
                    "--- n{} ({} warnings and errors, the last 12) ---",
                    node + 1,
                    lines.len()
                );
                for line in &lines[lines.len().saturating_sub(12)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}
