//! The real monitoring programs for the input tests: Debian's `prometheus-node-exporter` and
//! `prometheus` (installed by `scripts/bootstrap`), each started on a free loopback port
//! (the programs' own port 0; the port they got is read from their log) and killed on drop.
//! A missing program is a loud failure, never a skip.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Finds `names` on `PATH` (then `/usr/bin`), or panics saying how to install it.
fn program(names: &[&str], package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/bin"));
    for name in names {
        for dir in &dirs {
            let path = dir.join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "the input tests need {} (Debian package `{package}`): run scripts/bootstrap, which installs it",
        names.join(" or ")
    );
}

/// A child process killed on drop, its log copied to a file.
struct Running {
    child: Child,
    address: String,
    log: PathBuf,
}

/// Starts `binary` with `args`, copies its stderr (and stdout) to `log`, and waits up to 20 s
/// for the log line `msg="Listening on" address=HOST:PORT` both programs write once they
/// listen.
fn start(binary: &Path, args: &[String], log: PathBuf) -> Running {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    let stderr = child.stderr.take().expect("piped stderr");
    let (found, listening) = mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log_path).ok();
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = &mut file {
                let _ = writeln!(file, "{line}");
            }
            if line.contains("msg=\"Listening on\"")
                && let Some(address) = line.split("address=").nth(1)
                && let Some(sender) = found.take()
            {
                let address = address.split_whitespace().next().unwrap_or("").to_string();
                let _ = sender.send(address);
            }
        }
    });
    let address = match listening.recv_timeout(Duration::from_secs(20)) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "{} did not start listening within 20 s; its log:\n{log}",
                binary.display()
            );
        }
    };
    Running {
        child,
        address,
        log,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real node_exporter on a free loopback port; killed on drop.
pub struct NodeExporter {
    running: Running,
    _dir: tempfile::TempDir,
}

impl NodeExporter {
    /// Starts node_exporter with its default collectors plus tcpstat (close-wait counts).
    pub fn start() -> NodeExporter {
        let binary = program(
            &["prometheus-node-exporter", "node_exporter"],
            "prometheus-node-exporter",
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let args = [
            "--web.listen-address=127.0.0.1:0",
            "--collector.tcpstat",
            // The Debian package's textfile folder may not exist here.
            "--no-collector.textfile",
        ]
        .map(String::from);
        let running = start(&binary, &args, dir.path().join("node_exporter.log"));
        NodeExporter { running, _dir: dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.running.address
    }

    /// Its page, fetched now (blocking; for fixtures and checks).
    pub fn page(&self) -> String {
        http_get(&self.running.address, "/metrics")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.running.child.id()
    }
}

/// A real Prometheus with a temporary data folder, on a free loopback port; killed on drop.
pub struct Prometheus {
    running: Running,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and its data in a temporary folder.
    pub fn start(config: &str) -> Prometheus {
        let binary = program(&["prometheus"], "prometheus");
        let dir = tempfile::tempdir().expect("temporary folder");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            "--web.listen-address=127.0.0.1:0".to_string(),
        ];
        let running = start(&binary, &args, dir.path().join("prometheus.log"));
        Prometheus { running, dir }
    }

    /// `127.0.0.1:PORT` of its web interface.
    pub fn address(&self) -> &str {
        &self.running.address
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.running.log).unwrap_or_default()
    }

    /// Its data folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A blocking HTTP/1.0 GET on loopback (no client library needed for a page).
pub fn http_get(address: &str, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// This machine's host name, as node_exporter's `node_uname_info` reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// `mem_used_pct` from /proc/meminfo now: 100 × (1 − MemAvailable / MemTotal).
pub fn mem_used_pct_now() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let field = |name: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
            .expect("meminfo field")
    };
    100.0 * (1.0 - field("MemAvailable:") / field("MemTotal:"))
}

/// Whole days since boot, from /proc/uptime.
pub fn uptime_days_now() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("uptime");
    let seconds: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
    (seconds / 86_400.0).floor()
}

/// `df`'s Use% of `/`, in points.
pub fn disk_use_pct_now() -> f64 {
    let output = Command::new("df")
        .args(["--output=pcent", "/"])
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().trim_end_matches('%').parse().ok())
        .expect("df output")
}
