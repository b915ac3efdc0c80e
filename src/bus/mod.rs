//! The bus: a NATS connection that publishes fleetcast messages with the right header,
//! request/reply in fleetcast's types, the JetStream streams of the design
//! ([`Bus::ensure_streams`]), publishing into them with a window of acknowledgements
//! ([`StreamPublisher`]), and a private `nats-server` process for `up` and the tests
//! ([`NatsServer`], in `server`).

mod publisher;
mod server;

pub use publisher::{RETRY_WINDOW, Receipt, STREAM_PUBLISH_WINDOW, Settled, StreamPublisher};
pub use server::{
    ClusterNode, NatsServer, PID_FILE, STOP_GRACE, connect_or_embed, find_server_binary,
    loopback_port, password_env, stop_stale_server,
};

use crate::settings::{BusRole, NatsSettings};
use crate::subjects::{StreamKind, Subjects};
use crate::wire::{self, CONTENT_TYPE, DecodeError, WireMessage};
use async_nats::jetstream;
use futures::StreamExt;
use std::path::PathBuf;
use std::time::Duration;

/// Why the bus could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Nothing answered at the URL.
    #[error("cannot connect to nats at {url}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A part of `nats.url` is not a server URL.
    #[error("`{url}` in nats.url is not a server URL")]
    Url {
        /// The part.
        url: String,
        /// What the client said.
        #[source]
        source: std::io::Error,
    },
    /// No nats-server binary could be found.
    #[error(
        "no nats-server binary found (looked for {looked}); run `scripts/bootstrap` or set nats.server_bin"
    )]
    NoServerBinary {
        /// Where it looked.
        looked: String,
    },
    /// The private server's data folder could not be made.
    #[error("cannot create the nats-server data folder {}", path.display())]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The server process could not be started.
    #[error("cannot start nats-server {}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The server process exited before it listened.
    #[error(
        "nats-server exited with {status} (is port {port} taken, or its config refused? its log is nats-server.log in the data folder)"
    )]
    ServerExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The port asked for.
        port: String,
    },
    /// The server process did not listen in time.
    #[error("nats-server did not start listening within {seconds} s")]
    ServerSilent {
        /// How long it was given.
        seconds: u64,
    },
    /// A core publish failed.
    #[error("publish to {subject} failed")]
    Publish {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::PublishError,
    },
    /// A JetStream publish could not be sent.
    #[error("jetstream publish to {subject} failed")]
    StreamPublish {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: jetstream::context::PublishError,
    },
    /// A round trip through the server did not complete.
    #[error("no round trip through nats-server")]
    RoundTrip(#[source] async_nats::Error),
    /// A stream could not be created or updated.
    #[error("cannot create or update stream {name} (is jetstream on?)")]
    Stream {
        /// The stream.
        name: String,
        /// What the server said.
        #[source]
        source: jetstream::context::CreateStreamError,
    },
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nobody listens on the subject.
    #[error("nobody answers on {subject}")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// Nobody answered in time.
    #[error("no answer on {subject} within {timeout:?}")]
    TimedOut {
        /// The subject.
        subject: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The request could not be sent.
    #[error("request on {subject} failed")]
    Send {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::Error,
    },
    /// The answer is not the expected message.
    #[error("the reply on {subject} does not decode")]
    Decode {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: DecodeError,
    },
}

impl RequestError {
    /// Whether nobody was there to answer (no responders, or none in time): what a client
    /// command reports as "is it running?".
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self,
            RequestError::NoResponders { .. } | RequestError::TimedOut { .. }
        )
    }
}

/// A connected client plus the deployment's subjects.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    /// Replicas of each JetStream stream (1 on a single server, 3 on a cluster).
    stream_replicas: usize,
    /// Forecasts and risk scores the streams keep per server.
    forecast_history: i64,
    risk_history: i64,
}

impl Bus {
    /// Connects to `settings.url` as [`BusRole::Admin`] (anonymously when `[nats.users.admin]`
    /// names no user): what `up`, the tests and the benches use to create the streams.
    ///
    /// # Errors
    /// [`BusError::Connect`] when nothing answers or the server refuses the user.
    pub async fn connect(settings: &NatsSettings) -> Result<Bus, BusError> {
        Bus::connect_as(settings, BusRole::Admin).await
    }

    /// Connects to `settings.url` as `role`: with its credentials when `[nats.users.<role>]`
    /// names a user, anonymously otherwise.
    ///
    /// # Errors
    /// [`BusError::Connect`] when nothing answers or the server refuses the user.
    pub async fn connect_as(settings: &NatsSettings, role: BusRole) -> Result<Bus, BusError> {
        let name = format!("fleetcast-{}", role.key().replace('_', "-"));
        Ok(Bus {
            client: connect_client(settings, &name, role).await?,
            subjects: Subjects::new(&settings.prefix),
            stream_replicas: settings.stream_replicas,
            forecast_history: settings.forecast_history,
            risk_history: settings.risk_history,
        })
    }

    /// The bus an actor of `role` uses: a connection of its own as that user when
    /// `[nats.users.<role>]` names one, else this one (shared, as without authentication).
    ///
    /// # Errors
    /// [`BusError::Connect`] when the server refuses the user.
    pub async fn for_role(&self, settings: &NatsSettings, role: BusRole) -> Result<Bus, BusError> {
        if settings.user(role).is_some() {
            Bus::connect_as(settings, role).await
        } else {
            Ok(self.clone())
        }
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

    /// Sends a request and decodes the one reply.
    ///
    /// # Errors
    /// [`RequestError`]: nobody listens, nobody answers within `timeout`, the request cannot
    /// be sent, or the reply does not decode.
    pub async fn request<Q: WireMessage, A: WireMessage>(
        &self,
        subject: String,
        message: &Q,
        timeout: Duration,
    ) -> Result<A, RequestError> {
        let request = async_nats::Request::new()
            .payload(wire::encode(message).into())
            .headers(headers())
            .timeout(Some(timeout));
        let reply = self
            .client
            .send_request(subject.clone(), request)
            .await
            .map_err(|source| match source.kind() {
                async_nats::client::RequestErrorKind::NoResponders => RequestError::NoResponders {
                    subject: subject.clone(),
                },
                async_nats::client::RequestErrorKind::TimedOut => RequestError::TimedOut {
                    subject: subject.clone(),
                    timeout,
                },
                _ => RequestError::Send {
                    subject: subject.clone(),
                    source: source.into(),
                },
            })?;
        wire::decode(&reply.payload).map_err(|source| RequestError::Decode { subject, source })
    }

    /// Sends `payload` (raw bytes, with `headers`) to `subject` and collects every reply: it
    /// waits up to `first` for the first one, then until none comes for `quiet`. For
    /// requests many answer (every predictor worker, every micro service on `$SRV.STATS`).
    /// An empty list means nobody answered.
    ///
    /// # Errors
    /// [`RequestError::Send`] when the request cannot be sent.
    pub async fn scatter(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        payload: bytes::Bytes,
        first: Duration,
        quiet: Duration,
    ) -> Result<Vec<async_nats::Message>, RequestError> {
        let send_failed = |source: async_nats::Error| RequestError::Send {
            subject: subject.clone(),
            source,
        };
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|error| send_failed(error.into()))?;
        self.client
            .publish_with_reply_and_headers(subject.clone(), inbox, headers, payload)
            .await
            .map_err(|error| send_failed(error.into()))?;
        self.client
            .flush()
            .await
            .map_err(|error| send_failed(error.into()))?;
        let mut collected = Vec::new();
        let mut wait = first;
        while let Ok(Some(message)) = tokio::time::timeout(wait, replies.next()).await {
            // A "no responders" status arrives as an empty message with headers only.
            if message
                .status
                .is_some_and(|status| status.is_server_error() || status.as_u16() == 503)
            {
                break;
            }
            collected.push(message);
            wait = quiet;
        }
        Ok(collected)
    }

    /// Sends `message` to `subject` and decodes every reply, as [`Bus::scatter`] collects
    /// them; replies that do not decode are logged and left out.
    ///
    /// # Errors
    /// [`RequestError::Send`] when the request cannot be sent.
    pub async fn request_all<Q: WireMessage, A: WireMessage>(
        &self,
        subject: String,
        message: &Q,
        first: Duration,
        quiet: Duration,
    ) -> Result<Vec<A>, RequestError> {
        let replies = self
            .scatter(
                subject.clone(),
                headers(),
                wire::encode(message).into(),
                first,
                quiet,
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|reply| match wire::decode(&reply.payload) {
                Ok(decoded) => Some(decoded),
                Err(error) => {
                    tracing::warn!(subject, %error, "a reply does not decode: left out");
                    None
                }
            })
            .collect())
    }

    /// Creates the streams of the design's durability section, or brings the per-server
    /// history of an existing FORECASTS or RISK stream to the settings'
    /// (`nats.forecast_history`, `nats.risk_history`; a stream made before they existed kept
    /// only the latest). Idempotent.
    ///
    /// # Errors
    /// [`BusError::Stream`] when the server has no JetStream or refuses a stream.
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
                // Jobs carry ids so a copy sent again after a lost acknowledgement is dropped;
                // resends stop after `RETRY_WINDOW` (20 s), so the ids need not be kept the
                // default 2 minutes (at 10,000 servers and 60x, 240,000 of them).
                duplicate_window: Duration::from_secs(30),
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Forecasts),
                subjects: vec![subjects.forecasts_all()],
                max_messages_per_subject: self.forecast_history,
                ..Default::default()
            },
            jetstream::stream::Config {
                name: subjects.stream_name(StreamKind::Risk),
                subjects: vec![subjects.risk_all()],
                max_messages_per_subject: self.risk_history,
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
            let history = config.max_messages_per_subject;
            let stream = jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|source| BusError::Stream {
                    name: name.clone(),
                    source,
                })?;
            let held = &stream.cached_info().config;
            if history > 0 && held.max_messages_per_subject != history {
                let mut updated = held.clone();
                updated.max_messages_per_subject = history;
                tracing::info!(stream = %name, from = held.max_messages_per_subject, to = history, "per-subject history of a stream changed");
                jetstream
                    .update_stream(updated)
                    .await
                    .map_err(|source| BusError::Stream { name, source })?;
            }
        }
        Ok(())
    }
}

/// The headers every fleetcast message carries.
pub fn headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", CONTENT_TYPE);
    headers
}

/// Opens a connection named `name` (as `nats-server` and its monitoring list it) with the
/// settings' buffer size, a 3-s connect timeout and slow-consumer warnings. [`Bus::connect`]
/// opens the shared one; the window keeper opens its own for its input.
///
/// When `[nats.users.<role>]` names a user the connection authenticates as it and takes its
/// replies on the inbox prefix `_INBOX_<role>` (what `nats/auth.conf` lets that user
/// subscribe to). Errors the server reports on the connection (a permissions violation: a
/// publish or subscription the user may not make) are logged as warnings, at most one line
/// per [`LOG_INTERVAL`](crate::ratelog::LOG_INTERVAL) per connection. `[nats.tls]` gives the
/// CA the servers are checked against (then TLS is required) and a client certificate.
///
/// # Errors
/// [`BusError::Connect`] when nothing answers, the server refuses the user, or TLS fails
/// (an unknown CA, a certificate not for that host).
pub async fn connect_client(
    settings: &NatsSettings,
    name: &str,
    role: BusRole,
) -> Result<async_nats::Client, BusError> {
    let connection = name.to_string();
    let server_errors = std::sync::Arc::new(std::sync::Mutex::new(
        crate::ratelog::RateLimited::every(crate::ratelog::LOG_INTERVAL),
    ));
    let mut options = async_nats::ConnectOptions::new();
    if let Some(user) = settings.user(role) {
        options = options
            .user_and_password(user.user.clone(), user.password.clone())
            .custom_inbox_prefix(format!("_INBOX_{}", role.key()));
    }
    let tls = &settings.tls;
    if !tls.ca_file.is_empty() {
        options = options
            .add_root_certificates(tls.ca_file.clone().into())
            .require_tls(true);
    }
    if !tls.cert_file.is_empty() {
        options = options
            .add_client_certificate(tls.cert_file.clone().into(), tls.key_file.clone().into());
    }
    options
        .name(name)
        .subscription_capacity(settings.subscription_capacity)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |event| {
            let connection = connection.clone();
            let server_errors = server_errors.clone();
            async move {
                match event {
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(
                            connection,
                            subscription = sid,
                            "slow consumer: messages dropped"
                        )
                    }
                    async_nats::Event::ServerError(error) => {
                        let due = server_errors.lock().expect("rate limit lock").check();
                        match due {
                            Some(held_back) => tracing::warn!(
                                connection,
                                %error,
                                held_back,
                                "the nats server reports an error"
                            ),
                            None => tracing::debug!(connection, %error, "nats server error"),
                        }
                    }
                    other => tracing::debug!(connection, event = %other, "nats event"),
                }
            }
        })
        .connect(server_addrs(&settings.url)?)
        .await
        .map_err(|source| BusError::Connect {
            url: settings.url.clone(),
            source,
        })
}

/// The servers of `url`: one URL, or several separated by commas (the nodes of a cluster,
/// e.g. `nats://n1:4222,nats://n2:4222,nats://n3:4222`). The client connects to one of them
/// and, when that node goes, reconnects to another (and to the nodes the cluster tells it
/// about).
///
/// # Errors
/// [`BusError::Url`] naming the part that is not a server URL.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    url.split(',')
        .map(str::trim)
        .map(|part| {
            part.parse::<async_nats::ServerAddr>()
                .map_err(|source| BusError::Url {
                    url: part.to_string(),
                    source,
                })
        })
        .collect()
}

/// Returns once nats-server has handled everything `client` sent before (subscriptions,
/// unsubscriptions, publishes) and `client` has read everything the server sent it before
/// (it counts in its statistics; each subscription has it queued): the client echoes an
/// empty message to itself. `Client::flush` only writes the socket, it waits for no answer.
///
/// # Errors
/// [`BusError::RoundTrip`] when the echo cannot be sent or does not come within 5 s.
pub async fn round_trip(client: &async_nats::Client) -> Result<(), BusError> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| BusError::RoundTrip(error.into()))?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|error| BusError::RoundTrip(error.into()))?;
    match tokio::time::timeout(Duration::from_secs(5), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BusError::RoundTrip("the connection closed".into())),
        Err(_) => Err(BusError::RoundTrip("no echo within 5 s".into())),
    }
}

#[cfg(test)]
mod tests {
    /// A cluster's nodes are one comma-separated `nats.url`; a part that is not a URL is
    /// named in the error.
    #[test]
    fn a_url_list_names_every_node() {
        let addrs = super::server_addrs("nats://n1:4222, nats://n2:4222,nats://n3:4222")
            .expect("three nodes");
        assert_eq!(addrs.len(), 3);
        let error = super::server_addrs("nats://n1:4222,nats://no such host")
            .expect_err("a space is no host");
        assert!(error.to_string().contains("no such host"), "{error}");
    }
}
