//! A private `nats-server` process, for `fleetcast up` and the tests, that never outlives
//! the process that started it.
//!
//! - **Parent death.** The server is started with `PR_SET_PDEATHSIG` (SIGTERM) from a thread
//!   of its own that lives exactly as long as the [`NatsServer`] value (the kernel signals
//!   the child when the *thread* that forked it ends, so a pooled thread would be wrong).
//!   A `kill -9` of fleetcast therefore stops the server too.
//! - **Stale servers.** `up` writes `fleetcast-nats.pid` (server pid and owner pid) into the
//!   data folder; at the next start, a server named there whose owner is gone is a leftover
//!   of an earlier run (a machine without parent-death signals, an older build) and is
//!   stopped before anything connects, instead of being silently reused.
//! - **Stopping.** Dropping the value sends SIGTERM (nats-server flushes and exits) and, after
//!   [`STOP_GRACE`], SIGKILL.

use super::{Bus, BusError};
use crate::settings::NatsSettings;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stopping server gets to exit on SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The file in the data folder naming a private server and the fleetcast process owning it.
pub const PID_FILE: &str = "fleetcast-nats.pid";

/// How a [`NatsServer`] joins a cluster on loopback ([`NatsServer::start_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its route port on 127.0.0.1.
    pub port: u16,
    /// The route ports (127.0.0.1) it solicits: every node's, its own included (a route to
    /// itself is recognised and dropped), as `nats/cluster/n1.conf` lists all three.
    pub routes: Vec<u16>,
}

impl ClusterNode {
    fn args(&self) -> Vec<String> {
        let routes = self
            .routes
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", self.port),
            "--routes".into(),
            routes,
            "-m".into(),
            "-1".into(),
        ]
    }
}

/// A nats-server child process with JetStream on; stopped on drop.
#[derive(Debug)]
pub struct NatsServer {
    pid: u32,
    url: String,
    port: u16,
    /// Dropping it tells the parent thread to stop the server.
    stop: Option<mpsc::Sender<()>>,
    parent: Option<std::thread::JoinHandle<()>>,
    /// The pid file to remove on drop, when this server has one.
    pid_file: Option<PathBuf>,
}

impl NatsServer {
    /// Starts `nats-server -js` on loopback `port` (0 lets the server pick a free one) with
    /// its JetStream data under `data_dir`, and waits until it listens.
    ///
    /// The port is read back from the ports file the server writes once it listens (named
    /// after its own process id), never guessed beforehand: two servers started at the same
    /// moment can then never end up sharing one port, and a port taken by another process
    /// is reported as this server's exit instead of being mistaken for it.
    ///
    /// # Errors
    /// [`BusError::DataDir`], [`BusError::Spawn`], [`BusError::ServerExited`] or
    /// [`BusError::ServerSilent`] when it does not start, exits, or does not listen within
    /// 10 s.
    pub fn start(binary: &Path, port: u16, data_dir: &Path) -> Result<NatsServer, BusError> {
        NatsServer::start_with(binary, port, data_dir, None, &[])
    }

    /// As [`NatsServer::start`], reading `config` first when given (`nats-server -c`; e.g.
    /// `nats/auth.conf` with the per-actor users). The address, port, JetStream and data
    /// folder given here override the file's. The server inherits this process's
    /// environment plus `env`, where `nats/auth.conf` finds its passwords
    /// ([`password_env`]).
    ///
    /// # Errors
    /// As [`NatsServer::start`]; a config the server refuses (a password variable unset) is
    /// [`BusError::ServerExited`], with the reason in `data_dir/nats-server.log`.
    pub fn start_with(
        binary: &Path,
        port: u16,
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<NatsServer, BusError> {
        NatsServer::start_node(binary, port, data_dir, config, env, None)
    }

    /// As [`NatsServer::start_with`], as one node of a cluster when `cluster` is given: its
    /// route listener on loopback `cluster.port` and routes to `cluster.routes` (overriding
    /// the config's `cluster.listen` and `routes`, e.g. those of `nats/cluster/n1.conf`,
    /// written for docker hostnames; the cluster's name and the server's come from the
    /// config), and its HTTP monitor on a free port (the config's 8222 would collide between
    /// nodes on one host).
    ///
    /// # Errors
    /// As [`NatsServer::start_with`].
    pub fn start_node(
        binary: &Path,
        port: u16,
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(String, String)],
        cluster: Option<&ClusterNode>,
    ) -> Result<NatsServer, BusError> {
        std::fs::create_dir_all(data_dir).map_err(|source| BusError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let port_arg = if port == 0 {
            "-1".to_string()
        } else {
            port.to_string()
        };
        let mut command = Command::new(binary);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        command.envs(env.iter().map(|(name, value)| (name, value)));
        command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(data_dir)
            .arg("--ports_file_dir")
            .arg(data_dir)
            .arg("--log")
            .arg(data_dir.join("nats-server.log"))
            .args(cluster.map(ClusterNode::args).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let exited = Arc::new(Mutex::new(None));
        let (pid, stop, parent) =
            spawn_with_parent(command, exited.clone()).map_err(|source| BusError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let mut server = NatsServer {
            pid,
            url: String::new(),
            port: 0,
            stop: Some(stop),
            parent: Some(parent),
            pid_file: None,
        };
        let ports_file = data_dir.join(format!(
            "{}_{pid}.ports",
            binary
                .file_name()
                .map_or("nats-server".into(), |name| name.to_string_lossy()),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        server.port = loop {
            if let Some(port) = read_ports_file(&ports_file) {
                break port;
            }
            if let Some(status) = *exited.lock().expect("exit status lock") {
                return Err(BusError::ServerExited {
                    status,
                    port: port_arg,
                });
            }
            if Instant::now() > deadline {
                return Err(BusError::ServerSilent { seconds: 10 });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&ports_file);
        server.url = format!("nats://127.0.0.1:{}", server.port);
        Ok(server)
    }

    /// Its URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, e.g. to kill it in a failure test.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Records this server and its owner (this process) in `data_dir`'s pid file, removed
    /// again on drop, so a later start can tell a leftover from a server in use.
    fn write_pid_file(&mut self, data_dir: &Path) {
        let path = data_dir.join(PID_FILE);
        match std::fs::write(&path, format!("{} {}\n", self.pid, std::process::id())) {
            Ok(()) => self.pid_file = Some(path),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot write the pid file")
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(parent) = self.parent.take() {
            let _ = parent.join();
        }
        if let Some(path) = &self.pid_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Spawns `command` from a thread of its own, with the parent-death signal set, and keeps
/// that thread alive until the returned sender is dropped; then it stops the child. The
/// child's exit status goes into `exited` as soon as it is seen.
fn spawn_with_parent(
    mut command: Command,
    exited: Arc<Mutex<Option<ExitStatus>>>,
) -> std::io::Result<(u32, mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (started_tx, started_rx) = mpsc::channel::<std::io::Result<u32>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let parent = std::thread::Builder::new()
        .name("nats-server-parent".into())
        .spawn(move || {
            let parent_pid = std::process::id();
            // SAFETY: the closure runs in the forked child before exec and only makes
            // async-signal-safe calls (prctl, getppid).
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died before the signal was armed.
                    if libc::getppid() as u32 != parent_pid {
                        return Err(std::io::Error::other("parent exited during start"));
                    }
                    Ok(())
                });
            }
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                    return;
                }
            };
            let _ = started_tx.send(Ok(child.id()));
            // Until told to stop (or the value is dropped), note an exit as soon as it happens.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stop_rx.recv_timeout(Duration::from_millis(50))
            {
                if let Ok(Some(status)) = child.try_wait() {
                    *exited.lock().expect("exit status lock") = Some(status);
                    return;
                }
            }
            stop_child(&mut child);
        })?;
    let pid = started_rx
        .recv()
        .map_err(|_| std::io::Error::other("the parent thread ended early"))??;
    Ok((pid, stop_tx, parent))
}

/// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; reaps the child.
fn stop_child(child: &mut Child) {
    terminate(child.id());
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid we were given; no memory is touched.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// Whether process `pid` exists (a zombie counts).
fn process_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks the pid.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` is a nats-server keeping its data in `data_dir`.
fn is_private_server(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|&byte| byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let dir = data_dir.to_string_lossy();
    args.first().is_some_and(|arg| arg.contains("nats-server"))
        && args.iter().any(|arg| *arg == dir)
}

/// Stops a private server left in `data_dir` by an earlier run whose owner is gone, and
/// removes its pid file. Returns its pid when it stopped one. A server whose owner still
/// runs (another `fleetcast up` serving it) is left alone.
pub fn stop_stale_server(data_dir: &Path) -> Option<u32> {
    let path = data_dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut numbers = text.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(server)), Some(Ok(owner))) = (numbers.next(), numbers.next()) else {
        let _ = std::fs::remove_file(&path);
        return None;
    };
    if owner != std::process::id() && process_alive(owner) {
        return None;
    }
    let _ = std::fs::remove_file(&path);
    if !process_alive(server) || !is_private_server(server, data_dir) {
        return None;
    }
    tracing::warn!(
        pid = server,
        data_dir = %data_dir.display(),
        "stopping a private nats-server left running by an earlier fleetcast run"
    );
    terminate(server);
    let deadline = Instant::now() + STOP_GRACE;
    while process_alive(server) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if process_alive(server) {
        // SAFETY: kill(2) on the pid checked above.
        unsafe {
            libc::kill(server as libc::pid_t, libc::SIGKILL);
        }
    }
    Some(server)
}

/// Finds the nats-server binary: `configured` when non-empty, else `.tools/bin/nats-server`
/// under the current directory, else `nats-server` on `PATH`, else `/usr/sbin/nats-server`.
///
/// # Errors
/// [`BusError::NoServerBinary`] listing where it looked.
pub fn find_server_binary(configured: &str) -> Result<PathBuf, BusError> {
    if !configured.is_empty() {
        let path = PathBuf::from(configured);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BusError::NoServerBinary {
                looked: configured.to_string(),
            })
        };
    }
    let mut candidates = vec![PathBuf::from(".tools/bin/nats-server")];
    if let Some(root) = option_env!("CARGO_MANIFEST_DIR") {
        candidates.push(Path::new(root).join(".tools/bin/nats-server"));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("nats-server")));
    }
    candidates.push(PathBuf::from("/usr/sbin/nats-server"));
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| BusError::NoServerBinary {
            looked: candidates
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The port of a loopback URL (`nats://127.0.0.1:PORT` or `nats://localhost:PORT`), the only
/// URLs `up` may serve itself.
pub fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("nats://")?;
    let (host, port) = rest.split_once(':')?;
    matches!(host, "127.0.0.1" | "localhost")
        .then(|| port.trim_end_matches('/').parse().ok())
        .flatten()
}

/// Connects as `settings` say; when nothing answers at a loopback URL and `nats.embedded`
/// is on, starts a private server on that port first (after stopping a stale one left in
/// `nats.data_dir`) and returns it too: keep it alive as long as the bus.
///
/// # Errors
/// The connect error when no private server may or can be started.
pub async fn connect_or_embed(
    settings: &NatsSettings,
) -> Result<(Bus, Option<NatsServer>), BusError> {
    let port = loopback_port(&settings.url).filter(|_| settings.embedded);
    if let Some(stale) = port.and_then(|_| stop_stale_server(&settings.data_dir)) {
        tracing::info!(pid = stale, "stale private nats-server stopped");
    }
    match Bus::connect(settings).await {
        Ok(bus) => Ok((bus, None)),
        Err(error) => {
            let refused = matches!(
                &error,
                BusError::Connect { source, .. }
                    if source.kind() == async_nats::ConnectErrorKind::AuthorizationViolation
            );
            // A server answers but refuses the user: starting another on its port would fail.
            let Some(port) = port.filter(|_| !refused) else {
                return Err(error);
            };
            tracing::info!(url = %settings.url, reason = %error, "nothing answers: starting a private nats-server");
            let binary = find_server_binary(&settings.server_bin)?;
            let config =
                (!settings.server_config.is_empty()).then(|| Path::new(&settings.server_config));
            let mut server = NatsServer::start_with(
                &binary,
                port,
                &settings.data_dir,
                config,
                &password_env(settings),
            )?;
            server.write_pid_file(&settings.data_dir);
            tracing::info!(
                binary = %binary.display(),
                pid = server.pid(),
                data_dir = %settings.data_dir.display(),
                config = settings.server_config,
                "private nats-server started (jetstream on); it stops when fleetcast exits"
            );
            let bus = Bus::connect(settings).await?;
            Ok((bus, Some(server)))
        }
    }
}

/// The settings' passwords as the environment variables `nats/auth.conf` reads
/// (`FLEETCAST_NATS__USERS__<ROLE>__PASSWORD`), so a private server started with it accepts
/// the users fleetcast connects as, whether their passwords came from the file or the
/// environment.
pub fn password_env(settings: &NatsSettings) -> Vec<(String, String)> {
    crate::settings::BusRole::ALL
        .iter()
        .filter_map(|&role| {
            let user = settings.user(role)?;
            Some((
                format!(
                    "FLEETCAST_NATS__USERS__{}__PASSWORD",
                    role.key().to_uppercase()
                ),
                user.password.clone(),
            ))
        })
        .collect()
}

/// The client port in a nats-server ports file (`{"nats":["nats://127.0.0.1:PORT"]}`), once
/// the file is complete.
fn read_ports_file(path: &Path) -> Option<u16> {
    #[derive(serde::Deserialize)]
    struct Ports {
        nats: Vec<String>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let ports: Ports = serde_json::from_str(&text).ok()?;
    ports.nats.first()?.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only loopback URLs with a port may be served by a private server.
    #[test]
    fn loopback_urls_only() {
        assert_eq!(loopback_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(loopback_port("nats://localhost:5000"), Some(5000));
        assert_eq!(loopback_port("nats://10.0.0.1:4222"), None);
        assert_eq!(loopback_port("tls://127.0.0.1:4222"), None);
        assert_eq!(loopback_port("nats://127.0.0.1"), None);
    }

    /// A pid file whose owner is alive (this process) names a server in use: left alone.
    #[test]
    fn a_live_owner_keeps_its_server() {
        let dir = tempfile::tempdir().unwrap();
        // The "server" is this process too: alive, but owned by a live process.
        let me = std::process::id();
        std::fs::write(dir.path().join(PID_FILE), format!("{me} 1\n")).unwrap();
        // pid 1 is alive: the owner runs, nothing is stopped and the file stays.
        assert_eq!(stop_stale_server(dir.path()), None);
        assert!(dir.path().join(PID_FILE).exists());
        // A dead owner with a server that is not a nats-server: the file goes, nothing is
        // killed.
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{me} {}\n", u32::MAX / 2),
        )
        .unwrap();
        assert_eq!(stop_stale_server(dir.path()), None);
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
