//! `lim hash`: perceptual hashes of image files, as imagehash prints them.

use std::path::{Path, PathBuf};

use lim::hash::{Algorithm, HashKind};
use lim::select::{Shard, VolumePattern};
use serde_json::json;

use super::{CliResult, GpuArgs, HashDevice};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG) or folders, searched recursively in sorted order
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// dhash (the paper's), phash or ahash
    #[arg(long, default_value = "dhash")]
    algo: String,
    /// imagehash's hash_size: hashes have N x N bits
    #[arg(long, default_value_t = 8, value_name = "N")]
    hash_size: usize,
    #[command(flatten)]
    device: HashDevice,
    /// One JSON object per line: {"path", "hash"}
    #[arg(long)]
    json: bool,
    /// Hash only part I of N of the images: a stable split by volume (the volume `lim reduce`
    /// finds from the path within its folder), so that the parts of an archive can run apart
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Write the hashes to FILE (whole, once all are done: a file there is complete) instead
    /// of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The volume of an image found under one of the `folders` given (its path within that
/// folder, or its name if given as a file), as `lim reduce` groups a folder without a manifest.
fn volume_of(file: &Path, folders: &[&PathBuf]) -> String {
    let rel = folders
        .iter()
        .find_map(|folder| file.strip_prefix(folder).ok())
        .unwrap_or_else(|| Path::new(file.file_name().unwrap_or_default()));
    let rel: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    VolumePattern::Auto.volume_of(&rel.join("/"))
}

/// Image files under `paths` (files as given, folders walked recursively, sorted), and
/// what the walk could not read.
pub fn list_images(paths: &[PathBuf]) -> Result<lim::io::Walk, lim::io::IoError> {
    let mut out = lim::io::Walk::default();
    for path in paths {
        if path.is_dir() {
            let found = lim::io::walk(std::slice::from_ref(path))?;
            out.files
                .extend(found.files.into_iter().filter(|p| lim::data::is_image(p)));
            out.unreadable.extend(found.unreadable);
        } else {
            out.files.push(path.clone());
        }
    }
    Ok(out)
}

/// Files hashed at a time.
const CHUNK: usize = 1024;

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let kind = HashKind::new(args.algo.parse::<Algorithm>()?, args.hash_size)?;
    let lim::io::Walk {
        mut files,
        mut unreadable,
    } = list_images(&args.paths)?;
    if let Some(shard) = args.shard {
        let folders: Vec<&PathBuf> = args.paths.iter().filter(|p| p.is_dir()).collect();
        files.retain(|f| shard.owns(&volume_of(f, &folders)));
        // Unreadable folders belong to no volume: the first part reports them.
        if shard.index > 0 {
            unreadable.clear();
        }
    }
    for e in &unreadable {
        eprintln!("{e}");
    }
    let hashing = args.device.hashing(gpu_args, kind)?;
    let mut failed = 0;
    let mut lines = String::new();
    // A chunk at a time, so that an archive's images are never all in memory at once.
    for chunk in files.chunks(CHUNK) {
        for (path, hash) in chunk.iter().zip(hashing.hash_files(chunk)?) {
            let line = match hash {
                Err(e) => {
                    eprintln!("{e}");
                    failed += 1;
                    continue;
                }
                Ok(h) if args.json => json!({"path": path, "hash": h.to_string()}).to_string(),
                Ok(h) => format!("{}\t{h}", path.display()),
            };
            match &args.out {
                Some(_) => {
                    lines.push_str(&line);
                    lines.push('\n');
                }
                None => println!("{line}"),
            }
        }
    }
    if let Some(out) = &args.out {
        lim::io::write_atomic(out, lines.as_bytes())?;
    }
    let failed = failed + unreadable.len();
    if failed > 0 && failed == files.len() + unreadable.len() {
        return Err("no image could be read".into());
    }
    Ok(())
}
