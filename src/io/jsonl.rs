//! JSON lines, the format of every record and log lim writes: a whole file of records written
//! atomically, or a log appended to line by line as a run goes, each line flushed so that a
//! run killed at any moment leaves every finished line readable.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::IoError;

fn line<T: Serialize>(path: &Path, item: &T) -> Result<String, IoError> {
    serde_json::to_string(item).map_err(|e| IoError::invalid(path, format!("a record: {e}")))
}

/// Writes one line per item to `path`, atomically.
pub fn write_all<T: Serialize>(path: &Path, items: &[T]) -> Result<(), IoError> {
    let mut text = String::new();
    for item in items {
        text.push_str(&line(path, item)?);
        text.push('\n');
    }
    super::write_atomic(path, text.as_bytes())
}

/// The records of a JSON-lines file, one per non-empty line; a line that does not parse is
/// an error naming the file and the line.
pub fn read_all<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| IoError::invalid(path, format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// A JSON-lines log being written.
pub struct Log {
    path: PathBuf,
    file: BufWriter<File>,
}

impl Log {
    /// A new, empty log at `path` (an older one is replaced).
    pub fn create(path: &Path) -> Result<Log, IoError> {
        Self::open(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
    }

    /// The log at `path`, continued (a resumed run's), or a new one.
    pub fn append(path: &Path) -> Result<Log, IoError> {
        Self::open(path, OpenOptions::new().create(true).append(true))
    }

    fn open(path: &Path, options: &OpenOptions) -> Result<Log, IoError> {
        let file = options.open(path).map_err(|e| IoError::io(path, e))?;
        Ok(Log {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    /// Writes `item` as one line and flushes it.
    pub fn write<T: Serialize>(&mut self, item: &T) -> Result<(), IoError> {
        let text = line(&self.path, item)?;
        writeln!(self.file, "{text}")
            .and_then(|()| self.file.flush())
            .map_err(|e| IoError::io(&self.path, e))
    }
}
