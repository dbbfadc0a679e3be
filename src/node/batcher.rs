//! Write batching: commands that arrive while earlier batches are in flight
//! are proposed together, as one log entry.
//!
//! openraft 0.9 appends one client write at a time and waits for its fsync
//! before taking the next, so proposing each command on its own would cap
//! writes at one per fsync. Here, up to `MAX_IN_FLIGHT` batches are in
//! flight at once; everything that queues up meanwhile goes into the next
//! one. An idle node sends a lone command at once (no timer, no added
//! latency); a busy node sends fewer, larger entries.
//!
//! The limit is two, and the second batch must be worth it. Every entry
//! costs every node a round of fixed work (an AppendEntries call, an fsync,
//! a sled transaction), so on the CPU-bound benchmark machine overlapping
//! small entries lost to one larger entry: two or four batches in flight
//! whenever anything was queued did no better than one, twelve ~20 % worse
//! (BENCHMARKS.md). But one entry at a time leaves the CPUs idle while
//! the fsyncs of that entry run (~14 % of the machine at concurrency 64).
//! So while a batch is in flight the next one leaves only once
//! `MIN_OVERLAPPING_BATCH` commands are queued; a shorter queue waits for
//! the slot ahead. That gave 2–19 % more writes at concurrency 64 than one
//! batch in flight, in each of six alternating pairs. Forwarded batches join
//! the leader's queue, so this shapes the leader's entries too.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::error::Error;
use crate::node::writes::{Delivery, Routed};
use crate::store::command::Command;

/// Batches proposed concurrently, at most (see the module doc).
pub const MAX_IN_FLIGHT: usize = 2;
/// Commands that must be queued for a batch to go out while another is in
/// flight (see the module doc).
pub const MIN_OVERLAPPING_BATCH: usize = 16;
/// Commands in one batch, at most.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Encoded bytes of one batch, at most (a larger single command still goes
/// alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

type Send =
    Box<dyn Fn(Vec<Routed>) -> BoxFuture<'static, Vec<Delivery>> + std::marker::Send + Sync>;

/// A command waiting for its batch.
struct Pending {
    routed: Routed,
    bytes: usize,
    reply: oneshot::Sender<Delivery>,
}

/// Gathers commands into batches and hands each batch to `send`.
pub struct WriteBatcher {
    send: Send,
    queue: Mutex<Vec<Pending>>,
    /// Shared with the driver, which holds the batcher only weakly (it stops
    /// when the batcher is dropped).
    wake: Arc<Notify>,
}

impl WriteBatcher {
    /// A batcher whose batches go to `send`, which says what became of each
    /// command. Starts its driver task.
    pub fn start(
        send: impl Fn(Vec<Routed>) -> BoxFuture<'static, Vec<Delivery>>
        + std::marker::Send
        + Sync
        + 'static,
    ) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let batcher = Arc::new(WriteBatcher {
            send: Box::new(send),
            queue: Mutex::default(),
            wake: wake.clone(),
        });
        tokio::spawn(drive(Arc::downgrade(&batcher), wake));
        batcher
    }

    /// Queues a command (`may_forward`: whether this node may send it on to
    /// the leader); the receiver learns what became of it.
    pub fn submit(&self, command: Command, may_forward: bool) -> oneshot::Receiver<Delivery> {
        let (reply, receiver) = oneshot::channel();
        let bytes = postcard::experimental::serialized_size(&command).unwrap_or(MAX_BATCH_BYTES);
        let routed = Routed {
            command,
            may_forward,
        };
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                routed,
                bytes,
                reply,
            });
        self.wake.notify_one();
        receiver
    }

    /// Takes the next batch off the queue: empty if fewer than `at_least`
    /// commands are queued.
    fn take_batch(&self, at_least: usize) -> Vec<Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() < at_least.max(1) {
            return Vec::new();
        }
        let mut bytes = 0;
        let mut count = 0;
        for pending in queue.iter() {
            if count > 0 && (count == MAX_BATCH_COMMANDS || bytes + pending.bytes > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += pending.bytes;
            count += 1;
        }
        let rest = queue.split_off(count);
        std::mem::replace(&mut *queue, rest)
    }
}

/// The driver: whenever a slot is free and enough commands are queued (one
/// if nothing is in flight), send them all as one batch. Ends when the
/// batcher is dropped.
async fn drive(batcher: std::sync::Weak<WriteBatcher>, wake: Arc<Notify>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Signalled as each batch finishes: a queue too short to overlap then
    // goes out at once.
    let finished = Arc::new(Notify::new());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = loop {
            let Some(strong) = batcher.upgrade() else {
                return;
            };
            // Whether another batch holds a slot besides this one.
            let overlapping = slots.available_permits() + 1 < MAX_IN_FLIGHT;
            let batch = strong.take_batch(if overlapping {
                MIN_OVERLAPPING_BATCH
            } else {
                1
            });
            if !batch.is_empty() {
                break batch;
            }
            drop(strong);
            tokio::select! {
                () = wake.notified() => {}
                () = finished.notified() => {}
            }
        };
        let finished = finished.clone();
        let Some(strong) = batcher.upgrade() else {
            return;
        };
        let (routed, replies): (Vec<Routed>, Vec<_>) =
            batch.into_iter().map(|p| (p.routed, p.reply)).unzip();
        let sending = (strong.send)(routed);
        drop(strong);
        tokio::spawn(async move {
            let expected = replies.len();
            let deliveries = sending.await;
            if deliveries.len() != expected {
                let e = Error::Internal(format!(
                    "a batch of {expected} commands had {} deliveries",
                    deliveries.len()
                ));
                for reply in replies {
                    let _ = reply.send(Delivery::Failed(e.clone()));
                }
            } else {
                for (reply, delivery) in replies.into_iter().zip(deliveries) {
                    let _ = reply.send(delivery);
                }
            }
            drop(slot);
            finished.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::store::command::Applied;

    fn delete(id: usize) -> Command {
        Command::DeleteContainer {
            namespace: "ns".into(),
            id: id.to_string(),
            now: Default::default(),
        }
    }

    #[tokio::test]
    async fn commands_queued_behind_full_slots_share_batches_and_keep_their_outcomes() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let batcher = WriteBatcher::start(move |batch: Vec<Routed>| {
            seen.lock().unwrap().push(batch.len());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                batch
                    .iter()
                    .map(|r| match &r.command {
                        Command::DeleteContainer { id, .. } if id == "13" => {
                            Delivery::Applied(Err(Error::not_found("13")))
                        }
                        _ if !r.may_forward => Delivery::NotLeader,
                        _ => Delivery::Applied(Ok(Applied::ContainerDeleted)),
                    })
                    .collect()
            })
        });
        let receivers: Vec<_> = (0..200)
            .map(|i| batcher.submit(delete(i), i != 7))
            .collect();
        for (i, receiver) in receivers.into_iter().enumerate() {
            let expected = match i {
                13 => Delivery::Applied(Err(Error::not_found("13"))),
                7 => Delivery::NotLeader,
                _ => Delivery::Applied(Ok(Applied::ContainerDeleted)),
            };
            assert_eq!(receiver.await.unwrap(), expected, "command {i}");
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(
            batches.len() < 50,
            "200 commands went out in {} batches",
            batches.len()
        );
    }

    /// Waits (bounded) until `sizes` holds `n` batches.
    async fn batches_sent(sizes: &Mutex<Vec<usize>>, n: usize) -> Vec<usize> {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = sizes.lock().unwrap().clone();
            if now.len() >= n || tokio::time::Instant::now() >= until {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_second_batch_overlaps_the_first_only_when_it_is_large_enough() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        // Every batch waits until the test releases it.
        let release = Arc::new(Semaphore::new(0));
        let (seen, gate) = (sizes.clone(), release.clone());
        let batcher = WriteBatcher::start(move |batch: Vec<Routed>| {
            seen.lock().unwrap().push(batch.len());
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                batch
                    .iter()
                    .map(|_| Delivery::Applied(Ok(Applied::ContainerDeleted)))
                    .collect()
            })
        });
        let mut receivers = vec![batcher.submit(delete(0), true)];
        assert_eq!(
            batches_sent(&sizes, 1).await,
            [1],
            "an idle batcher sends at once"
        );

        // A short queue waits for the batch in flight...
        receivers.extend((1..MIN_OVERLAPPING_BATCH).map(|i| batcher.submit(delete(i), true)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*sizes.lock().unwrap(), [1]);
        // ...until it is long enough to be worth its own entry.
        receivers.push(batcher.submit(delete(MIN_OVERLAPPING_BATCH), true));
        assert_eq!(
            batches_sent(&sizes, 2).await,
            [1, MIN_OVERLAPPING_BATCH],
            "a full queue overlaps the batch in flight"
        );

        // A short queue left behind still waits while either batch is in
        // flight, and goes out once neither is.
        receivers.extend((0..3).map(|i| batcher.submit(delete(100 + i), true)));
        release.add_permits(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sizes.lock().unwrap().len(), 2);
        release.add_permits(1);
        assert_eq!(batches_sent(&sizes, 3).await, [1, MIN_OVERLAPPING_BATCH, 3]);

        release.add_permits(1);
        for receiver in receivers {
            assert_eq!(
                receiver.await.unwrap(),
                Delivery::Applied(Ok(Applied::ContainerDeleted))
            );
        }
    }

    #[tokio::test]
    async fn an_idle_batcher_sends_a_lone_command_at_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let batcher = WriteBatcher::start(move |batch: Vec<Routed>| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                batch
                    .iter()
                    .map(|_| Delivery::Failed(Error::Unavailable("no leader".into())))
                    .collect()
            })
        });
        let started = std::time::Instant::now();
        let delivery = batcher.submit(delete(1), true).await.unwrap();
        assert_eq!(
            delivery,
            Delivery::Failed(Error::Unavailable("no leader".into()))
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
