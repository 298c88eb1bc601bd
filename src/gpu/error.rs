//! Typed GPU errors. Each message says what went wrong and what the user can do about it.

use thiserror::Error;

/// What `make test` and the README ask a user without a GPU to install.
pub const LAVAPIPE_HINT: &str = "on Debian or Ubuntu without a GPU, install Mesa's software Vulkan driver: \
     `apt-get install -y mesa-vulkan-drivers libvulkan1` (`make test` does this when run as root)";

#[derive(Debug, Error)]
pub enum GpuError {
    #[error("{}", no_adapter_message(wanted.as_deref(), available))]
    NoAdapter {
        wanted: Option<String>,
        available: Vec<String>,
    },

    #[error("unknown backend `{0}`: choose one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),

    #[error("unknown tuning `{0}`: choose one of disk, memory, off")]
    UnknownTuning(String),

    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error(
        "the GPU device was lost ({reason}); restart the program, and if it recurs, \
             pick another adapter with --adapter or lower the batch size"
    )]
    DeviceLost { reason: String },

    #[error(
        "out of GPU memory in {what}{}; use smaller batches or free tensors you no longer need",
        bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default()
    )]
    OutOfMemory { what: String, bytes: Option<u64> },

    #[error(
        "{what} needs {requested} but adapter `{adapter}` allows at most {allowed} ({limit}); \
             split the work into smaller pieces or use an adapter with a larger limit"
    )]
    LimitExceeded {
        what: String,
        limit: &'static str,
        requested: u64,
        allowed: u64,
        adapter: String,
    },

    #[error(
        "{what} needs the wgpu feature {feature}, which adapter `{adapter}` does not offer; \
             `lim info` lists each adapter's features"
    )]
    MissingFeature {
        what: String,
        feature: &'static str,
        adapter: String,
    },

    #[error("shader {shader} failed to compile on adapter `{adapter}`: {message}")]
    Shader {
        shader: String,
        adapter: String,
        message: String,
    },

    #[error("wgpu rejected an operation (a bug in lim, please report it): {0}")]
    Validation(String),

    #[error("reading GPU memory back failed: {0}")]
    Readback(String),
}

fn no_adapter_message(wanted: Option<&str>, available: &[String]) -> String {
    let what = match wanted {
        Some(w) => format!("no GPU adapter matches {w}"),
        None => "no usable GPU adapter".to_string(),
    };
    if available.is_empty() {
        format!("{what}: wgpu sees none; {LAVAPIPE_HINT}")
    } else {
        format!(
            "{what}; wgpu sees: {}. Pick one with --adapter <name substring> (LIM_ADAPTER) \
             or --backend vulkan|metal|dx12|gl (LIM_BACKEND)",
            available.join("; ")
        )
    }
}
