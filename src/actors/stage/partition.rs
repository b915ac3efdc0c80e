//! Scale-out by partition (issue 12, item 2): N instances of a stage split the fleet by a
//! stable hash of the server name, each partition owned by exactly one instance at a time.
//!
//! - **Input stream.** A stage run with `partitions.count` = N > 1 reads a stream of its
//!   own, [`Subjects::partition_stream`] (`FLEETCAST_IN_RISK_SCORER`), which *sources* its
//!   input streams (METRICS and FORECASTS for the risk scorer, RISK and FORECASTS for the
//!   alert router) through the subject transform [`Subjects::partition_transform`]:
//!   `<prefix>.metrics.<server>` is stored as
//!   `<prefix>.part.<stage>.<p>.<prefix>.metrics.<server>` with `p = partition(N, server)`.
//!   The original streams and their subjects stay as they are. The input stream keeps
//!   `partitions.history` messages per server and stream.
//! - **One consumer per partition**, durable (`risk_scorer-p3`), filtered on its token; one
//!   partition's inputs come in the order the input stream stored them, samples and
//!   forecasts of a server in one sequence.
//! - **Leases** in the key-value bucket [`Subjects::partitions_bucket`] (max age = the
//!   lease, `partitions.lease_ms` or one generator step): key `<stage>.<p>` holds the
//!   owner, made with `create` (only when absent) and renewed with `update` at the revision
//!   the owner holds, four times a lease; `<stage>.member.<owner>` says an instance is
//!   alive. Every tick an instance claims free partitions up to its fair share
//!   (`ceil(N / live instances)`, [`to_claim`]) and any partition free for a whole lease;
//!   one holding more than its share (an instance joined) hands the surplus over (releases
//!   the leases; counted `handoffs`). A renewal that fails (the lease expired, another
//!   instance holds it) loses the partition at once.
//! - **Claim and takeover.** The new owner rewinds the partition's consumer to its
//!   acknowledgement floor (deletes it and makes it again from the floor's next sequence;
//!   a new consumer starts after the stream's last message), reads the partition's inputs up
//!   to the floor back from the input stream and hands them to the actor first
//!   ([`Input::Claimed`]: it forgets the partition's servers and takes the history in
//!   silently, rebuilding its state), then the consumer's deliveries. Inputs past the floor
//!   that the previous owner handled are handled again from the same state and give the
//!   same outputs under the same `Nats-Msg-Id`, which the output stream drops.
//! - **Drain** releases: [`Durable::settled`](super::Durable::settled) deletes the leases
//!   and the member key once every acknowledgement is sent, so another instance claims the
//!   partitions at its next tick. An instance that dies releases nothing: its leases expire
//!   one lease after its last renewal and a survivor claims them within a tick.
//! - **Counted**: extras `claims`, `takeovers` (claims of a partition whose consumer
//!   existed: owned before), `partitions_lost`, `handoffs`; the fact `partitions` lists the partitions
//!   an instance owns (shown by `fleetcast status`).
//!
//! Not done: a rebuild is exact while the input stream still holds a server's inputs since the
//! stage first saw it (`partitions.history`).

use super::durable::{DURABLE_EXTRAS, Deliveries, Delivery, DurableError, Input, Tracker};
use super::{Facts, StageCounters};
use crate::bus::Bus;
use crate::ratelog::RateLimited;
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subject, Subjects};
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
    kv,
    stream::{Source, SubjectTransform},
};
use futures::{SinkExt, StreamExt, channel::mpsc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The counters a partitioned stage declares among its extras (with [`DURABLE_EXTRAS`]).
pub const PARTITION_EXTRAS: [&str; 4] = ["claims", "takeovers", "partitions_lost", "handoffs"];

/// Deliveries and claims waiting for the actor.
const INPUT_CAPACITY: usize = 1024;

/// Longest wait for the next message while a partition's history is read back.
const HISTORY_WAIT: Duration = Duration::from_secs(5);

/// Owners made in this process so far: two instances in one process get two names.
static OWNERS: AtomicUsize = AtomicUsize::new(0);

/// Ticks (quarter leases) a partition stays free before any instance takes it beyond its
/// share: a whole lease.
const LONG_FREE_TICKS: u32 = 4;

/// An instance's fair share of `count` partitions among `members` live instances.
pub fn share(count: u32, members: usize) -> usize {
    count.div_ceil(members.max(1) as u32) as usize
}

/// Which partitions to try to claim this tick, in order: free ones (not in `leased`) up to
/// the fair share ([`share`]) less the `owned` count, then every other free one in
/// `long_free` (free for a whole lease: no instance under its share took it, e.g. its dead
/// owner's member key outlived the leases). `offset` rotates where the search starts so
/// instances starting together do not all race for partition 0.
pub fn to_claim(
    count: u32,
    owned: usize,
    leased: &BTreeSet<u32>,
    members: usize,
    long_free: &BTreeSet<u32>,
    offset: u32,
) -> Vec<u32> {
    let share = share(count, members);
    let mut wanted = share.saturating_sub(owned);
    let mut claim = Vec::new();
    for partition in (0..count).map(|step| (step + offset) % count.max(1)) {
        if leased.contains(&partition) {
            continue;
        }
        if wanted > 0 {
            wanted -= 1;
            claim.push(partition);
        } else if long_free.contains(&partition) {
            claim.push(partition);
        }
    }
    claim
}

/// Which partition each server the actor holds belongs to, so a claimed or lost partition's
/// servers can be forgotten.
#[derive(Debug, Default)]
pub struct PartitionMap {
    of: HashMap<String, u32>,
}

impl PartitionMap {
    /// Notes that `server` is in `partition` (nothing when unpartitioned).
    pub fn note(&mut self, server: &str, partition: Option<u32>) {
        if let Some(partition) = partition
            && self.of.get(server) != Some(&partition)
        {
            self.of.insert(server.to_string(), partition);
        }
    }

    /// The servers of `partition`, forgotten here.
    pub fn take(&mut self, partition: u32) -> Vec<String> {
        let servers: Vec<String> = self
            .of
            .iter()
            .filter(|(_, held)| **held == partition)
            .map(|(server, _)| server.clone())
            .collect();
        for server in &servers {
            self.of.remove(server);
        }
        servers
    }
}

/// One partition an instance owns.
#[derive(Debug)]
struct Owned {
    revision: u64,
    task: tokio::task::JoinHandle<()>,
}

/// The leases of one instance: what [`Durable::settled`](super::Durable::settled) releases.
#[derive(Debug)]
pub struct Leases {
    kv: kv::Store,
    stage: &'static str,
    owner: String,
    subjects: Subjects,
    owned: tokio::sync::Mutex<BTreeMap<u32, Owned>>,
    released: AtomicBool,
}

impl Leases {
    /// Stops the partitions' consumers, deletes the instance's leases and member key.
    pub async fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        let mut owned = self.owned.lock().await;
        for (partition, held) in std::mem::take(&mut *owned) {
            held.task.abort();
            let key = self.subjects.lease_key(self.stage, partition);
            if let Err(error) = self
                .kv
                .delete_expect_revision(&key, Some(held.revision))
                .await
            {
                tracing::warn!(stage = self.stage, partition, %error, "lease not released (it expires by itself)");
            }
        }
        let _ = self
            .kv
            .delete(self.subjects.member_key(self.stage, &self.owner))
            .await;
        tracing::info!(stage = self.stage, owner = %self.owner, "partitions released");
    }
}

/// Everything a claim and a partition's consumer need.
struct Claimer {
    bus: Bus,
    stage: &'static str,
    subjects: Subjects,
    stream_name: String,
    ack_wait: Duration,
    max_ack_pending: i64,
    counters: StageCounters,
    lags: Arc<Vec<AtomicU64>>,
    tx: mpsc::Sender<Input>,
    stopped: watch::Receiver<bool>,
}

/// Makes the stage's partitioned input stream and lease bucket (when missing), starts the
/// lease keeper, and returns the leases and the actor's inputs.
///
/// # Errors
/// [`DurableError`] when the input stream or the bucket cannot be made.
pub(super) async fn open(
    bus: &Bus,
    on: &super::Stage,
    settings: &Settings,
    kinds: &[StreamKind],
    stop: watch::Receiver<bool>,
) -> Result<(Arc<Leases>, Deliveries), DurableError> {
    let (counters, facts) = (on.counters(), on.facts());
    let (stage, instance) = (on.identity().stage, on.identity().instance.as_str());
    let subjects = bus.subjects().clone();
    let count = settings.partitions.count;
    let lease = settings
        .partitions
        .lease(settings.generator.step_interval_ms);
    let stream_name = subjects.partition_stream(stage);
    let failed = |consumer: String, step: &'static str| {
        let stream = stream_name.clone();
        move |source: async_nats::Error| DurableError {
            stream,
            consumer,
            step,
            source,
        }
    };
    let sources: Vec<Source> = kinds
        .iter()
        .filter_map(|kind| {
            let (source, destination) = subjects.partition_transform(stage, count, *kind)?;
            Some(Source {
                name: subjects.stream_name(*kind),
                subject_transforms: vec![SubjectTransform {
                    source,
                    destination,
                }],
                ..Default::default()
            })
        })
        .collect();
    let config = jetstream::stream::Config {
        name: stream_name.clone(),
        description: Some(format!(
            "fleetcast {stage}: its input in {count} partitions by server"
        )),
        sources: Some(sources.clone()),
        max_messages_per_subject: settings.partitions.history,
        max_age: Duration::from_secs(26 * 3600),
        ..Default::default()
    };
    let stream = bus
        .jetstream()
        .get_or_create_stream(config)
        .await
        .map_err(|error| failed(String::new(), "create input stream")(error.into()))?;
    let transforms = |sources: &[Source]| -> Vec<(String, Vec<SubjectTransform>)> {
        sources
            .iter()
            .map(|source| (source.name.clone(), source.subject_transforms.clone()))
            .collect()
    };
    let held = stream
        .cached_info()
        .config
        .sources
        .clone()
        .unwrap_or_default();
    if transforms(&held) != transforms(&sources) {
        return Err(failed(String::new(), "input stream made for another partition count")(
            format!(
                "delete stream {stream_name} (its messages are in another count's partitions) and start again"
            )
            .into(),
        ));
    }
    let bucket = subjects.partitions_bucket();
    let kv = match bus.jetstream().get_key_value(&bucket).await {
        Ok(kv) => kv,
        Err(_) => bus
            .jetstream()
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                description: "fleetcast: partition leases of the scaled-out stages".into(),
                history: 1,
                max_age: lease,
                ..Default::default()
            })
            .await
            .map_err(|error| failed(bucket.clone(), "create lease bucket")(error.into()))?,
    };
    let owner = format!("{instance}-{}", OWNERS.fetch_add(1, Ordering::SeqCst));
    let leases = Arc::new(Leases {
        kv,
        stage,
        owner: owner.clone(),
        subjects: subjects.clone(),
        owned: tokio::sync::Mutex::new(BTreeMap::new()),
        released: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let claimer = Arc::new(Claimer {
        bus: bus.clone(),
        stage,
        subjects,
        stream_name,
        ack_wait: Duration::from_secs(settings.nats.ack_wait_seconds),
        max_ack_pending: settings.nats.max_ack_pending,
        counters: counters.clone(),
        lags: Arc::new((0..count).map(|_| AtomicU64::new(0)).collect()),
        tx,
        stopped: stop.clone(),
    });
    tracing::info!(stage, owner = %owner, count, lease_ms = lease.as_millis() as u64, "partitioned input opened");
    tokio::spawn(keep_leases(
        leases.clone(),
        claimer,
        facts.clone(),
        count,
        lease,
    ));
    let mut stopped = stop;
    let until = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    Ok((leases, Box::pin(rx.take_until(until))))
}

/// The lease keeper: every quarter lease, renew the member key and the leases, claim what
/// [`to_claim`] says. Ends when the actor is gone (its inputs dropped: nothing released,
/// the leases expire) or the leases were released.
async fn keep_leases(
    leases: Arc<Leases>,
    claimer: Arc<Claimer>,
    facts: Facts,
    count: u32,
    lease: Duration,
) {
    let stage = leases.stage;
    let mut tick = tokio::time::interval(lease / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let offset = leases.owner.bytes().fold(0u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(byte.into())
    }) % count;
    let member = leases.subjects.member_key(stage, &leases.owner);
    let prefix = format!("{stage}.");
    let mut free_ticks: BTreeMap<u32, u32> = BTreeMap::new();
    let mut log = RateLimited::default();
    let claims = claimer.counters.extra("claims");
    let takeovers = claimer.counters.extra("takeovers");
    let lost = claimer.counters.extra("partitions_lost");
    let handoffs = claimer.counters.extra("handoffs");
    let mut first = true;
    loop {
        tick.tick().await;
        if claimer.tx.is_closed() {
            // The actor is gone without draining: a dead instance, its leases expire.
            for (_, held) in std::mem::take(&mut *leases.owned.lock().await) {
                held.task.abort();
            }
            return;
        }
        if leases.released.load(Ordering::SeqCst) {
            return;
        }
        let mut owned = leases.owned.lock().await;
        if leases.released.load(Ordering::SeqCst) {
            return;
        }
        let stopping = *claimer.stopped.borrow();
        if let Err(error) = leases.kv.put(&member, leases.owner.clone().into()).await
            && let Some(held_back) = log.check()
        {
            tracing::warn!(stage, %error, held_back, "member key not renewed");
        }
        let mut gone = Vec::new();
        for (partition, held) in owned.iter_mut() {
            let key = leases.subjects.lease_key(stage, *partition);
            match leases
                .kv
                .update(&key, leases.owner.clone().into(), held.revision)
                .await
            {
                Ok(revision) => held.revision = revision,
                Err(error) => {
                    tracing::warn!(stage, partition, %error, "lease lost: the partition is dropped");
                    gone.push(*partition);
                }
            }
        }
        for partition in gone {
            if let Some(held) = owned.remove(&partition) {
                held.task.abort();
            }
            lost.incr();
            claimer.send(Input::Lost { partition }).await;
        }
        if stopping {
            // Draining: keep the leases until the acknowledgements are sent and
            // `release` deletes them; take nothing new.
            for held in owned.values() {
                held.task.abort();
            }
            continue;
        }
        let Ok(keys) = leases.kv.keys().await else {
            continue;
        };
        let keys: Vec<String> = keys.filter_map(|key| async { key.ok() }).collect().await;
        let mut members = 0;
        let mut leased = BTreeSet::new();
        for key in keys.iter().filter_map(|key| key.strip_prefix(&prefix)) {
            if key.starts_with("member.") {
                members += 1;
            } else if let Ok(partition) = key.parse::<u32>() {
                leased.insert(partition);
            }
        }
        // The first tick only says the instance is there, so instances starting together
        // see each other before they claim.
        if std::mem::take(&mut first) {
            continue;
        }
        // More than the share (an instance joined): hand the surplus over. The partition's
        // inputs in flight here are handled again by the next owner from the same state
        // and give outputs under the same `Nats-Msg-Id`s.
        let fair = share(count, members);
        while owned.len() > fair {
            let Some((partition, held)) = owned.pop_last() else {
                break;
            };
            held.task.abort();
            claimer.send(Input::Lost { partition }).await;
            let key = leases.subjects.lease_key(stage, partition);
            let _ = leases
                .kv
                .delete_expect_revision(&key, Some(held.revision))
                .await;
            handoffs.incr();
            tracing::info!(stage, partition, owner = %leases.owner, members, "partition handed over to a new instance");
        }
        let long_free: BTreeSet<u32> = free_ticks
            .iter()
            .filter(|(_, ticks)| **ticks >= LONG_FREE_TICKS)
            .map(|(partition, _)| *partition)
            .collect();
        let wanted = to_claim(count, owned.len(), &leased, members, &long_free, offset);
        for partition in wanted.iter().copied() {
            let key = leases.subjects.lease_key(stage, partition);
            let Ok(revision) = leases.kv.create(&key, leases.owner.clone().into()).await else {
                continue;
            };
            match claimer.clone().claim(partition).await {
                Ok((task, existed)) => {
                    claims.incr();
                    if existed {
                        takeovers.incr();
                    }
                    tracing::info!(stage, partition, owner = %leases.owner, takeover = existed, "partition claimed");
                    owned.insert(partition, Owned { revision, task });
                    leased.insert(partition);
                }
                Err(error) => {
                    tracing::warn!(stage, partition, error = %error, "partition not claimed");
                    let _ = leases.kv.delete_expect_revision(&key, Some(revision)).await;
                }
            }
        }
        free_ticks = (0..count)
            .filter(|p| !leased.contains(p))
            .map(|p| (p, free_ticks.get(&p).map_or(1, |ticks| ticks + 1)))
            .collect();
        let list: Vec<String> = owned.keys().map(u32::to_string).collect();
        facts.set("partitions", list.join(","));
    }
}

impl Claimer {
    /// Rewinds `partition`'s consumer to its acknowledgement floor, reads its inputs up to
    /// the floor back, hands them to the actor and starts forwarding its deliveries.
    /// Returns the forwarding task and whether the consumer existed.
    async fn claim(
        self: Arc<Self>,
        partition: u32,
    ) -> Result<(tokio::task::JoinHandle<()>, bool), DurableError> {
        let consumer_name = self.subjects.partition_consumer(self.stage, partition);
        let filter = self.subjects.partition_input(self.stage, partition);
        let failed = |step: &'static str| {
            let (stream, consumer) = (self.stream_name.clone(), consumer_name.clone());
            move |source: async_nats::Error| DurableError {
                stream,
                consumer,
                step,
                source,
            }
        };
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(&self.stream_name)
            .await
            .map_err(|error| failed("get stream")(error.into()))?;
        let (floor, existed) = match stream.consumer_info(&consumer_name).await {
            Ok(info) => {
                let floor = info.ack_floor.stream_sequence;
                stream
                    .delete_consumer(&consumer_name)
                    .await
                    .map_err(|error| failed("rewind consumer")(error.into()))?;
                (floor, true)
            }
            Err(_) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|error| failed("get stream")(error.into()))?;
                (info.state.last_sequence, false)
            }
        };
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(consumer_name.clone()),
                description: Some(format!(
                    "fleetcast {}: partition {partition} of its input",
                    self.stage
                )),
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                },
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                max_ack_pending: self.max_ack_pending,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("create consumer")(error.into()))?;
        let history = self
            .history(&stream, &filter, floor)
            .await
            .map_err(failed("read history"))?;
        tracing::info!(
            stage = self.stage,
            partition,
            floor,
            history = history.len(),
            "partition history read back"
        );
        if !self.send(Input::Claimed { partition, history }).await {
            return Err(failed("hand over")("the stage stopped".into()));
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|error| failed("pull")(error.into()))?;
        let tracker = Tracker::partition(
            partition,
            self.lags.clone(),
            &self.counters,
            self.stage,
            consumer_name,
        );
        Ok((
            tokio::spawn(self.forward(partition, messages, tracker)),
            existed,
        ))
    }

    /// The partition's messages up to stream sequence `floor`, oldest first, with their
    /// original subjects.
    async fn history(
        &self,
        stream: &jetstream::stream::Stream,
        filter: &str,
        floor: u64,
    ) -> Result<Vec<async_nats::Message>, async_nats::Error> {
        // The newest of the partition's messages the leader holds up to the floor: an ordered
        // consumer on a replica still catching up would otherwise end the read early.
        let newest = super::replay::newest_message(stream, filter).await?;
        let last = floor.min(newest.map_or(0, |message| message.sequence));
        if last == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                filter_subject: filter.to_string(),
                ..Default::default()
            })
            .await?;
        let name = consumer.cached_info().name.clone();
        let mut history = Vec::new();
        let mut messages = consumer.messages().await?;
        loop {
            let Some(message) = tokio::time::timeout(HISTORY_WAIT, messages.next())
                .await
                .map_err(|_| "no message within 5 s")?
            else {
                break;
            };
            let message = message?;
            let sequence = message.info()?.stream_sequence;
            if sequence > floor {
                break;
            }
            let mut message = message.message;
            if let Some((_, original)) = self
                .subjects
                .partition_original(self.stage, &message.subject)
            {
                message.subject = original.into();
            }
            history.push(message);
            if sequence >= last {
                break;
            }
        }
        let _ = stream.delete_consumer(&name).await;
        Ok(history)
    }

    /// Forwards the partition's deliveries to the actor, with their original subjects,
    /// until the actor is gone or stops.
    async fn forward(
        self: Arc<Self>,
        partition: u32,
        mut messages: pull::Stream,
        mut tracker: Tracker,
    ) {
        let mut stopped = self.stopped.clone();
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = stopped.wait_for(|stop| *stop) => return,
            };
            let Some(result) = next else { return };
            let Some(mut delivery) = tracker.take(result) else {
                continue;
            };
            if !self.unwrap_subject(&mut delivery) {
                // Not a partitioned subject: nothing the stage reads; out of the way.
                let _ = delivery.message.ack().await;
                continue;
            }
            delivery.partition = Some(partition);
            if !self.send(Input::Delivery(delivery)).await {
                return;
            }
        }
    }

    /// Hands `input` to the actor; `false` when it is gone or stops taking input (a drain:
    /// waiting on a full queue then would hold the drain up).
    async fn send(&self, input: Input) -> bool {
        let mut tx = self.tx.clone();
        let mut stopped = self.stopped.clone();
        tokio::select! {
            sent = tx.send(input) => sent.is_ok(),
            _ = stopped.wait_for(|stop| *stop) => false,
        }
    }

    /// Gives `delivery` its original subject and the kind of stream it comes from.
    fn unwrap_subject(&self, delivery: &mut Delivery) -> bool {
        let subject = delivery.message.message.subject.clone();
        let Some((_, original)) = self.subjects.partition_original(self.stage, &subject) else {
            return false;
        };
        delivery.kind = match self.subjects.parse(original) {
            Some(Subject::Metrics { .. }) => StreamKind::Metrics,
            Some(Subject::Forecast { .. }) => StreamKind::Forecasts,
            Some(Subject::Risk { .. }) => StreamKind::Risk,
            _ => return false,
        };
        delivery.message.message.subject = original.into();
        true
    }
}

/// Every extra a stage reading through [`Durable`](super::Durable) declares: the durable
/// ones, and the partition ones when `settings` partition the stages.
pub fn extras(settings: &Settings) -> Vec<&'static str> {
    let mut extras = DURABLE_EXTRAS.to_vec();
    if settings.partitions.enabled() {
        extras.extend(PARTITION_EXTRAS);
    }
    extras
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> BTreeSet<u32> {
        items.iter().copied().collect()
    }

    /// Alone, an instance claims everything; two share 4 partitions 2 and 2; an odd count
    /// rounds the share up; nothing leased is claimed twice.
    #[test]
    fn fair_share() {
        assert_eq!(to_claim(4, 0, &set(&[]), 1, &set(&[]), 0), vec![0, 1, 2, 3]);
        assert_eq!(to_claim(4, 0, &set(&[]), 2, &set(&[]), 1), vec![1, 2]);
        assert_eq!(to_claim(4, 0, &set(&[1, 2]), 2, &set(&[]), 0), vec![0, 3]);
        assert_eq!(
            to_claim(4, 2, &set(&[1, 2]), 2, &set(&[]), 0),
            Vec::<u32>::new()
        );
        assert_eq!(
            to_claim(4, 2, &set(&[0, 1, 2]), 2, &set(&[]), 0),
            Vec::<u32>::new()
        );
        assert_eq!(to_claim(5, 0, &set(&[]), 2, &set(&[]), 3), vec![3, 4, 0]);
        assert_eq!(
            to_claim(4, 0, &set(&[0, 1, 2, 3]), 3, &set(&[]), 0),
            Vec::<u32>::new()
        );
    }

    /// A partition free for a whole lease is claimed beyond the share (its owner died and
    /// its member key is still there); others are not.
    #[test]
    fn long_free_partitions_are_taken_beyond_the_share() {
        let leased = set(&[0, 1]);
        assert_eq!(to_claim(4, 2, &leased, 2, &set(&[]), 0), Vec::<u32>::new());
        assert_eq!(to_claim(4, 2, &leased, 2, &set(&[2, 3]), 0), vec![2, 3]);
        assert_eq!(to_claim(4, 2, &leased, 2, &set(&[3]), 0), vec![3]);
        // No members known (the listing failed to show the own key): share of one.
        assert_eq!(to_claim(2, 0, &set(&[]), 0, &set(&[]), 0), vec![0, 1]);
    }

    /// The partition map forgets exactly one partition's servers.
    #[test]
    fn partition_map_takes_one_partition() {
        let mut map = PartitionMap::default();
        map.note("a", Some(1));
        map.note("b", Some(2));
        map.note("c", Some(1));
        map.note("d", None);
        let mut taken = map.take(1);
        taken.sort();
        assert_eq!(taken, vec!["a", "c"]);
        assert!(map.take(1).is_empty());
        assert_eq!(map.take(2), vec!["b"]);
    }
}
