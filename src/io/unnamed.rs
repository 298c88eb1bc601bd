//! New files written unnamed and linked into place (Linux's `O_TMPFILE`).
//!
//! Creating a file by name locks its folder while the file system allocates the inode; on ext4
//! without a journal, soon after many files were deleted, that takes up to a millisecond, and
//! threads writing slices into one folder then take turns. An unnamed file is allocated with
//! the folder unlocked, and only the link takes the lock. Like a temporary renamed into place,
//! no reader sees half a file, and a killed run leaves nothing behind.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::IoError;

/// Writes `bytes` to `path` if it does not exist; `Ok(false)`, having written nothing under
/// any name, where it exists or the file system or the kernel has no unnamed files (the
/// caller then writes it another way).
pub fn write(path: &Path, bytes: &[u8]) -> Result<bool, IoError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(target) = CString::new(path.as_os_str().as_bytes()) else {
        return Ok(false);
    };
    let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o666)
        .open(folder)
    else {
        return Ok(false);
    };
    file.write_all(bytes).map_err(|e| IoError::io(path, e))?;
    let link =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            link.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    Ok(linked == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_linked_into_place_and_an_existing_one_left_to_the_caller() {
        let dir = std::env::temp_dir().join(format!("lim-unnamed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("slice.png");
        assert!(write(&path, b"first").unwrap(), "linked in unnamed");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(
            !write(&path, b"second").unwrap(),
            "an existing file is not replaced"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(!write(&dir.join("no-folder/slice.png"), b"x").unwrap());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["slice.png"], "nothing else left in the folder");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
