//! Reading medical volumes (NIfTI, DICOM series, NRRD) and writing PNG slices.

mod deflate;
pub mod dicom;
mod dicom_codestream;
mod dicom_lengths;
pub mod jsonl;
pub mod limits;
pub mod lock;
pub mod names;
pub mod nifti;
pub mod npy;
pub mod nrrd;
pub mod pickle;
pub mod png;
pub mod torch;
#[cfg(target_os = "linux")]
mod unnamed;
pub mod volume;

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use volume::{Format, Rescale, Samples, Volume};

/// A file lim could not use, and why. Every message names the file.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: unsupported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: not an image ({what}); skipped", path.display())]
    NotAnImage { path: PathBuf, what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IoError {
    pub fn invalid(path: &Path, reason: impl Into<String>) -> IoError {
        IoError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn unsupported(path: &Path, what: impl Into<String>) -> IoError {
        IoError::Unsupported {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> IoError {
        IoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A write that failed because the disk (or the user's quota, or the file size limit) is
    /// full: the run's fault, not the input's, so runs stop on it.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, IoError::Io { source, .. } if disk_full(source))
    }

    /// Objects that are not images are skipped rather than failed.
    pub fn is_skip(&self) -> bool {
        matches!(self, IoError::NotAnImage { .. })
    }

    /// The file it is about.
    pub fn path(&self) -> &Path {
        match self {
            IoError::Invalid { path, .. }
            | IoError::Unsupported { path, .. }
            | IoError::NotAnImage { path, .. }
            | IoError::Io { path, .. } => path,
        }
    }
}

/// Whether `e` is (or is caused by) a full disk, quota or file size limit.
pub fn disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::FileTooLarge
            )
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An input a command could not use: one line of `failures.jsonl`, in the same form for every
/// command that writes one (`preprocess`, `reduce`, `embed`, `pretrain`; `evaluate`'s report
/// lists them under `unreadable`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub input: PathBuf,
    /// The message, which names the input.
    pub error: String,
    /// Not an image (an RT plan, a report...): passed over rather than failed.
    pub skipped: bool,
}

impl From<&IoError> for Failure {
    fn from(e: &IoError) -> Failure {
        Failure {
            input: e.path().to_path_buf(),
            error: e.to_string(),
            skipped: e.is_skip(),
        }
    }
}

impl From<IoError> for Failure {
    fn from(e: IoError) -> Failure {
        Failure::from(&e)
    }
}

/// The name `path` is written under before it is renamed into place, so that a reader never
/// sees half a file: `<name>.lim-tmp<pid>` beside it (a name distinct enough that a rerun can
/// remove what a killed run left, see [`lock`], and touch no file of the user's).
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{}{}", lock::TEMPORARY, std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` through `write`, which creates the file it is given (`path`'s
/// [`temporary`] name): renamed into place when `write` succeeds, removed when it fails. A
/// reader never sees half a file, and a failure leaves nothing behind. Every file lim writes
/// whole goes through here; logs are appended line by line ([`jsonl::Log`]).
pub(crate) fn atomically<E: From<IoError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temporary(path);
    let result = write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| E::from(IoError::io(path, e))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` [`atomically`]; on Linux a new file is written unnamed and linked
/// into place ([`unnamed`]), so that threads writing into one folder do not wait on its lock.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    #[cfg(target_os = "linux")]
    if unnamed::write(path, bytes)? {
        return Ok(());
    }
    atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| IoError::io(tmp, e))
    })
}

/// Copies `from` to `to` [`atomically`].
pub(crate) fn copy_atomic(from: &Path, to: &Path) -> Result<(), IoError> {
    atomically(to, |tmp| {
        std::fs::copy(from, tmp)
            .map(drop)
            .map_err(|e| IoError::io(tmp, e))
    })
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, IoError> {
    require_regular(path)?;
    std::fs::read(path).map_err(|e| IoError::io(path, e))
}

/// Refuses what is not a regular file before anything opens it: reading a FIFO waits for a
/// writer that may never come, and a device node may never end.
pub fn require_regular(path: &Path) -> Result<(), IoError> {
    let meta = std::fs::metadata(path).map_err(|e| IoError::io(path, e))?;
    match (meta.is_file(), meta.is_dir()) {
        (true, _) => Ok(()),
        (false, true) => Err(IoError::invalid(path, "a folder, not a file")),
        (false, false) => Err(IoError::invalid(
            path,
            "not a regular file (a FIFO, socket or device node)",
        )),
    }
}

/// Which bytes of a file are its samples, and of what type: what [`read_bounded`]'s plan
/// answers.
pub(crate) struct Plan {
    pub range: std::ops::Range<u64>,
    pub ty: volume::SampleType,
    pub big_endian: bool,
}

/// The data of a file read by [`read_bounded`].
pub(crate) enum Bounded {
    /// The planned bytes from `skip` on: fewer when the file ends first.
    Bytes { bytes: Vec<u8>, skip: usize },
    /// The samples themselves, read or inflated straight into their own vector.
    Samples(Samples),
}

impl Bounded {
    /// The `count` samples of `ty` the data hold, or how many bytes were missing.
    pub fn into_samples(
        self,
        ty: volume::SampleType,
        count: usize,
        big_endian: bool,
    ) -> Result<Samples, String> {
        match self {
            Bounded::Bytes { bytes, skip } => {
                Samples::decode(ty, &bytes[skip..], count, big_endian)
            }
            Bounded::Samples(samples) => Ok(samples),
        }
    }
}

/// A plain or gzip file read in two steps, so that its header bounds what is read: `plan`
/// sees the first `head` bytes (all of them, in a shorter file) and answers which bytes the
/// samples are. Nothing past their end is read or inflated, and nothing is allocated ahead of
/// what arrives (or of what a plain file's length says it holds), so a header that claims
/// more than the file holds costs no memory: the data come back short, for the caller to name
/// the truncation.
pub(crate) fn read_bounded(
    path: &Path,
    head: usize,
    plan: impl FnOnce(&[u8]) -> Result<Plan, IoError>,
) -> Result<Bounded, IoError> {
    require_regular(path)?;
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut file = std::io::BufReader::new(file);
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| IoError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    if !gzip {
        let length = file
            .get_ref()
            .metadata()
            .map_err(|e| IoError::io(path, e))?
            .len();
        let head = read_up_to(path, &mut file, head as u64)?;
        let plan = plan(&head)?;
        if let Some(samples) = read_samples(path, &mut file, &head, &plan, length)? {
            return Ok(Bounded::Samples(samples));
        }
        let bytes = read_range(path, file, &head, plan.range)?;
        return Ok(Bounded::Bytes { bytes, skip: 0 });
    }
    let mut compressed = Vec::new();
    file.read_to_end(&mut compressed)
        .map_err(|e| IoError::io(path, e))?;
    let mut inflater = flate2::read::MultiGzDecoder::new(&compressed[..]);
    let head = read_up_to(path, &mut inflater, head as u64)?;
    let plan = plan(&head)?;
    if let Some(whole) = inflate_whole(&compressed, &plan) {
        return Ok(whole);
    }
    let range = plan.range;
    let bytes = read_range(path, &mut inflater, &head, range.clone())?;
    if bytes.len() as u64 == range.end.saturating_sub(range.start) {
        refuse_more(path, inflater, range.end)?;
    }
    Ok(Bounded::Bytes { bytes, skip: 0 })
}

/// The gzip stream `compressed` inflated to at most `claimed` bytes (fewer when it ends
/// first); one that inflates past them is refused as [`refuse_more`] says.
pub(crate) fn inflate_at_most(
    path: &Path,
    compressed: &[u8],
    claimed: u64,
) -> Result<Vec<u8>, IoError> {
    let mut inflater = flate2::read::MultiGzDecoder::new(compressed);
    let data = read_up_to(path, &mut inflater, claimed)?;
    refuse_more(path, inflater, claimed)?;
    Ok(data)
}

/// An error when `inflater` holds more than the `claimed` bytes it was read to: a small gzip
/// stream that inflates past what its header describes is a decompression bomb, refused
/// after one more byte rather than inflated.
fn refuse_more(path: &Path, mut inflater: impl Read, claimed: u64) -> Result<(), IoError> {
    let mut byte = [0u8];
    match inflater.read(&mut byte) {
        Ok(0) => Ok(()),
        Ok(_) => Err(IoError::invalid(
            path,
            format!(
                "the gzip data inflate past the {claimed} bytes the header describes (a decompression bomb?)"
            ),
        )),
        Err(e) => Err(read_error(path, e)),
    }
}

/// Up to `limit` bytes of `reader`, fewer when it ends first.
fn read_up_to(path: &Path, reader: &mut impl Read, limit: u64) -> Result<Vec<u8>, IoError> {
    let mut out = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| read_error(path, e))?;
    Ok(out)
}

/// The part of `range` that `head` (a stream's first bytes) holds, with `rest` (the stream
/// after them) moved on to where `range` starts, when that is past `head`.
fn head_part<'h>(
    path: &Path,
    rest: &mut impl Read,
    head: &'h [u8],
    range: &std::ops::Range<u64>,
) -> Result<&'h [u8], IoError> {
    let at = head.len() as u64;
    if range.start > at {
        std::io::copy(&mut rest.take(range.start - at), &mut std::io::sink())
            .map_err(|e| read_error(path, e))?;
    }
    Ok(&head[(range.start.min(at) as usize)..(range.end.min(at) as usize)])
}

/// The bytes `range` of a stream whose first `head.len()` bytes were `head` and the rest
/// `rest`; shorter when the stream ends first.
fn read_range(
    path: &Path,
    mut rest: impl Read,
    head: &[u8],
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, IoError> {
    let mut out = head_part(path, &mut rest, head, &range)?.to_vec();
    let wanted = range.end.saturating_sub(range.start.max(head.len() as u64));
    rest.take(wanted)
        .read_to_end(&mut out)
        .map_err(|e| read_error(path, e))?;
    Ok(out)
}

/// The planned samples of a plain file of `length` bytes, read straight into their own
/// vector where the file holds all of them (so that its length bounds what is allocated) in
/// the machine's byte order; None otherwise, with nothing read past `head`, whose first
/// `head.len()` bytes of the file `rest` has already given.
fn read_samples(
    path: &Path,
    mut rest: impl Read,
    head: &[u8],
    plan: &Plan,
    length: u64,
) -> Result<Option<Samples>, IoError> {
    let Plan {
        range,
        ty,
        big_endian,
    } = plan;
    let sample = ty.size() as u64;
    let bytes = range.end.saturating_sub(range.start);
    let native = *big_endian == cfg!(target_endian = "big");
    let Ok(count) = usize::try_from(bytes / sample) else {
        return Ok(None);
    };
    if !native || length < range.end || bytes % sample != 0 {
        return Ok(None);
    }
    let mut samples = Samples::zeroed(*ty, count);
    let out = samples.bytes_mut();
    let from_head = head_part(path, &mut rest, head, range)?;
    out[..from_head.len()].copy_from_slice(from_head);
    rest.read_exact(&mut out[from_head.len()..])
        .map_err(|e| read_error(path, e))?;
    Ok(Some(samples))
}

/// The gzip stream `compressed` inflated in one call, where its trailer (the inflated size,
/// mod 2^32) says it holds exactly the planned bytes and it does: libdeflate is twice as
/// fast as streaming. None otherwise (several members, a lying trailer, corrupt data), for
/// the caller to stream it and name what is wrong. Deflate inflates at most 1032-fold, which
/// bounds what a lying trailer can make this allocate. Samples in the machine's byte order
/// that start on a whole sample are inflated straight into their own vector, and the bytes
/// before them dropped in place: no second copy.
pub(crate) fn inflate_whole(compressed: &[u8], plan: &Plan) -> Option<Bounded> {
    let Plan {
        range,
        ty,
        big_endian,
    } = plan;
    let at = compressed.len().checked_sub(4)?;
    let trailer = u32::from_le_bytes(compressed[at..].try_into().expect("four bytes"));
    let plausible = range.end <= (compressed.len() as u64).saturating_mul(1032);
    if !plausible || trailer != range.end as u32 {
        return None;
    }
    let size = usize::try_from(range.end).ok()?;
    let start = usize::try_from(range.start).ok()?.min(size);
    let sample = ty.size();
    let typed =
        *big_endian == cfg!(target_endian = "big") && start % sample == 0 && size % sample == 0;
    let mut decompressor = libdeflater::Decompressor::new();
    if typed {
        let mut samples = Samples::zeroed(*ty, size / sample);
        let n = decompressor
            .gzip_decompress(compressed, samples.bytes_mut())
            .ok()?;
        if n != size {
            return None;
        }
        samples.drop_front(start / sample);
        return Some(Bounded::Samples(samples));
    }
    let mut bytes = vec![0; size];
    let n = decompressor.gzip_decompress(compressed, &mut bytes).ok()?;
    (n == size).then_some(Bounded::Bytes { bytes, skip: start })
}

fn read_error(path: &Path, e: std::io::Error) -> IoError {
    if e.kind() == std::io::ErrorKind::InvalidInput
        || e.kind() == std::io::ErrorKind::InvalidData
        || e.kind() == std::io::ErrorKind::UnexpectedEof
    {
        IoError::invalid(path, format!("corrupt or truncated gzip data: {e}"))
    } else {
        IoError::io(path, e)
    }
}

/// A zip archive's member (of an `.npz`, a `.pt`), read no further than the size its
/// directory claims, a claim refused past [`limits::max_voxels`] 8-byte values: a lying
/// directory or a zip bomb costs no more memory than that.
pub(crate) fn read_member(
    path: &Path,
    name: &str,
    member: &mut zip::read::ZipFile<'_, impl Read>,
) -> Result<Vec<u8>, IoError> {
    let size = member.size();
    let limit = limits::max_voxels().saturating_mul(8);
    if size > limit {
        return Err(IoError::invalid(
            path,
            format!(
                "member {name} claims {size} bytes, past the limit of {limit} (8 bytes per voxel of --max-voxels)"
            ),
        ));
    }
    let mut bytes = Vec::new();
    member
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| IoError::invalid(path, format!("member {name}: {e}")))?;
    Ok(bytes)
}

/// What a file on disk is, judged by its name and, for DICOM, its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nifti,
    Nrrd,
    Dicom,
    /// The `.img` half of a NIfTI pair, read through its `.hdr`.
    NiftiData,
    Other,
}

pub fn kind_of(path: &Path) -> Kind {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let ends = |s: &str| name.ends_with(s);
    if ends(".nii") || ends(".nii.gz") || ends(".hdr") || ends(".hdr.gz") {
        Kind::Nifti
    } else if ends(".img") || ends(".img.gz") {
        Kind::NiftiData
    } else if ends(".nrrd") || ends(".nhdr") {
        Kind::Nrrd
    } else if ends(".dcm") || ends(".dicom") || dicom::has_preamble(path) {
        Kind::Dicom
    } else {
        Kind::Other
    }
}

/// What [`walk`] found under its inputs.
#[derive(Debug, Default)]
pub struct Walk {
    /// Files, sorted by the bytes of their paths.
    pub files: Vec<PathBuf>,
    /// What the walk could not follow (a folder it may not list, a dangling link, an entry
    /// that vanished), each an error that names it: the caller's failures.
    pub unreadable: Vec<IoError>,
}

/// Every file under `inputs` (files as given, folders walked recursively), sorted by the
/// bytes of their paths. Symbolic links are followed, but each real folder and file is
/// visited once, by device and inode: a link back up (`sub/up -> ..`) or a second link to
/// one folder adds nothing. An input that does not exist is an error; anything below it the
/// walk cannot follow is listed in [`Walk::unreadable`], and the walk goes on.
pub fn walk(inputs: &[PathBuf]) -> Result<Walk, IoError> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let mut folders = std::collections::HashSet::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| IoError::io(input, e))?;
        if !meta.is_dir() {
            found.push((input.clone(), Some((meta.dev(), meta.ino()))));
            continue;
        }
        // Siblings in name order, so that of two ways into one folder the first is kept.
        let entries = walkdir::WalkDir::new(input)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                !e.file_type().is_dir()
                    || e.metadata()
                        .map_or(true, |m| folders.insert((m.dev(), m.ino())))
            });
        for entry in entries {
            match entry {
                Ok(e) if !e.file_type().is_dir() => {
                    let id = e.metadata().ok().map(|m| (m.dev(), m.ino()));
                    found.push((e.into_path(), id));
                }
                Ok(_) => {}
                // A link back to a folder above it: its files are listed once already.
                Err(e) if e.loop_ancestor().is_some() => {}
                Err(e) => {
                    let at = e.path().unwrap_or(input).to_path_buf();
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("the walk could not follow it"));
                    unreadable.push(IoError::io(&at, source));
                }
            }
        }
    }
    found.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    let mut files_seen = std::collections::HashSet::new();
    let files = found
        .into_iter()
        .filter(|(_, id)| id.is_none_or(|id| files_seen.insert(id)))
        .map(|(path, _)| path)
        .collect();
    Ok(Walk { files, unreadable })
}

/// Reads a NIfTI or NRRD file (DICOM goes through [`dicom`], by series).
pub fn read_volume(path: &Path) -> Result<Volume, IoError> {
    match kind_of(path) {
        Kind::Nifti => nifti::read(path),
        Kind::Nrrd => nrrd::read(path),
        _ => Err(IoError::unsupported(path, "not a NIfTI or NRRD file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_a_good_one_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("lim-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.json");
        write_atomic(&path, b"old").unwrap();
        let failed: Result<(), IoError> = atomically(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(IoError::invalid(tmp, "the writer failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "the old file stands");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new", "replaced");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let mut log = jsonl::Log::create(&dir.join("log.jsonl")).unwrap();
        log.write(&serde_json::json!({"step": 1})).unwrap();
        drop(log);
        let mut log = jsonl::Log::append(&dir.join("log.jsonl")).unwrap();
        log.write(&serde_json::json!({"step": 2})).unwrap();
        let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
        assert_eq!(text, "{\"step\":1}\n{\"step\":2}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_walk_sorts_by_bytes_and_visits_each_real_folder_and_file_once() {
        let dir = std::env::temp_dir().join(format!("lim-walk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/b.png"), b"").unwrap();
        std::fs::write(dir.join("a.b.png"), b"").unwrap();
        std::fs::write(dir.join("a-c.png"), b"").unwrap();
        // A link back up, a second way into `a`, a hard link and a dangling link.
        std::os::unix::fs::symlink(&dir, dir.join("a/up")).unwrap();
        std::os::unix::fs::symlink(dir.join("a"), dir.join("c")).unwrap();
        std::fs::hard_link(dir.join("a/b.png"), dir.join("d.png")).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("gone.png")).unwrap();
        let found = walk(&[dir.clone(), dir.join("a")]).unwrap();
        let names: Vec<String> = found
            .files
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        // '-' and '.' come before '/' in bytes, though `Path`'s order puts "a/..." first.
        assert_eq!(names, ["a-c.png", "a.b.png", "a/b.png"]);
        let unreadable: Vec<String> = found.unreadable.iter().map(|e| e.to_string()).collect();
        assert!(
            unreadable.len() == 1 && unreadable[0].contains("gone.png"),
            "{unreadable:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
