//! The `lim` command line.

mod cli;

fn main() -> std::process::ExitCode {
    keep_large_allocations();
    cli::main()
}

/// Volumes and slices are large, short-lived buffers. glibc maps each one fresh from the
/// kernel and unmaps it on free, so every use faults its pages in again (a third of the time
/// of preprocessing DICOM); keep them on the heap instead.
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
