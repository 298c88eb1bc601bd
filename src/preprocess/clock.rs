//! Where preprocessing's time goes, stage by stage, for `lim bench preprocess` and
//! `lim bench pipeline`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The stages a slice goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A volume's files read into memory.
    Read,
    /// Parsed and decoded into a volume (inflating, DICOM decoding), reading them again from
    /// the page cache.
    Decode,
    /// Each slice's grey levels computed.
    Slice,
    /// Slices hashed and the kept ones chosen (`--from-volumes`).
    Hash,
    /// PNG encoding.
    Encode,
    /// PNG files written and renamed into place.
    Write,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Read,
        Stage::Decode,
        Stage::Slice,
        Stage::Hash,
        Stage::Encode,
        Stage::Write,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Slice => "slice",
            Stage::Hash => "hash + select",
            Stage::Encode => "encode",
            Stage::Write => "write",
        }
    }
}

/// Core time per stage, summed over threads. Off unless made with [`StageClock::on`]: then
/// each volume's files are also read once on their own before they are decoded, so that
/// reading and decoding are told apart (work a plain run does not do). A stage that runs in
/// parallel inside (hashing a volume's slices) counts its wall time: run on one thread to
/// read every stage as core time.
#[derive(Debug, Default)]
pub struct StageClock {
    on: bool,
    nanos: [AtomicU64; Stage::ALL.len()],
}

impl StageClock {
    pub fn on() -> StageClock {
        StageClock {
            on: true,
            ..StageClock::default()
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Runs `work`, adding its time to `stage` when the clock is on.
    pub fn time<T>(&self, stage: Stage, work: impl FnOnce() -> T) -> T {
        if !self.on {
            return work();
        }
        let start = Instant::now();
        let out = work();
        let nanos = start.elapsed().as_nanos() as u64;
        self.nanos[stage as usize].fetch_add(nanos, Ordering::Relaxed);
        out
    }

    /// Core seconds spent in `stage` so far.
    pub fn seconds(&self, stage: Stage) -> f64 {
        self.nanos[stage as usize].load(Ordering::Relaxed) as f64 * 1e-9
    }
}
