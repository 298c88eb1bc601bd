//! Slice selection (the paper's "reduction", `lim reduce`): per volume, drop the slices too
//! like one already kept. The paper's method is `Strategy::Hash` with dHash and threshold 6:
//! take the first remaining slice (in byte-wise path order), keep it, drop every remaining
//! slice within Hamming distance 6 of it, repeat. The other strategies are the comparisons
//! the paper made; similarity of learnt embeddings joins them with the ResNet.
//!
//! - [`rule`]: the rules, pure functions of a group's slices (no I/O);
//! - [`collect`]: which slices a folder holds and their volumes;
//! - [`run`]: a run on files (and on volumes in memory), its outputs and reports;
//! - [`shard`]: a run in parts, and the parts merged.

pub mod collect;
pub mod rule;
pub mod run;
pub mod shard;
pub mod sheet;
pub mod similarity;

pub use collect::{Scope, VolumePattern, collect};
pub use rule::{Decision, Embedder, SharedEmbedder, Strategy, decide};
pub use run::{Hashing, Options, Record, Report, run, run_from_volumes};
pub use shard::{Shard, merge};
