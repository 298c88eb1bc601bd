//! Runtime dispatch to wider vector code for the per-pixel loops.

/// Evaluates `$body` (an inlined call) compiled for AVX2 where the CPU has it: the per-pixel
/// loops then vectorise twice as wide. Same operations in the same order: same results.
macro_rules! with_avx2 {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { wide(|| $body) };
            }
        }
        $body
    }};
}

pub(crate) use with_avx2;
