//! The `lim` command line.

mod cli;

fn main() -> std::process::ExitCode {
    keep_large_allocations();
    cli::main()
}

/// Volumes and slices are large, short-lived buffers. glibc maps each one fresh from the
/// kernel and unmaps it on free, so every use faults its pages in again (a third of the time
/// of preprocessing DICOM); keep them on the heap instead, and in one arena: a worker thread's
/// own arena cannot grow past 64 MB, so a volume's buffers there were mapped fresh all the
/// same (three times the page faults on two threads). Small blocks still come from each
/// thread's cache.
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
