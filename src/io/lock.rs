//! One lim run per output folder at a time, and nothing left behind by a run that was killed:
//! a lock file holding the writer's process id, and the removal of the temporary files
//! (`<name>.lim-tmp<pid>`) of runs that no longer exist.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::IoError;

/// The lock file's name in an output folder (hidden, and passed over by slice listings).
pub const LOCK_FILE: &str = ".lim.lock";

/// What a temporary file's name has between the final name and the writer's process id.
pub const TEMPORARY: &str = ".lim-tmp";

/// Held while a run writes into a folder; removed when dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
}

/// Whether process `pid` exists (on Unix; elsewhere every process is taken to exist).
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        let found = unsafe { libc::kill(pid, 0) } == 0;
        let exists = found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        // A killed process whose parent has not reaped it (an MPI rank after `mpirun` ended,
        // in a container whose init reaps nothing) exists as a zombie, and writes nothing.
        exists && !zombie(pid)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Whether Linux lists process `pid` as a zombie (state `Z` in `/proc/PID/stat`).
#[cfg(unix)]
fn zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

impl OutputLock {
    /// Locks `dir` (which exists) for this process, then removes what killed runs left. A
    /// lock held by a live process is an error naming it; one left by a dead process is taken.
    pub fn acquire(dir: &Path) -> Result<OutputLock, IoError> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id()).map_err(|e| IoError::io(&path, e))?;
                    remove_leftovers(dir)?;
                    return Ok(OutputLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if alive(pid) => {
                            return Err(IoError::invalid(
                                dir,
                                format!(
                                    "another lim run (process {pid}) is writing here; wait for \
                                     it to end, or remove {} if none is",
                                    path.display()
                                ),
                            ));
                        }
                        // A killed run's lock (or one being written this instant): take it.
                        _ => std::fs::remove_file(&path).map_err(|e| IoError::io(&path, e))?,
                    }
                }
                Err(e) => return Err(IoError::io(&path, e)),
            }
        }
        Err(IoError::invalid(
            dir,
            "another lim run took the output folder's lock at the same moment",
        ))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the temporary files (`<name>.lim-tmp<pid>`) under `dir` whose process is gone.
fn remove_leftovers(dir: &Path) -> Result<(), IoError> {
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy();
        let Some((_, pid)) = name.rsplit_once(TEMPORARY) else {
            continue;
        };
        let gone = matches!(pid.parse::<u32>(), Ok(pid) if !alive(pid));
        if !gone || !entry.file_type().is_file() {
            continue;
        }
        std::fs::remove_file(entry.path()).map_err(|e| IoError::io(entry.path(), e))?;
    }
    Ok(())
}
