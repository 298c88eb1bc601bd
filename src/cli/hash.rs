//! `lim hash`: perceptual hashes of image files, as imagehash prints them.

use std::path::PathBuf;

use lim::hash::{Algorithm, HashKind};
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
    let lim::io::Walk { files, unreadable } = list_images(&args.paths)?;
    for e in &unreadable {
        eprintln!("{e}");
    }
    let hashing = args.device.hashing(gpu_args, kind)?;
    let mut failed = 0;
    // A chunk at a time, so that an archive's images are never all in memory at once.
    for chunk in files.chunks(CHUNK) {
        for (path, hash) in chunk.iter().zip(hashing.hash_files(chunk)?) {
            match hash {
                Err(e) => {
                    eprintln!("{e}");
                    failed += 1;
                }
                Ok(h) if args.json => println!("{}", json!({"path": path, "hash": h.to_string()})),
                Ok(h) => println!("{}\t{h}", path.display()),
            }
        }
    }
    let failed = failed + unreadable.len();
    if failed > 0 && failed == files.len() + unreadable.len() {
        return Err("no image could be read".into());
    }
    Ok(())
}
