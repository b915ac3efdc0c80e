//! The `fleetcast` binary as an operator runs it: one-line errors with their documented exit
//! codes, `up` draining on SIGTERM and exiting 0 within 10 s, and no nats-server outliving a
//! `kill -9` of `up` (nor surviving from an earlier run).

use crate::util::TestNats;
use fleetcast::bus::{NatsServer, PID_FILE, find_server_binary};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_fleetcast");

/// `fleetcast ARGS` in an empty folder (no `fleetcast.toml` there), with `env`.
fn fleetcast(args: &[&str], env: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BINARY);
    command.args(args).current_dir(dir.path());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("fleetcast runs")
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// An unknown scenario name is one line on stderr, nothing on stdout, exit code 2, and no
/// connection attempted (no nats-server is needed to say so).
#[test]
fn unknown_scenario_is_one_line_and_code_2() {
    let output = fleetcast(&["scenario", "bogus"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error: unknown scenario `bogus`; valid: healthy"),
        "{lines:?}"
    );
}

/// Client commands against a bus where nothing runs: `status` and `scenario` say nothing
/// answers (code 4) in one line, without the client library's INFO lines.
#[test]
fn client_commands_say_nothing_answers() {
    let nats = TestNats::start();
    let env = [("FLEETCAST_NATS__URL", nats.settings.nats.url.clone())];
    for args in [
        vec!["status", "--wait", "0.2"],
        vec!["scenario", "critical"],
    ] {
        let output = fleetcast(&args, &env);
        let lines = stderr_lines(&output);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("error: "), "{lines:?}");
    }
    let output = fleetcast(
        &["status"],
        &[("FLEETCAST_NATS__URL", "nats://127.0.0.1:1".into())],
    );
    assert_eq!(output.status.code(), Some(4), "{:?}", stderr_lines(&output));
}

/// Bad settings are code 3, naming the key.
#[test]
fn bad_settings_are_code_3() {
    let output = fleetcast(&["config"], &[("FLEETCAST_GENERATOR__SERVERS", "0".into())]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("generator.servers"));
}

/// A free loopback port (bound and released: another process could take it meanwhile, which
/// would show as nats-server failing to start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `fleetcast up` running with its own private nats-server, a small fast fleet and one
/// predictor worker; stderr is read line by line.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Up {
    fn start(data_dir: &Path, port: u16) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let server = std::fs::canonicalize(find_server_binary("").expect("nats-server installed"))
            .expect("the nats-server binary");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(BINARY)
            .arg("up")
            .current_dir(dir.path())
            .env("FLEETCAST_NATS__URL", format!("nats://127.0.0.1:{port}"))
            .env("FLEETCAST_NATS__DATA_DIR", data_dir)
            .env("FLEETCAST_NATS__SERVER_BIN", server)
            .env("FLEETCAST_GENERATOR__SERVERS", "6")
            .env("FLEETCAST_GENERATOR__BACKFILL_HOURS", "2")
            .env("FLEETCAST_GENERATOR__STEP_INTERVAL_MS", "50")
            .env("FLEETCAST_PREDICTOR__WORKERS", "1")
            .env("FLEETCAST_PREDICTOR__MODEL_DIR", root.join("models/tft-v3"))
            .env("FLEETCAST_GATEWAY__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fleetcast up starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child,
            lines,
            seen: Vec::new(),
            data_dir: data_dir.to_path_buf(),
            _dir: dir,
        }
    }

    /// Reads stderr until a line contains `text` (at most `timeout`).
    fn wait_for(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no `{text}` from fleetcast up: {:#?}", self.seen),
            }
        }
    }

    /// The private server's pid, from the pid file `up` writes.
    fn server_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data_dir.join(PID_FILE)).expect("pid file");
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for the exit (at most `timeout`); the rest of stderr is in `seen`.
    fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let (done, exited) = mpsc::channel();
        let pid = self.child.id();
        let waiter = std::thread::spawn(move || {
            let mut status = 0;
            // SAFETY: waitpid on our own child, once.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
            let _ = done.send(status);
        });
        let status = exited
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("fleetcast up did not exit within {timeout:?}"));
        waiter.join().unwrap();
        self.seen.extend(self.lines.try_iter());
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        (code, started.elapsed())
    }
}

/// Waits until process `pid` has exited (its pidfd turns readable), at most `timeout`;
/// whether it did.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open(2) and poll(2) on a descriptor we own, closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as libc::c_int;
        if fd < 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int);
        libc::close(fd);
        ready == 1
    }
}

/// SIGTERM makes `up` drain (the generator finishes its step, the risk scorer and alert
/// router take what they received and flush, the gateway stops its HTTP server last) and
/// exit 0 within 10 s, stopping its private nats-server.
#[test]
fn sigterm_drains_and_exits_0_within_10_s() {
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path(), free_port());
    up.wait_for("pipeline running", Duration::from_secs(60));
    up.wait_for("backfill done", Duration::from_secs(60));
    let server = up.server_pid();
    up.signal(libc::SIGTERM);
    let (code, took) = up.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{:#?}", up.seen);
    assert!(took < Duration::from_secs(10), "{took:?}");
    for stage in ["generator", "risk_scorer", "alert_router", "gateway"] {
        assert!(
            up.seen
                .iter()
                .any(|line| line.contains("drained") && line.contains(stage)),
            "{stage} did not drain: {:#?}",
            up.seen
        );
    }
    assert!(up.seen.iter().any(|line| line.contains("pipeline stopped")));
    assert!(
        wait_gone(server, Duration::from_secs(3)),
        "nats-server {server} still runs"
    );
    assert!(!data.path().join(PID_FILE).exists());
}

/// `kill -9` of `up` leaves no nats-server behind (the parent-death signal stops it).
#[test]
fn sigkill_leaves_no_nats_server() {
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path(), free_port());
    up.wait_for("pipeline running", Duration::from_secs(60));
    let server = up.server_pid();
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    assert!(
        wait_gone(server, Duration::from_secs(5)),
        "nats-server {server} outlived fleetcast up"
    );
}

/// A private nats-server left running by an earlier run (its owner gone) is stopped when
/// `up` starts, instead of being silently reused.
#[test]
fn a_stale_private_server_is_stopped_at_start() {
    let data = tempfile::tempdir().unwrap();
    let binary = find_server_binary("").unwrap();
    let port = free_port();
    let stale = NatsServer::start(&binary, port, data.path()).expect("a server to leave behind");
    let stale_pid = stale.pid();
    // Its owner: a process that has exited.
    let owner = Command::new("true").spawn().unwrap();
    let owner_pid = owner.id();
    let _ = owner.wait_with_output();
    std::fs::write(
        data.path().join(PID_FILE),
        format!("{stale_pid} {owner_pid}\n"),
    )
    .unwrap();
    let mut up = Up::start(data.path(), port);
    up.wait_for("pipeline running", Duration::from_secs(60));
    assert!(
        up.seen
            .iter()
            .any(|line| line.contains("left running by an earlier fleetcast run")),
        "{:#?}",
        up.seen
    );
    assert!(wait_gone(stale_pid, Duration::from_secs(5)));
    assert_ne!(up.server_pid(), stale_pid);
    up.signal(libc::SIGTERM);
    let (code, _) = up.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{:#?}", up.seen);
    drop(stale);
}
