//! Read-index rounds shared by concurrent reads.
//!
//! A linearizable read needs a read index: the leader's commit index,
//! confirmed by a quorum heartbeat round taken *after* the read arrived.
//! Each round costs a network round trip to a quorum, so reads that arrive
//! while a round is under way wait for the *next* round together (joining
//! the running one would be wrong: it may have sampled the commit index
//! before a write that completed before the read began). With a constant
//! stream of reads this gives one round in flight and one filling up.

use std::sync::Mutex;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Fetch = Box<dyn Fn() -> BoxFuture<'static, Result<u64>> + Send + Sync>;

/// Coalesces read-index requests into rounds.
pub struct ReadRounds {
    fetch: Fetch,
    state: Mutex<RoundState>,
}

#[derive(Default)]
struct RoundState {
    /// Reads waiting for the next round.
    waiting: Vec<oneshot::Sender<Result<u64>>>,
    /// Whether a driver task is running rounds.
    running: bool,
}

impl ReadRounds {
    /// Rounds that obtain a read index with `fetch`.
    pub fn new(
        fetch: impl Fn() -> BoxFuture<'static, Result<u64>> + Send + Sync + 'static,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(ReadRounds {
            fetch: Box::new(fetch),
            state: Mutex::default(),
        })
    }

    /// A read index from a round that started after this call.
    pub async fn read_index(self: &std::sync::Arc<Self>) -> Result<u64> {
        let (sender, receiver) = oneshot::channel();
        let start_driver = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.waiting.push(sender);
            !std::mem::replace(&mut state.running, true)
        };
        if start_driver {
            let rounds = self.clone();
            tokio::spawn(async move { rounds.drive().await });
        }
        receiver
            .await
            .map_err(|_| Error::Unavailable("the read-index round was abandoned".into()))?
    }

    /// Runs rounds while reads are waiting.
    async fn drive(&self) {
        loop {
            let batch = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let result = (self.fetch)().await;
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_reads_share_rounds_that_start_after_them() {
        let rounds_started = Arc::new(AtomicU64::new(0));
        let counter = rounds_started.clone();
        let rounds = ReadRounds::new(move || {
            let round = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(round)
            })
        });
        // The first read starts round 1; while it runs, 50 more arrive and
        // must all be served by round 2, not by round 1.
        let first = tokio::spawn({
            let rounds = rounds.clone();
            async move { rounds.read_index().await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let later: Vec<_> = (0..50)
            .map(|_| {
                let rounds = rounds.clone();
                tokio::spawn(async move { rounds.read_index().await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Ok(1));
        for read in later {
            assert_eq!(read.await.unwrap(), Ok(2));
        }
        assert_eq!(rounds_started.load(Ordering::SeqCst), 2);
        // Idle again: the next read starts a fresh round.
        assert_eq!(rounds.read_index().await, Ok(3));
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_reads_only() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let rounds = ReadRounds::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Err(Error::Unavailable("no quorum".into()))
                } else {
                    Ok(7)
                }
            })
        });
        assert_eq!(
            rounds.read_index().await,
            Err(Error::Unavailable("no quorum".into()))
        );
        assert_eq!(rounds.read_index().await, Ok(7));
    }
}
