//! Ranks that are threads of one process (one per device): each collective waits until every
//! rank has brought its part, and the last to arrive reduces them in rank order, so that
//! every run of the same job sums alike.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Collective, Reduce, peer_lost};
use crate::error::Result;

struct Round {
    /// What each rank brought to the collective in progress.
    parts: Vec<Option<Vec<f32>>>,
    /// The last finished collective's result, and how many have finished.
    result: Arc<Vec<f32>>,
    finished: u64,
    /// A rank that left before the job's end (it failed, or panicked).
    gone: Option<usize>,
}

struct Shared {
    round: Mutex<Round>,
    changed: Condvar,
}

/// One rank of a group of threads; [`ThreadGroup::new`] makes the group's ranks, one to move
/// into each thread. A rank dropped while others still wait for it (its thread failed) makes
/// their collectives fail instead of waiting forever.
pub struct ThreadGroup {
    shared: Arc<Shared>,
    rank: usize,
    size: usize,
    done: bool,
}

impl ThreadGroup {
    /// The `size` ranks of a new group, in rank order.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                parts: vec![None; size],
                result: Arc::new(Vec::new()),
                finished: 0,
                gone: None,
            }),
            changed: Condvar::new(),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                shared: shared.clone(),
                rank,
                size,
                done: false,
            })
            .collect()
    }

    /// Marks this rank's part of the job as complete: dropping it afterwards is no failure.
    pub fn finish(mut self) {
        self.done = true;
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        self.shared
            .round
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings `part` and returns what `reduce` makes of every rank's, in rank order.
    fn exchange(
        &self,
        part: Vec<f32>,
        reduce: impl Fn(&[Vec<f32>]) -> Vec<f32>,
    ) -> Result<Arc<Vec<f32>>> {
        let mut round = self.lock();
        if let Some(gone) = round.gone {
            return Err(peer_lost(format!("rank {gone} of {} stopped", self.size)));
        }
        round.parts[self.rank] = Some(part);
        let ticket = round.finished;
        if round.parts.iter().all(Option::is_some) {
            let parts: Vec<Vec<f32>> = round.parts.iter_mut().map(|p| p.take().unwrap()).collect();
            round.result = Arc::new(reduce(&parts));
            round.finished += 1;
            self.shared.changed.notify_all();
        }
        while round.finished == ticket {
            if let Some(gone) = round.gone {
                return Err(peer_lost(format!(
                    "rank {gone} of {} stopped; rank {} cannot go on without it",
                    self.size, self.rank
                )));
            }
            round = self
                .shared
                .changed
                .wait(round)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        Ok(round.result.clone())
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if !self.done {
            let mut round = self.lock();
            round.gone.get_or_insert(self.rank);
            self.shared.changed.notify_all();
        }
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce(&self, values: &mut [f32], op: Reduce) -> Result<()> {
        let result = self.exchange(values.to_vec(), |parts| {
            let mut acc = parts[0].clone();
            parts[1..].iter().for_each(|p| op.fold(&mut acc, p));
            acc
        })?;
        values.copy_from_slice(&result);
        Ok(())
    }

    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()> {
        let part = match self.rank == root {
            true => values.to_vec(),
            false => Vec::new(),
        };
        let result = self.exchange(part, |parts| parts[root].clone())?;
        values.copy_from_slice(&result);
        Ok(())
    }
}
