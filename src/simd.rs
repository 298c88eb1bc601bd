//! Runtime dispatch to wider vector code for the per-pixel loops.

/// Evaluates `$body` (an inlined call) compiled for AVX2 and BMI2 where the CPU has them
/// (every x86 CPU with AVX2 but a few VIA ones): the per-pixel loops then vectorise twice as
/// wide, and bit packing shifts by a register without tying up `cl`. Same operations in the
/// same order: same results.
macro_rules! with_avx2 {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,bmi2")]
            fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi2")
            {
                // SAFETY: the CPU has AVX2 and BMI2, checked just above.
                return unsafe { wide(|| $body) };
            }
        }
        $body
    }};
}

pub(crate) use with_avx2;
