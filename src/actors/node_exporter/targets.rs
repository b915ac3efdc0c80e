//! The scraper's targets: the static list from the settings plus file-based discovery in
//! Prometheus's `file_sd` JSON format, re-read when a file changes.
//!
//! A `file_sd` file is a JSON list of groups, `[{"targets": ["host:9100", ...], "labels":
//! {"name": "value", ...}}]`. A group's labels go with each of its targets; the label named
//! by `node_metrics.name_label` (default `server`) names the server. A file that cannot be
//! read or parsed keeps its previous targets, and the reason is reported once per change.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// One target to scrape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// Labels from its `file_sd` group (none for static targets).
    pub labels: BTreeMap<String, String>,
}

/// Whether `target` is `host:port` with a numeric port (a DNS name, IPv4 or `[IPv6]` host).
pub fn is_valid_target(target: &str) -> bool {
    let Some((host, port)) = target.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    host_ok && port.parse::<u16>().is_ok_and(|port| port > 0)
}

/// Why a `file_sd` file gave no targets.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// It is not a `file_sd` JSON list.
    #[error(
        "{path} is not a file_sd JSON list of {{\"targets\": [...], \"labels\": {{...}}}}: {source}"
    )]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A target is not `host:port`.
    #[error("{path}: target `{target}` is not host:port")]
    BadTarget {
        /// The file.
        path: String,
        /// The target.
        target: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses one `file_sd` file's text.
///
/// # Errors
/// [`FileSdError`] naming the file and what is wrong.
pub fn parse_file_sd(path: &str, text: &str) -> Result<Vec<Target>, FileSdError> {
    let groups: Vec<Group> = serde_json::from_str(text).map_err(|source| FileSdError::Parse {
        path: path.to_string(),
        source,
    })?;
    let mut targets = Vec::new();
    for group in groups {
        for address in group.targets {
            if !is_valid_target(&address) {
                return Err(FileSdError::BadTarget {
                    path: path.to_string(),
                    target: address,
                });
            }
            targets.push(Target {
                address,
                labels: group.labels.clone(),
            });
        }
    }
    Ok(targets)
}

/// One watched file: what it gave last, and the modification time and size it had then.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    targets: Vec<Target>,
    missing_reported: bool,
}

/// The static targets plus the `file_sd` files, re-read when their modification time or size
/// changes.
#[derive(Debug)]
pub struct TargetSet {
    fixed: Vec<Target>,
    files: Vec<Watched>,
}

impl TargetSet {
    /// Static `targets` (already validated) and `files` to watch.
    pub fn new(targets: &[String], files: &[PathBuf]) -> TargetSet {
        TargetSet {
            fixed: targets
                .iter()
                .map(|address| Target {
                    address: address.clone(),
                    labels: BTreeMap::new(),
                })
                .collect(),
            files: files
                .iter()
                .map(|path| Watched {
                    path: path.clone(),
                    stamp: None,
                    targets: Vec::new(),
                    missing_reported: false,
                })
                .collect(),
        }
    }

    /// Re-reads every file that changed since the last call (all of them on the first).
    /// Returns whether the target list may have changed, and the errors of files that could
    /// not be used (they keep their previous targets).
    pub fn refresh(&mut self) -> (bool, Vec<FileSdError>) {
        let mut changed = false;
        let mut errors = Vec::new();
        for watched in &mut self.files {
            let display = watched.path.display().to_string();
            let stamp = std::fs::metadata(&watched.path).map(|meta| {
                (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                )
            });
            let stamp = match stamp {
                Ok(stamp) => stamp,
                Err(source) => {
                    // Report a missing file once; it keeps its targets until it returns.
                    if !watched.missing_reported {
                        watched.missing_reported = true;
                        errors.push(FileSdError::Read {
                            path: display,
                            source,
                        });
                    }
                    watched.stamp = None;
                    continue;
                }
            };
            watched.missing_reported = false;
            if watched.stamp == Some(stamp) {
                continue;
            }
            watched.stamp = Some(stamp);
            let parsed = std::fs::read_to_string(&watched.path)
                .map_err(|source| FileSdError::Read {
                    path: display.clone(),
                    source,
                })
                .and_then(|text| parse_file_sd(&display, &text));
            match parsed {
                Ok(targets) => {
                    changed |= targets != watched.targets;
                    watched.targets = targets;
                }
                Err(error) => errors.push(error),
            }
        }
        (changed, errors)
    }

    /// Every target now: static first, then each file's, duplicates (same address and
    /// labels) once.
    pub fn targets(&self) -> Vec<Target> {
        let mut all: Vec<Target> = self.fixed.clone();
        for watched in &self.files {
            for target in &watched.targets {
                if !all.contains(target) {
                    all.push(target.clone());
                }
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// host:port forms are accepted; schemes, paths and missing ports are not.
    #[test]
    fn targets_are_host_and_port() {
        for good in [
            "localhost:9100",
            "10.0.0.1:9100",
            "[::1]:9100",
            "db-1.example.com:1",
        ] {
            assert!(is_valid_target(good), "{good}");
        }
        for bad in ["http://a:1", "a", "a:0", "a:x", ":9100", "a:1/metrics"] {
            assert!(!is_valid_target(bad), "{bad}");
        }
    }

    /// A file_sd file gives each group's labels to its targets; bad files name the problem.
    #[test]
    fn file_sd_groups_and_errors() {
        let text = r#"[{"targets": ["a:9100", "b:9100"], "labels": {"server": "alpha"}}, {"targets": ["c:9100"]}]"#;
        let targets = parse_file_sd("f.json", text).unwrap();
        assert_eq!(targets.len(), 3);
        assert_eq!(targets[0].labels["server"], "alpha");
        assert!(targets[2].labels.is_empty());
        let error = parse_file_sd("f.json", r#"{"targets": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("f.json") && error.contains("file_sd"),
            "{error}"
        );
        let error = parse_file_sd("f.json", r#"[{"targets": ["http://x"]}]"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("http://x"), "{error}");
    }

    /// A changed file is re-read; a broken rewrite keeps the previous targets.
    #[test]
    fn files_are_reread_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sd.json");
        std::fs::write(&path, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let mut set = TargetSet::new(&["s:2".to_string()], std::slice::from_ref(&path));
        assert!(set.refresh().0);
        assert_eq!(set.targets().len(), 2);
        assert!(!set.refresh().0, "unchanged file");
        std::fs::write(&path, r#"[{"targets": ["a:1", "b:1"]}]"#).unwrap();
        assert!(set.refresh().0);
        assert_eq!(set.targets().len(), 3);
        std::fs::write(&path, "not json at all").unwrap();
        let (changed, errors) = set.refresh();
        assert!(!changed);
        assert_eq!(errors.len(), 1);
        assert_eq!(set.targets().len(), 3);
    }
}
