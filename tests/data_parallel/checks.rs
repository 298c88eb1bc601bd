//! Data-parallel checks that run on any collective: threads of one process
//! (tests/data_parallel.rs) and MPI ranks (tests/mpi.rs). Each rank computes the one-process
//! result on the whole batch itself and compares its share with it; each check returns the
//! largest difference it saw.

use std::sync::Arc;

use lim::autograd::Var;
use lim::dist::{self, Collective, Solo};
use lim::nn::{self, Linear, Random};
use lim::optim::{Optimizer, Sgd};
use lim::ssl::{SwavLoss, sinkhorn, sinkhorn_across};
use lim::{Gpu, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Cosine-like scores in [-1, 1], as SwAV's (unit embeddings against unit prototypes).
fn scores(rows: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * k)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

/// An uneven split: rank r of n holds r + 2 rows of every crop.
fn share(rank: usize) -> std::ops::Range<usize> {
    let start: usize = (0..rank).map(|r| r + 2).sum();
    start..start + rank + 2
}

fn whole(size: usize) -> usize {
    (0..size).map(|r| r + 2).sum()
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sinkhorn on the ranks' rows (of uneven counts) against Sinkhorn on all rows, for 3
/// iterations (SwAV's) and 0.
pub fn sinkhorn_on_shares(gpu: &Arc<Gpu>, comm: &dyn Collective) -> f32 {
    let k = 7;
    let rows = whole(comm.size());
    let all = scores(rows, k, 11);
    let mine = share(comm.rank());
    let local =
        Tensor::from_slice(gpu, &[mine.len(), k], &all[mine.start * k..mine.end * k]).unwrap();
    let all = Tensor::from_slice(gpu, &[rows, k], &all).unwrap();
    let mut worst = 0.0f32;
    for iterations in [3, 0] {
        let split = sinkhorn_across(&local, 0.05, iterations, comm)
            .unwrap()
            .to_vec()
            .unwrap();
        let one = sinkhorn(&all, 0.05, iterations).unwrap().to_vec().unwrap();
        worst = worst.max(largest_difference(
            &split,
            &one[mine.start * k..mine.end * k],
        ));
    }
    worst
}

/// A model without BatchNorm: Linear -> ReLU -> Linear -> L2 normalisation -> prototypes.
struct Tiny {
    first: Linear,
    last: Linear,
    prototypes: Var,
}

impl Tiny {
    /// Each rank starts from weights of its own, as if seeded apart; the broadcast from rank 0
    /// must make them alike.
    fn new(gpu: &Arc<Gpu>, rank: usize) -> Tiny {
        let mut src = Random::new(gpu, 5 + rank as u64);
        let prototypes = scores(5, 4, 3 + rank as u64);
        Tiny {
            first: Linear::new(&mut src, "0", 6, 12).unwrap(),
            last: Linear::new(&mut src, "1", 12, 4).unwrap(),
            prototypes: Var::param(Tensor::from_slice(gpu, &[5, 4], &prototypes).unwrap()),
        }
    }

    fn params(&self) -> Vec<Var> {
        let mut p = nn::parameters(&self.first);
        p.extend(nn::parameters(&self.last));
        p.push(self.prototypes.clone());
        p
    }

    fn scores(&self, x: &Var) -> Var {
        let hidden = self.first.forward(x).unwrap().relu().unwrap();
        let embeddings = self.last.forward(&hidden).unwrap().l2_normalize().unwrap();
        embeddings.linear(&self.prototypes, None).unwrap()
    }
}

/// Two SwAV steps (3 crops, codes from the first two, momentum SGD) of `model` on the rows
/// `rows` of every crop, its ranks' gradients summed; the parameters after them.
fn two_steps(
    gpu: &Arc<Gpu>,
    comm: &dyn Collective,
    rows: std::ops::Range<usize>,
    total: usize,
) -> Vec<f32> {
    let model = Tiny::new(gpu, comm.rank());
    let values: Vec<Tensor> = model.params().iter().map(|p| p.value().clone()).collect();
    dist::broadcast_tensors(&values, comm).unwrap();
    let mut optimizer = Sgd::new(model.params(), 0.5).momentum(0.9, false);
    let loss = SwavLoss::default();
    for step in 0..2u64 {
        let crops: Vec<f32> = (0..3)
            .flat_map(|c| {
                let all = scores(total, 6, 100 + 10 * step + c);
                all[rows.start * 6..rows.end * 6].to_vec()
            })
            .collect();
        let x = Var::constant(Tensor::from_slice(gpu, &[3 * rows.len(), 6], &crops).unwrap());
        optimizer.zero_grad();
        let out = loss
            .forward(&model.scores(&x), rows.len(), &[None, None], comm)
            .unwrap();
        out.loss.backward().unwrap();
        // Buckets of at most 40 floats: the prototypes with the last bias, then the last
        // weight (48) and the first bias alone, and the first weight (72).
        dist::sum_gradients(optimizer.params(), comm, 40).unwrap();
        optimizer.step().unwrap();
    }
    let params = model.params();
    let values: Vec<&Tensor> = params.iter().map(Var::value).collect();
    Tensor::to_vecs(&values).unwrap().concat()
}

/// The parameters after two data-parallel steps on the ranks' shares of each batch against
/// those after two steps of one process on the whole batches.
pub fn steps_on_shares(gpu: &Arc<Gpu>, comm: &dyn Collective) -> f32 {
    let total = whole(comm.size());
    let split = two_steps(gpu, comm, share(comm.rank()), total);
    let one = two_steps(gpu, &Solo, 0..total, total);
    largest_difference(&split, &one)
}
