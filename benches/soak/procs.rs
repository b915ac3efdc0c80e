//! The soak's processes: one `fleetcast run <actor>` per stage, their logs, their memory
//! (`VmRSS`) and CPU time read from `/proc`, and stopping them (SIGTERM: each drains).

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A process the soak watches: one it started, or one started for it (the nats-server).
struct Watched {
    name: String,
    pid: u32,
    child: Option<Child>,
}

/// Every watched process; those started here get SIGTERM (then SIGKILL) on drop.
pub struct Processes {
    binary: PathBuf,
    root: PathBuf,
    logs: PathBuf,
    env: Vec<(String, String)>,
    watched: Vec<Watched>,
}

impl Processes {
    /// Nothing started yet: `binary` runs in `root` with `env`, logging into `logs`.
    pub fn new(binary: PathBuf, root: PathBuf, logs: PathBuf, env: Vec<(String, String)>) -> Self {
        Processes {
            binary,
            root,
            logs,
            env,
            watched: Vec::new(),
        }
    }

    /// Watches a process started elsewhere.
    pub fn add_pid(&mut self, name: &str, pid: u32) {
        self.watched.push(Watched {
            name: name.into(),
            pid,
            child: None,
        });
    }

    /// Starts `fleetcast run <command>` as `name`, its output in `<logs>/<name>.log`.
    pub fn spawn(&mut self, name: &str, command: &str) -> anyhow::Result<()> {
        let log = File::create(self.logs.join(format!("{name}.log")))?;
        let child = Command::new(&self.binary)
            .args(["run", command])
            .current_dir(&self.root)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start `fleetcast run {command}`"))?;
        self.watched.push(Watched {
            name: name.into(),
            pid: child.id(),
            child: Some(child),
        });
        Ok(())
    }

    /// Fails when a process started here has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for watched in &mut self.watched {
            if let Some(child) = &mut watched.child
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited early ({status}); see {}",
                    watched.name,
                    self.logs.join(format!("{}.log", watched.name)).display()
                );
            }
        }
        Ok(())
    }

    /// Sends `name` SIGTERM and waits (10 s at most) for it to drain and exit 0.
    pub fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .watched
            .iter()
            .position(|watched| watched.name == name && watched.child.is_some())
            .with_context(|| format!("no process {name}"))?;
        let mut watched = self.watched.remove(index);
        signal(watched.pid, libc::SIGTERM);
        let status = wait_or_kill(&mut watched);
        match status {
            Some(status) if status.success() => Ok(()),
            other => bail!("{name} did not drain and exit 0: {other:?}"),
        }
    }

    /// Stops every process started here (SIGTERM, all at once, then each waited for), and
    /// says how each exited.
    pub fn stop_all(&mut self) -> BTreeMap<String, String> {
        let mut exits = BTreeMap::new();
        for watched in &self.watched {
            if watched.child.is_some() {
                signal(watched.pid, libc::SIGTERM);
            }
        }
        for mut watched in std::mem::take(&mut self.watched) {
            if watched.child.is_some() {
                let status = wait_or_kill(&mut watched);
                exits.insert(
                    watched.name.clone(),
                    status.map_or("killed".into(), |status| status.to_string()),
                );
            }
        }
        exits
    }

    fn each(&self) -> impl Iterator<Item = (&str, u32)> {
        self.watched
            .iter()
            .map(|watched| (watched.name.as_str(), watched.pid))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a child's pid; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits up to 10 s for a process sent SIGTERM to exit (a second signal would make it exit
/// at once, 130, instead of draining); SIGKILL after that (None).
fn wait_or_kill(watched: &mut Watched) -> Option<ExitStatus> {
    let child = watched.child.as_mut()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `section.key=value` as the environment variable the settings read.
pub fn setting_env(setting: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = setting
        .split_once('=')
        .with_context(|| format!("--set {setting}: expected KEY=VALUE"))?;
    let name = format!(
        "FLEETCAST_{}",
        key.trim().to_ascii_uppercase().replace('.', "__")
    );
    Ok((name, value.trim().to_string()))
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Resident memory of `pid` in MB (`VmRSS`).
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0 / 1e6)
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields that follow start after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// The previous CPU reading per process, to turn CPU seconds into a share of a core.
#[derive(Default)]
pub struct Cpu {
    previous: BTreeMap<String, (Instant, f64)>,
}

impl Cpu {
    /// Each live process's RSS (MB) and CPU use since the last call (% of one core).
    pub fn measure(&mut self, processes: &Processes) -> Vec<(String, f64, Option<f64>)> {
        let mut measured = Vec::new();
        for (name, pid) in processes.each() {
            let Some(rss) = rss_mb(pid) else { continue };
            let now = Instant::now();
            let pct = cpu_seconds(pid).and_then(|seconds| {
                let previous = self.previous.insert(name.to_string(), (now, seconds));
                let (at, before) = previous?;
                let elapsed = now.duration_since(at).as_secs_f64();
                (elapsed > 0.0).then(|| (seconds - before) / elapsed * 100.0)
            });
            measured.push((name.to_string(), rss, pct));
        }
        measured
    }
}
