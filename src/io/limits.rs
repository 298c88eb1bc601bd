//! How much a file's header may claim before lim refuses it unread. A header is the file's
//! own word on its size; a broken or hostile one could claim a terabyte, so every reader
//! checks the claim here before it allocates, and reads or inflates no more than the claim.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;

/// The default limit on voxels in one volume (or pixels in one image): 2^30, a 1024³
/// volume, 2 GiB of 16-bit samples. The largest CT series (512 × 512 × 3000) fit under it.
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 30;

static MAX_VOXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_VOXELS);

/// Sets the limit for this process (the CLI's `--max-voxels`).
pub fn set_max_voxels(voxels: u64) {
    MAX_VOXELS.store(voxels.max(1), Ordering::Relaxed);
}

/// The limit on voxels in one volume or pixels in one image.
pub fn max_voxels() -> u64 {
    MAX_VOXELS.load(Ordering::Relaxed)
}

/// The product of `dims`, or an error naming the file, what it claims and the limit when
/// the product overflows or passes [`max_voxels`].
pub fn check_voxels(path: &Path, what: &str, dims: &[u64]) -> Result<usize, IoError> {
    let limit = max_voxels();
    let count = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= limit);
    count.map(|n| n as usize).ok_or_else(|| {
        let claimed = dims
            .iter()
            .try_fold(1u128, |n, &d| n.checked_mul(d as u128))
            .map_or_else(|| "over 2^128".to_string(), |n| n.to_string());
        IoError::invalid(
            path,
            format!(
                "{what} {dims:?} claim {claimed} voxels, past the limit of {limit} \
                 (raise it with --max-voxels or LIM_MAX_VOXELS if the file is real)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_past_the_limit_or_past_u64_is_refused_with_both_numbers() {
        let path = Path::new("big.nii");
        assert_eq!(
            check_voxels(path, "dims", &[512, 512, 300]).unwrap(),
            78_643_200
        );
        let e = check_voxels(path, "dims", &[30000, 30000, 30000]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("big.nii: dims [30000, 30000, 30000] claim 27000000000000 voxels")
        );
        assert!(
            text.contains(&format!("limit of {DEFAULT_MAX_VOXELS}")),
            "{text}"
        );
        let e = check_voxels(path, "sizes", &[u64::MAX, 3]).unwrap_err();
        assert!(
            e.to_string().contains("claim 55340232221128654845 voxels"),
            "{e}"
        );
        let e = check_voxels(path, "sizes", &[u64::MAX, u64::MAX, 3]).unwrap_err();
        assert!(e.to_string().contains("claim over 2^128 voxels"), "{e}");
    }
}
