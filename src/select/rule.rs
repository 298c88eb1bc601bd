//! The selection rules themselves, with no I/O: given one group's slices in order (and their
//! hashes or features), which are kept. The paper's rule is the greedy leader rule on dHash
//! distances; the others are the comparisons it made.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::similarity;
use crate::hash::Hash;
use crate::hash::{HashKind, Luma8};

/// How slices are judged alike.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Perceptual hashes within `threshold` bits of the exemplar's (the paper: dHash, 6).
    Hash { kind: HashKind, threshold: u32 },
    /// Keep every n-th slice.
    EveryN(usize),
    /// Keep a random `fraction` of each volume's slices.
    Random { fraction: f64, seed: u64 },
    /// SSIM to the exemplar at least `threshold`.
    Ssim { threshold: f64 },
    /// Normalised mutual information with the exemplar at least `threshold`.
    Mi { threshold: f64 },
    /// Cosine similarity of encoder features with the exemplar's at least `threshold` (the
    /// paper's "DeepNet" strategy).
    Embedding {
        threshold: f64,
        embedder: SharedEmbedder,
    },
}

/// Features of images from a network, for [`Strategy::Embedding`]; `lim::eval::encoder`
/// has one on a ResNet. Its errors are the device's, never an image's.
pub trait Embedder: Send + Sync {
    /// One feature vector per image, in order.
    fn embed(&self, images: &[&Luma8]) -> crate::Result<Vec<Vec<f32>>>;
}

/// An [`Embedder`] shared by the strategies that use it; equal only to itself.
#[derive(Clone)]
pub struct SharedEmbedder(pub std::sync::Arc<dyn Embedder>);

impl std::fmt::Debug for SharedEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEmbedder")
    }
}

impl PartialEq for SharedEmbedder {
    fn eq(&self, other: &SharedEmbedder) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The cosine similarity of two vectors (0 where one is zero).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// One decision: kept, or dropped (for an exemplar at some distance or similarity).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub kept: bool,
    /// The index of the kept slice this one was dropped for.
    pub exemplar: Option<usize>,
    /// Hamming distance to the exemplar (hashes).
    pub distance: Option<u32>,
    /// SSIM, NMI or the features' cosine similarity with the exemplar.
    pub similarity: Option<f64>,
}

const KEPT: Decision = Decision {
    kept: true,
    exemplar: None,
    distance: None,
    similarity: None,
};

fn dropped_for(exemplar: usize) -> Decision {
    Decision {
        kept: false,
        exemplar: Some(exemplar),
        ..KEPT
    }
}

/// The exemplar rule on hashes within `threshold` bits, as [`leader`] decides it, one slice at
/// a time: a slice is dropped for the earliest exemplar within the threshold, and is one itself
/// if none is. The exemplars near a slice are found through an index, not by measuring every
/// one (which grows with the square of an archive, `--scope global`): two hashes within
/// `threshold` bits agree on at least one of `threshold + 1` bands of their bits (there are
/// more bands than differing bits), so only exemplars sharing a band are measured.
fn hash_leader(hashes: &[Hash], threshold: u32) -> Vec<Decision> {
    let bits = hashes.first().map_or(0, Hash::len);
    // More bands than bits leaves one empty, which every pair shares: still exact.
    let bands = (threshold as usize + 1).min(bits + 1);
    let bounds: Vec<(usize, usize)> = (0..bands)
        .map(|b| (b * bits / bands, (b + 1) * bits / bands))
        .collect();
    let mut index: Vec<HashMap<u64, Vec<usize>>> = vec![HashMap::new(); bands];
    let mut decisions = Vec::with_capacity(hashes.len());
    for (i, hash) in hashes.iter().enumerate() {
        let keys: Vec<u64> = bounds
            .iter()
            .map(|&(lo, hi)| band_key(hash, lo..hi))
            .collect();
        // Each band's exemplars are in slice order: its first one within the threshold.
        let exemplar = keys
            .iter()
            .zip(&index)
            .filter_map(|(key, exemplars)| {
                exemplars
                    .get(key)?
                    .iter()
                    .copied()
                    .find(|&e| hashes[e].hamming(hash) <= threshold)
            })
            .min();
        decisions.push(match exemplar {
            Some(e) => Decision {
                distance: Some(hashes[e].hamming(hash)),
                ..dropped_for(e)
            },
            None => {
                for (key, exemplars) in keys.into_iter().zip(&mut index) {
                    exemplars.entry(key).or_default().push(i);
                }
                KEPT
            }
        });
    }
    decisions
}

/// A fingerprint of a hash's `bits` (FNV-1a over them): equal bits give equal keys; the rare
/// unequal bits with an equal key only cost a measurement.
fn band_key(hash: &Hash, bits: std::ops::Range<usize>) -> u64 {
    bits.fold(0xcbf2_9ce4_8422_2325, |key, i| {
        (key ^ hash.bit(i) as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The exemplar rule: the first remaining slice is kept, and every remaining slice `alike`
/// it is dropped for it; repeat until none remain. `alike(exemplar, other)` gives whether
/// they are alike and the decision to record if so.
fn leader(n: usize, alike: impl Fn(usize, usize) -> Option<Decision> + Sync) -> Vec<Decision> {
    let mut decisions = vec![KEPT; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    while let Some(&exemplar) = remaining.first() {
        let verdicts: Vec<Option<Decision>> = remaining[1..]
            .par_iter()
            .map(|&i| alike(exemplar, i))
            .collect();
        let mut next = Vec::with_capacity(remaining.len());
        for (&i, verdict) in remaining[1..].iter().zip(verdicts) {
            match verdict {
                Some(d) => decisions[i] = d,
                None => next.push(i),
            }
        }
        remaining = next;
    }
    decisions
}

/// Decides for one group of `n` slices (in order) what `strategy` keeps. `hashes` must be
/// given for [`Strategy::Hash`], `features` for [`Strategy::Embedding`] and `images` for
/// [`Strategy::Ssim`] and [`Strategy::Mi`], one per slice; `group` names the group (it seeds
/// [`Strategy::Random`]).
pub fn decide(
    strategy: &Strategy,
    n: usize,
    images: &[&Luma8],
    hashes: Option<&[Hash]>,
    features: Option<&[Vec<f32>]>,
    group: &str,
) -> Vec<Decision> {
    match strategy {
        Strategy::Hash { threshold, .. } => {
            hash_leader(&hashes.expect("hashed before deciding")[..n], *threshold)
        }
        Strategy::Ssim { threshold } | Strategy::Mi { threshold } => {
            let thumbs: Vec<Luma8> = images
                .par_iter()
                .map(|i| similarity::thumbnail(i))
                .collect();
            let measure = if matches!(strategy, Strategy::Ssim { .. }) {
                similarity::ssim
            } else {
                similarity::nmi
            };
            leader(n, |e, i| {
                let s = measure(&thumbs[e], &thumbs[i]);
                (s >= *threshold).then_some(Decision {
                    similarity: Some(s),
                    ..dropped_for(e)
                })
            })
        }
        Strategy::Embedding { threshold, .. } => {
            let features = features.expect("embedded before deciding");
            leader(n, |e, i| {
                let s = cosine(&features[e], &features[i]);
                (s >= *threshold).then_some(Decision {
                    similarity: Some(s),
                    ..dropped_for(e)
                })
            })
        }
        Strategy::EveryN(step) => (0..n)
            .map(|i| {
                if i % step == 0 {
                    KEPT
                } else {
                    dropped_for(i - i % step)
                }
            })
            .collect(),
        Strategy::Random { fraction, seed } => {
            // Seeded by the group's name, so a volume draws the same slices however it is reached.
            let name = crate::io::names::fnv1a(group.as_bytes());
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed ^ name));
            let keep = (fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
            let mut decisions = vec![KEPT; n];
            for &i in &order[keep..] {
                decisions[i] = Decision {
                    kept: false,
                    ..KEPT
                };
            }
            decisions
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Hashes in clusters (a few bits flipped from a handful of centres), so that every
    /// distance from 0 to far apart occurs.
    fn clustered(n: usize, bits: usize, seed: u64) -> Vec<Hash> {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<Vec<bool>> = (0..5)
            .map(|_| (0..bits).map(|_| rng.random_range(0..2) == 1).collect())
            .collect();
        (0..n)
            .map(|_| {
                let mut h = centres[rng.random_range(0..centres.len())].clone();
                for _ in 0..rng.random_range(0..bits / 4 + 1) {
                    let b = rng.random_range(0..bits);
                    h[b] = !h[b];
                }
                Hash::from_bits(h)
            })
            .collect()
    }

    #[test]
    fn the_banded_index_decides_as_measuring_every_exemplar() {
        for (n, bits, seed) in [
            (300, 64, 1),
            (200, 16, 2),
            (150, 256, 3),
            (1, 64, 4),
            (0, 64, 5),
        ] {
            let hashes = clustered(n, bits, seed);
            for threshold in [0, 1, 6, 12, 15, 16, 40, 300] {
                let measured = leader(n, |e, i| {
                    let d = hashes[e].hamming(&hashes[i]);
                    (d <= threshold).then_some(Decision {
                        distance: Some(d),
                        ..dropped_for(e)
                    })
                });
                assert_eq!(
                    hash_leader(&hashes, threshold),
                    measured,
                    "{n} hashes of {bits} bits, threshold {threshold}"
                );
            }
        }
    }
}
