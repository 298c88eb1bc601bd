//! Batches of decoded slices in a seeded, shuffled order, decoded on a pool of threads ahead
//! of the consumer, as PyTorch's `DataLoader(shuffle=True, drop_last=True, num_workers=N)`.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::GreyImage;
use crate::io::IoError;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub batch: usize,
    pub seed: u64,
    /// Decoding threads.
    pub workers: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Data-parallel: this replica decodes only its share of every batch, `part` of `parts`
    /// (an even split, [`crate::dist::split`]); `(0, 1)` is the whole batch.
    pub part: (usize, usize),
}

/// One batch: the images of slices `epoch`'s permutation puts at `index * batch ..` (this
/// replica's share of them).
pub struct Batch {
    pub epoch: usize,
    /// The batch's place in its epoch.
    pub index: usize,
    pub images: Vec<GreyImage>,
    /// Files of the batch that could not be decoded; the batch is short by as many.
    pub failed: Vec<IoError>,
    /// How long [`Loader::next_batch`] waited for this batch.
    pub wait: Duration,
}

/// The order of the slices in an epoch: a permutation drawn from the seed and the epoch alone,
/// so that a run resumed at any batch sees the same order.
pub fn epoch_order(files: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..files).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

pub struct Loader {
    receiver: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    batches_per_epoch: usize,
}

impl Loader {
    /// Starts decoding at batch `index` of `epoch`. Every batch is full (the last partial
    /// batch of an epoch is dropped), so `files` must hold at least one batch.
    pub fn new(
        files: Vec<PathBuf>,
        opts: &LoaderOptions,
        epoch: usize,
        index: usize,
    ) -> Result<Loader, String> {
        let batches_per_epoch = files.len() / opts.batch.max(1);
        if opts.batch == 0 || batches_per_epoch == 0 {
            return Err(format!(
                "{} slices do not make one batch of {}",
                files.len(),
                opts.batch
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.workers.max(1))
            .thread_name(|i| format!("lim-decode-{i}"))
            .build()
            .map_err(|e| format!("cannot start the decoding threads: {e}"))?;
        let (sender, receiver) = sync_channel(opts.prefetch.max(1));
        let opts = opts.clone();
        let worker = std::thread::Builder::new()
            .name("lim-loader".into())
            .spawn(move || produce(&files, &opts, &pool, epoch, index, sender))
            .map_err(|e| format!("cannot start the loader: {e}"))?;
        Ok(Loader {
            receiver: Some(receiver),
            worker: Some(worker),
            batches_per_epoch,
        })
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// The next batch, waiting for it if it is not decoded yet.
    pub fn next_batch(&mut self) -> Batch {
        let start = Instant::now();
        let mut batch = self
            .receiver
            .as_ref()
            .expect("open until dropped")
            .recv()
            .expect("the loader thread runs until the loader is dropped");
        batch.wait = start.elapsed();
        batch
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel ends the producer at its next batch.
        self.receiver = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn produce(
    files: &[PathBuf],
    opts: &LoaderOptions,
    pool: &rayon::ThreadPool,
    mut epoch: usize,
    mut index: usize,
    sender: SyncSender<Batch>,
) {
    let per_epoch = files.len() / opts.batch;
    loop {
        let order = epoch_order(files.len(), opts.seed, epoch);
        while index < per_epoch {
            let members = &order[index * opts.batch..(index + 1) * opts.batch];
            let members = &members[crate::dist::split(members.len(), opts.part.0, opts.part.1)];
            let decoded: Vec<Result<GreyImage, IoError>> = pool.install(|| {
                members
                    .par_iter()
                    .map(|&i| GreyImage::open(&files[i]))
                    .collect()
            });
            let (mut images, mut failed) = (Vec::new(), Vec::new());
            for result in decoded {
                match result {
                    Ok(image) => images.push(image),
                    Err(e) => failed.push(e),
                }
            }
            let batch = Batch {
                epoch,
                index,
                images,
                failed,
                wait: Duration::ZERO,
            };
            if sender.send(batch).is_err() {
                return;
            }
            index += 1;
        }
        epoch += 1;
        index = 0;
    }
}
