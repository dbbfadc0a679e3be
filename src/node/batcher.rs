//! Write batching: commands that arrive while earlier batches are in flight
//! are proposed together, as one log entry.
//!
//! openraft 0.9 appends one client write at a time and waits for its fsync
//! before taking the next, so proposing each command on its own would cap
//! writes at one per fsync. Here, up to `MAX_IN_FLIGHT` batches are in
//! flight at once; everything that queues up meanwhile goes into the next
//! one. An idle node sends a lone command at once (no timer, no added
//! latency); a busy node sends fewer, larger entries.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::error::{Error, Result};
use crate::store::command::{Command, Outcome};

/// Batches proposed concurrently, at most.
pub const MAX_IN_FLIGHT: usize = 4;
/// Commands in one batch, at most.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Encoded bytes of one batch, at most (a larger single command still goes
/// alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

type Send = Box<dyn Fn(Vec<Command>) -> BoxFuture<'static, Result<Vec<Outcome>>> + std::marker::Send + Sync>;

/// A command waiting for its batch.
struct Pending {
    command: Command,
    bytes: usize,
    reply: oneshot::Sender<Result<Outcome>>,
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
    /// A batcher whose batches go to `send`, which returns one outcome per
    /// command (or an error that applies to the whole batch). Starts its
    /// driver task.
    pub fn start(
        send: impl Fn(Vec<Command>) -> BoxFuture<'static, Result<Vec<Outcome>>> + std::marker::Send + Sync + 'static,
    ) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let batcher = Arc::new(WriteBatcher { send: Box::new(send), queue: Mutex::default(), wake: wake.clone() });
        tokio::spawn(drive(Arc::downgrade(&batcher), wake));
        batcher
    }

    /// Queues a command; the receiver gets its outcome, or the error that
    /// stopped its batch.
    pub fn submit(&self, command: Command) -> oneshot::Receiver<Result<Outcome>> {
        let (reply, receiver) = oneshot::channel();
        let bytes = postcard::experimental::serialized_size(&command).unwrap_or(MAX_BATCH_BYTES);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(Pending { command, bytes, reply });
        self.wake.notify_one();
        receiver
    }

    /// Takes the next batch off the queue (empty if nothing is queued).
    fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = 0;
        let mut count = 0;
        for pending in queue.iter() {
            if count > 0 && (count == MAX_BATCH_COMMANDS || bytes + pending.bytes > MAX_BATCH_BYTES) {
                break;
            }
            bytes += pending.bytes;
            count += 1;
        }
        let rest = queue.split_off(count);
        std::mem::replace(&mut *queue, rest)
    }
}

/// The driver: whenever a slot is free and commands are queued, send them
/// all as one batch. Ends when the batcher is dropped.
async fn drive(batcher: std::sync::Weak<WriteBatcher>, wake: Arc<Notify>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let batch = loop {
            let Some(strong) = batcher.upgrade() else { return };
            let batch = strong.take_batch();
            if !batch.is_empty() {
                break batch;
            }
            drop(strong);
            wake.notified().await;
        };
        let Some(strong) = batcher.upgrade() else { return };
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let sending = (strong.send)(commands);
        drop(strong);
        tokio::spawn(async move {
            let expected = replies.len();
            match sending.await {
                Ok(outcomes) if outcomes.len() == expected => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(outcomes) => {
                    let e = Error::Internal(format!("a batch of {expected} commands produced {} outcomes", outcomes.len()));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
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
        Command::DeleteContainer { namespace: "ns".into(), id: id.to_string(), now: Default::default() }
    }

    #[tokio::test]
    async fn commands_queued_behind_full_slots_share_batches_and_keep_their_outcomes() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let batcher = WriteBatcher::start(move |commands: Vec<Command>| {
            seen.lock().unwrap().push(commands.len());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(commands
                    .iter()
                    .map(|c| match c {
                        Command::DeleteContainer { id, .. } if id == "13" => Err(Error::not_found("13")),
                        _ => Ok(Applied::ContainerDeleted),
                    })
                    .collect())
            })
        });
        let receivers: Vec<_> = (0..200).map(|i| batcher.submit(delete(i))).collect();
        for (i, receiver) in receivers.into_iter().enumerate() {
            let outcome = receiver.await.unwrap().unwrap();
            assert_eq!(outcome.is_err(), i == 13, "command {i}");
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(batches.len() < 50, "200 commands went out in {} batches", batches.len());
    }

    #[tokio::test]
    async fn an_idle_batcher_sends_a_lone_command_at_once_and_errors_reach_every_command() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let batcher = WriteBatcher::start(move |_commands: Vec<Command>| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Error::Unavailable("no leader".into())) })
        });
        let started = std::time::Instant::now();
        let outcome = batcher.submit(delete(1)).await.unwrap();
        assert_eq!(outcome, Err(Error::Unavailable("no leader".into())));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
