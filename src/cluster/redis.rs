//! The Redis implementation of the three seams (`Broker`, `PresenceManager`, `Sequencer`) that
//! shards and the HTTP API call in cluster mode (`--redis-url`), and the start of the relay thread
//! behind them.
//!
//! Owns: the sending ends of the relay's inputs and the readiness flag. Must not: wait. A publish is a
//! `try_send` into a bounded queue (full: dropped for the other instances and counted); presence
//! changes go into an unbounded queue that the relay drains even while Redis is away.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::presence::Presence;
use super::relay::{Inputs, Ordered, Outgoing, Relay, Tuning};
use super::streams::RoomStreams;
use crate::broker::{
    Announce, Broker, Coverage, LocalChange, Numbering, PresenceManager, Question, Sequencer,
};
use crate::config::Config;
use crate::directory::ShardId;
use crate::mailbox::{Delivery, ReplayRequest, Target, ToSequence};
use crate::metrics::RelayCounters;
use crate::protocol::Frame;
use crate::router::Router;

/// Questions waiting for the relay at most; beyond that the asker answers locally.
const QUESTION_QUEUE: usize = 1024;

#[derive(Debug)]
pub struct RedisBroker {
    outgoing: flume::Sender<Outgoing>,
    changes: tokio::sync::mpsc::UnboundedSender<Ordered>,
    questions: flume::Sender<Question>,
    counters: Arc<RelayCounters>,
}

/// A valid instance id: 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_instance_id(id: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=64).contains(&id.len()) && id.chars().all(valid) {
        Ok(())
    } else {
        Err(format!("--instance-id {id:?}: use 1-64 characters of A-Z a-z 0-9 . _ -"))
    }
}

impl RedisBroker {
    /// The broker for `--redis-url`, with its relay thread started (its own single-threaded
    /// runtime). The relay fans incoming messages out through `router`, counts into `counters`, and
    /// stops once this broker is dropped.
    pub fn start(
        config: &Config,
        url: &str,
        router: Router,
        counters: Arc<RelayCounters>,
    ) -> Result<Self, String> {
        let client = super::endpoint::Endpoint::parse(url)?;
        let me = match &config.instance_id {
            Some(id) => id.clone(),
            None => crate::protocol::new_short_name(),
        };
        validate_instance_id(&me)?;
        if config.relay_batch == 0 || config.relay_queue == 0 {
            return Err("--relay-batch and --relay-queue must be at least 1".into());
        }
        let (outgoing, outgoing_rx) = flume::bounded(config.relay_queue);
        let (changes, changes_rx) = tokio::sync::mpsc::unbounded_channel();
        let (questions, questions_rx) = flume::bounded(QUESTION_QUEUE);
        let inputs = Inputs { outgoing: outgoing_rx, changes: changes_rx, questions: questions_rx };
        let tuning = Tuning {
            batch: config.relay_batch,
            linger: config.relay_linger,
            heartbeat: config.presence_heartbeat,
            presence_events: config.presence_events,
        };
        let presence = Presence::new(&config.redis_prefix, &me, config.presence_heartbeat);
        tracing::info!(instance = %presence.me, "cluster mode: relaying through redis");
        let streams = RoomStreams::new(
            presence.names.clone(),
            &me,
            config.recovery_window,
            config.dedup_window,
        );
        let scripts = (presence, streams);
        let relay = Relay::new((router, Arc::clone(&counters)), client, scripts, inputs, tuning);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the relay's runtime: {err}"))?;
        std::thread::Builder::new()
            .name("wsbroker-relay".into())
            .spawn(move || runtime.block_on(relay.run()))
            .map_err(|err| format!("cannot start the relay thread: {err}"))?;
        Ok(Self { outgoing, changes, questions, counters })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, target: &Target, frame: &Frame) {
        let outgoing = Outgoing::Publish { target: target.clone(), frame: frame.clone() };
        if self.outgoing.try_send(outgoing).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    fn is_ready(&self) -> bool {
        self.counters.redis_up.load(Relaxed) == 1
    }

    fn notify(&self, notice: &crate::rules::Notice) {
        let _ = self.changes.send(Ordered::Notice(Box::new(notice.clone())));
    }

    fn when_subscribed(&self, shard: ShardId, then: Delivery) -> Option<Delivery> {
        match self.changes.send(Ordered::Notify { shard, then }) {
            Ok(()) => None,
            Err(gone) => match gone.0 {
                Ordered::Notify { then, .. } => Some(then),
                _ => unreachable!("a notice was sent"),
            },
        }
    }
}

impl PresenceManager for RedisBroker {
    /// The relay subscribes to the rooms joined, and announces a change once it is the cluster's.
    fn local_change(&self, change: LocalChange) -> Announce {
        // Fails only once the relay thread is gone, when there is nobody left to tell.
        let _ = self.changes.send(Ordered::Change(change));
        Announce::ByManager
    }

    fn ask(&self, question: Question) {
        // A full queue drops the question; the asker then answers locally, marked partial.
        let _ = self.questions.try_send(question);
    }

    fn coverage(&self) -> Coverage {
        Coverage::Cluster
    }

    fn begin_handover(&self) {
        let _ = self.changes.send(Ordered::HoldChanges);
    }

    fn finish_handover(&self, grace: Duration) -> oneshot::Receiver<()> {
        let (done, handed) = oneshot::channel();
        let _ = self.changes.send(Ordered::HandOver { grace, done });
        handed
    }
}

impl Sequencer for RedisBroker {
    /// A script numbers the message and publishes it, atomically.
    fn stamp(&self, item: ToSequence, home: ShardId) -> Numbering<ToSequence> {
        let outgoing = Outgoing::Stamp { item: Box::new(item), home };
        match self.outgoing.try_send(outgoing) {
            Ok(()) => Numbering::Taken,
            Err(refused) => match refused.into_inner() {
                Outgoing::Stamp { item, .. } => {
                    self.counters.dropped.fetch_add(1, Relaxed);
                    Numbering::Refused(*item)
                }
                Outgoing::Publish { .. } => unreachable!("a stamp was sent"),
            },
        }
    }

    /// Read in order with the subscriptions, so after the member's.
    fn read_stream(&self, request: ReplayRequest, home: ShardId) -> Numbering<ReplayRequest> {
        let read = Ordered::Read { request: Box::new(request), home };
        match self.changes.send(read) {
            Ok(()) => Numbering::Taken,
            Err(gone) => match gone.0 {
                Ordered::Read { request, .. } => Numbering::Refused(*request),
                _ => unreachable!("a read was sent"),
            },
        }
    }
}
