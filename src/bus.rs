//! The bus: a NATS connection that publishes fleetcast messages with the right header, the
//! JetStream streams of the design, and a private `nats-server` process for `up` and tests.
//!
//! [`NatsServer`] is the one way fleetcast starts a server: `fleetcast up` uses it when
//! nothing answers at the default local URL, and the integration tests use it on a free
//! loopback port. It kills the process on drop.

use crate::settings::{DEFAULT_NATS_URL, NatsSettings};
use crate::subjects::{StreamKind, Subjects};
use crate::wire::{self, CONTENT_TYPE, WireMessage};
use async_nats::jetstream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the bus could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Nothing answered at the URL.
    #[error("cannot connect to nats at {url}: {source}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// No nats-server binary could be found.
    #[error(
        "no nats-server binary found (looked for {looked}); run `scripts/bootstrap` or set nats.server_bin"
    )]
    NoServerBinary {
        /// Where it looked.
        looked: String,
    },
    /// The server process could not be started or never answered.
    #[error("cannot start nats-server: {0}")]
    Spawn(String),
    /// A publish failed.
    #[error("publish to {subject} failed: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::PublishError,
    },
    /// A JetStream operation failed.
    #[error("jetstream: {0}")]
    JetStream(String),
}

/// A connected client plus the deployment's subjects.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    /// Replicas of each JetStream stream (1 on a single server, 3 on a cluster).
    stream_replicas: usize,
}

impl Bus {
    /// Connects to `settings.url`.
    ///
    /// # Errors
    /// [`BusError::Connect`] when nothing answers.
    pub async fn connect(settings: &NatsSettings) -> Result<Bus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(settings.subscription_capacity)
            .connection_timeout(Duration::from_secs(3))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(subscription = sid, "slow consumer: messages dropped")
                    }
                    other => tracing::debug!(event = %other, "nats event"),
                }
            })
            .connect(settings.url.as_str())
            .await
            .map_err(|source| BusError::Connect {
                url: settings.url.clone(),
                source,
            })?;
        Ok(Bus {
            client,
            subjects: Subjects::new(&settings.prefix),
            stream_replicas: settings.stream_replicas,
        })
    }

    /// The raw client, for subscriptions and requests.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// This deployment's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// A JetStream context on this connection.
    pub fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }

    /// Publishes `message` on `subject` as MessagePack with the content-type header.
    ///
    /// # Errors
    /// [`BusError::Publish`] when the client's buffer is closed.
    pub async fn publish<T: WireMessage>(
        &self,
        subject: String,
        message: &T,
    ) -> Result<(), BusError> {
        let payload = wire::encode(message);
        self.client
            .publish_with_headers(subject.clone(), headers(), payload.into())
            .await
            .map_err(|source| BusError::Publish { subject, source })
    }

    /// Sends a request and decodes the reply.
    ///
    /// # Errors
    /// A reason in words when nobody answers in time or the reply does not decode.
    pub async fn request<Q: WireMessage, A: WireMessage>(
        &self,
        subject: String,
        message: &Q,
        timeout: Duration,
    ) -> Result<A, String> {
        let request = async_nats::Request::new()
            .payload(wire::encode(message).into())
            .headers(headers())
            .timeout(Some(timeout));
        let reply = self
            .client
            .send_request(subject.clone(), request)
            .await
            .map_err(|error| format!("request on {subject} failed: {error}"))?;
        wire::decode(&reply.payload).map_err(|error| format!("reply on {subject}: {error}"))
    }

    /// Creates (or updates) the streams of the design's durability section. Idempotent.
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the server has no JetStream or refuses a stream.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        let jetstream = self.jetstream();
        let subjects = &self.subjects;
        let hour = Duration::from_secs(3600);
        let configs = [
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Metrics),
                subjects: vec![subjects.metrics_all()],
                max_age: 26 * hour,
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::PredictJobs),
                subjects: vec![subjects.predict_jobs_all()],
                retention: jetstream::stream::RetentionPolicy::WorkQueue,
                max_messages_per_subject: 2,
                max_age: hour,
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Forecasts),
                subjects: vec![subjects.forecasts_all()],
                max_messages_per_subject: 1,
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Risk),
                subjects: vec![subjects.risk_all()],
                max_messages_per_subject: 1,
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Alerts),
                subjects: vec![subjects.alerts_all()],
                max_age: 24 * 30 * hour,
                ..Default::default()
            },
        ];
        for mut config in configs {
            config.num_replicas = self.stream_replicas;
            let name = config.name.clone();
            jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|error| BusError::JetStream(format!("stream {name}: {error}")))?;
        }
        Ok(())
    }
}

/// Acknowledgements a [`StreamPublisher`] keeps outstanding by default: enough to keep the
/// loopback busy, few enough that a burst of 20-kB predict jobs stays far below a stream's
/// ingest buffer.
pub const STREAM_PUBLISH_WINDOW: usize = 1024;

/// Publishes into JetStream streams, keeping at most `window` acknowledgements outstanding.
///
/// A core publish into a stream has no back-pressure: the server queues it for the stream
/// and, past its ingest buffer (`max_buffered_msgs`, 10,000 messages by default), drops the
/// rest of a burst with one warning in its log. Waiting for acknowledgements, a window at a
/// time, makes a burst (a step of a large fleet, a backfill) go at the store's pace and turns
/// every message the stream did not take into a counted, logged error.
#[derive(Debug)]
pub struct StreamPublisher {
    jetstream: jetstream::Context,
    pending: std::collections::VecDeque<(String, jetstream::context::PublishAckFuture)>,
    window: usize,
    last_warn: Option<Instant>,
    unwarned: u64,
}

impl StreamPublisher {
    /// A publisher on `client` with at most `window` (at least 1) acknowledgements outstanding.
    pub fn new(client: async_nats::Client, window: usize) -> StreamPublisher {
        StreamPublisher {
            jetstream: jetstream::new(client),
            pending: std::collections::VecDeque::new(),
            window: window.max(1),
            last_warn: None,
            unwarned: 0,
        }
    }

    /// Sends `payload` (MessagePack, with the content-type header) to `subject`, first waiting
    /// for the oldest acknowledgement when `window` are outstanding. Returns how many of the
    /// earlier publishes it waited for were not stored (each logged, rate-limited).
    ///
    /// # Errors
    /// [`BusError::JetStream`] when the message cannot be sent.
    pub async fn publish(
        &mut self,
        subject: String,
        payload: bytes::Bytes,
    ) -> Result<u64, BusError> {
        let mut failed = 0;
        while self.pending.len() >= self.window {
            failed += self.await_oldest().await;
        }
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), headers(), payload)
            .await
            .map_err(|error| BusError::JetStream(format!("publish to {subject}: {error}")))?;
        self.pending.push_back((subject, ack));
        Ok(failed)
    }

    /// Encodes `message` and publishes it as [`StreamPublisher::publish`] does.
    ///
    /// # Errors
    /// As [`StreamPublisher::publish`].
    pub async fn publish_message<T: WireMessage>(
        &mut self,
        subject: String,
        message: &T,
    ) -> Result<u64, BusError> {
        self.publish(subject, wire::encode(message).into()).await
    }

    /// Waits for every outstanding acknowledgement; returns how many publishes were not
    /// stored.
    pub async fn flush(&mut self) -> u64 {
        let mut failed = 0;
        while !self.pending.is_empty() {
            failed += self.await_oldest().await;
        }
        failed
    }

    async fn await_oldest(&mut self) -> u64 {
        let Some((subject, ack)) = self.pending.pop_front() else {
            return 0;
        };
        let Err(error) = ack.await else {
            return 0;
        };
        let now = Instant::now();
        if self
            .last_warn
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(10))
        {
            self.unwarned += 1;
        } else {
            tracing::warn!(
                subject,
                %error,
                failed_since_last_warning = self.unwarned,
                "a stream did not store a message (logged at most every 10 s)"
            );
            self.last_warn = Some(now);
            self.unwarned = 0;
        }
        1
    }
}

/// The headers every fleetcast message carries.
pub fn headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", CONTENT_TYPE);
    headers
}

/// A nats-server child process with JetStream on; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    url: String,
    port: u16,
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
    /// [`BusError::Spawn`] when it does not start, exits, or does not listen within 10 s.
    pub fn start(binary: &Path, port: u16, data_dir: &Path) -> Result<NatsServer, BusError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| BusError::Spawn(format!("{}: {error}", data_dir.display())))?;
        let port_arg = if port == 0 {
            "-1".to_string()
        } else {
            port.to_string()
        };
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(data_dir)
            .arg("--ports_file_dir")
            .arg(data_dir)
            .arg("--log")
            .arg(data_dir.join("nats-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| BusError::Spawn(format!("{}: {error}", binary.display())))?;
        let mut server = NatsServer {
            child,
            url: String::new(),
            port: 0,
        };
        let ports_file = data_dir.join(format!(
            "{}_{}.ports",
            binary
                .file_name()
                .map_or("nats-server".into(), |name| name.to_string_lossy()),
            server.child.id()
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        server.port = loop {
            if let Some(port) = read_ports_file(&ports_file) {
                break port;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(BusError::Spawn(format!(
                    "nats-server exited with {status} (is port {port_arg} taken?)"
                )));
            }
            if Instant::now() > deadline {
                return Err(BusError::Spawn(
                    "nats-server did not start listening within 10 s".to_string(),
                ));
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
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Connects as `settings` say; when nothing answers at the default local URL and
/// `nats.embedded` is on, starts a private server there first and returns it too (keep it
/// alive as long as the bus).
///
/// # Errors
/// The connect error when no private server may or can be started.
pub async fn connect_or_embed(
    settings: &NatsSettings,
) -> Result<(Bus, Option<NatsServer>), BusError> {
    match Bus::connect(settings).await {
        Ok(bus) => Ok((bus, None)),
        Err(error) if settings.embedded && settings.url == DEFAULT_NATS_URL => {
            tracing::info!(url = %settings.url, reason = %error, "nothing answers: starting a private nats-server");
            let binary = find_server_binary(&settings.server_bin)?;
            let server = NatsServer::start(&binary, 4222, &settings.data_dir)?;
            tracing::info!(
                binary = %binary.display(),
                data_dir = %settings.data_dir.display(),
                "private nats-server started (jetstream on); it stops when fleetcast exits"
            );
            let bus = Bus::connect(settings).await?;
            Ok((bus, Some(server)))
        }
        Err(error) => Err(error),
    }
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
