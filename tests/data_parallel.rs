//! Data-parallel training on replicas that are threads of one process, each with a device of
//! its own on the same adapter (as `lim pretrain --devices 0,0`): the collectives, SwAV's
//! distributed Sinkhorn and a step split over replicas against one process on the whole
//! batch, and whole runs.

#[path = "data_parallel/checks.rs"]
mod checks;
mod common;

use std::sync::Arc;

use lim::Gpu;
use lim::dist::{Collective, Reduce, ThreadGroup};
use lim::gpu::{GpuOptions, Tuning};

/// Runs `f` on `n` replicas, each a thread with a device of its own; their results in rank
/// order.
fn on_replicas<T: Send>(n: usize, f: impl Fn(&Arc<Gpu>, &dyn Collective) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(n)
            .into_iter()
            .map(|rank| {
                let f = &f;
                scope.spawn(move || {
                    let mut opts = GpuOptions::from_env().unwrap();
                    opts.tuning = Tuning::Off;
                    let gpu = Gpu::new(&opts).expect("the GPU tests need a wgpu adapter");
                    let out = f(&gpu, &rank);
                    rank.finish();
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn collectives_reduce_in_rank_order_and_a_lost_replica_fails_the_others() {
    let out = on_replicas(3, |_, comm| {
        let r = comm.rank() as f32;
        let mut sum = [r, 10.0 * r];
        comm.all_reduce(&mut sum, Reduce::Sum).unwrap();
        let mut max = [r, -r];
        comm.all_reduce(&mut max, Reduce::Max).unwrap();
        let mut from_one = [r; 3];
        comm.broadcast(&mut from_one, 1).unwrap();
        (sum, max, from_one)
    });
    for (sum, max, from_one) in out {
        assert_eq!(sum, [3.0, 30.0]);
        assert_eq!(max, [2.0, 0.0]);
        assert_eq!(from_one, [1.0; 3]);
    }
    // Rank 1 stops without finishing; rank 0's next collective says so instead of waiting.
    let mut group = ThreadGroup::new(2).into_iter();
    let (zero, one) = (group.next().unwrap(), group.next().unwrap());
    let waiting = std::thread::spawn(move || zero.all_reduce(&mut [1.0], Reduce::Sum));
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(one);
    let err = waiting.join().unwrap().unwrap_err().to_string();
    assert!(err.contains("rank 1 of 2 stopped"), "{err}");
}

#[test]
fn sinkhorn_on_uneven_shares_equals_sinkhorn_on_the_whole_batch() {
    for worst in on_replicas(2, checks::sinkhorn_on_shares) {
        assert!(worst < 2e-6, "codes differ by {worst}");
    }
}

#[test]
fn two_replicas_with_shares_of_a_batch_take_the_steps_of_one_with_the_whole() {
    for worst in on_replicas(2, checks::steps_on_shares) {
        assert!(worst < 1e-5, "parameters differ by {worst}");
    }
}
