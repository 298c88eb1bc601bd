//! Data-parallel training: the collective operations replicas of a model share, whether they
//! are threads of one process (one per device, [`ThreadGroup`]) or processes on several
//! machines ([`Mpi`], behind the `distributed` feature), and what SwAV does with them:
//! the initial weights broadcast from rank 0 ([`broadcast_state`]) and the gradients summed
//! over ranks in buckets ([`sum_gradients`]).

#[cfg(feature = "distributed")]
mod mpi;
mod threads;

#[cfg(feature = "distributed")]
pub use mpi::Mpi;
pub use threads::ThreadGroup;

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::nn::{Entry, Visit};
use crate::tensor::Tensor;

/// An element-wise reduction over ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Max,
}

impl Reduce {
    fn fold(self, into: &mut [f32], from: &[f32]) {
        match self {
            Reduce::Sum => into.iter_mut().zip(from).for_each(|(a, b)| *a += b),
            Reduce::Max => into.iter_mut().zip(from).for_each(|(a, &b)| *a = a.max(b)),
        }
    }
}

/// The ranks of one data-parallel job, and what they do together. Every rank calls the same
/// operations in the same order with slices of the same length.
pub trait Collective {
    /// This replica's place, `0..size()`; rank 0 writes the run's files.
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Replaces `values` on every rank by their element-wise reduction over ranks.
    fn all_reduce(&self, values: &mut [f32], op: Reduce) -> Result<()>;
    /// Replaces `values` on every rank by rank `root`'s.
    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()>;
}

/// One replica alone: every operation leaves the values as they are.
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce(&self, _: &mut [f32], _: Reduce) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &mut [f32], _: usize) -> Result<()> {
        Ok(())
    }
}

/// The error of a collective whose peers are gone.
pub(crate) fn peer_lost(why: impl std::fmt::Display) -> Error {
    Error::Collective(why.to_string())
}

/// Returns on every rank once all have called it.
pub fn barrier(comm: &dyn Collective) -> Result<()> {
    comm.broadcast(&mut [0.0], 0)
}

/// A count summed over ranks (batch sizes; exact below 2^24).
pub fn total(comm: &dyn Collective, count: usize) -> Result<usize> {
    let mut v = [count as f32];
    comm.all_reduce(&mut v, Reduce::Sum)?;
    Ok(v[0] as usize)
}

/// Training reduces gradients in buckets of this many f32 (16 MiB, about PyTorch DDP's 25 MB).
pub const BUCKET: usize = 4 << 20;

/// Sums each parameter's gradient over the ranks, in place, in buckets of at most `bucket`
/// floats (a larger gradient is a bucket of its own), the last layers' first: each bucket is
/// one readback and one all-reduce. Every rank runs the same graph, so the same parameters
/// have gradients on every rank; those without one are left out.
pub fn sum_gradients(params: &[Var], comm: &dyn Collective, bucket: usize) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let grads: Vec<Tensor> = params.iter().filter_map(Var::grad).collect();
    let mut end = grads.len();
    while end > 0 {
        let mut start = end - 1;
        let mut len = grads[start].numel();
        while start > 0 && len + grads[start - 1].numel() <= bucket {
            start -= 1;
            len += grads[start].numel();
        }
        let members: Vec<&Tensor> = grads[start..end].iter().collect();
        through_host(&members, |flat| comm.all_reduce(flat, Reduce::Sum))?;
        end = start;
    }
    Ok(())
}

/// Replaces every parameter and buffer (BatchNorm's running statistics) of `module` by rank
/// 0's, so that all replicas start alike.
pub fn broadcast_state(module: &dyn Visit, comm: &dyn Collective) -> Result<()> {
    broadcast_tensors(&state_tensors(module), comm)
}

/// The tensors of a module's state, in visiting order.
fn state_tensors(module: &dyn Visit) -> Vec<Tensor> {
    let mut tensors = Vec::new();
    module.visit("", &mut |_, entry| match entry {
        Entry::Param(v) => tensors.push(v.value().clone()),
        Entry::Buffer(t) => tensors.push(t.clone()),
        Entry::Count(_) => {}
    });
    tensors
}

/// Replaces `tensors` (f32) on every rank by rank 0's.
pub fn broadcast_tensors(tensors: &[Tensor], comm: &dyn Collective) -> Result<()> {
    if comm.size() == 1 || tensors.is_empty() {
        return Ok(());
    }
    let refs: Vec<&Tensor> = tensors.iter().collect();
    through_host(&refs, |flat| comm.broadcast(flat, 0))
}

/// Reads `tensors` (f32) back as one flat vector, lets `exchange` replace its values (a
/// collective), and writes them back in place.
fn through_host(
    tensors: &[&Tensor],
    exchange: impl FnOnce(&mut [f32]) -> Result<()>,
) -> Result<()> {
    let mut flat = Tensor::to_vecs(tensors)?.concat();
    exchange(&mut flat)?;
    let mut at = 0;
    for t in tensors {
        let n = t.numel();
        t.copy_from(&Tensor::from_slice(t.gpu(), t.shape(), &flat[at..at + n])?)?;
        at += n;
    }
    Ok(())
}

/// The number of ranks an MPI launcher (`mpirun`, `srun`) started this process as one of,
/// where it is more than one: OpenMPI sets the first variable, MPICH and Slurm the second.
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
        .find(|&n| n > 1)
}

/// An even split of `count` items over the ranks: rank r takes `r * count / size ..
/// (r + 1) * count / size` (sizes differ by one at most).
pub fn split(count: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    rank * count / size..(rank + 1) * count / size
}
