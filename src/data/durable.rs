//! Crash-safe writes of the files runs resume from: whole-file replacement through a synced
//! temporary file and a rename ([`write_atomic`]), and whole-line appends that a failed write
//! (a full disk) never leaves half-written ([`append_line`]). A SIGKILL or a power cut at any
//! moment leaves either the old or the new content, never a mix.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `path` with `.tmp` appended to its whole file name (`model.safetensors.tmp`), so that two
/// files differing only in extension never share a temporary file.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` by `bytes`: written to a temporary file, synced, renamed over `path`, then
/// the directory synced. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|e| Error::io(&tmp, e));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path);
    Ok(())
}

/// Syncs the directory holding `path` so a rename into it survives a power cut (best effort: not
/// every filesystem lets a directory be opened and synced).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `v` as one JSONL line (compact JSON ending in `\n`), as output files hold it.
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    let mut line = serde_json::to_string(v)
        .map_err(|e| Error::Internal(format!("serialising a line: {e}")))?;
    line.push('\n');
    Ok(line)
}

/// Appends `line` (which ends in `\n`) to `file` (at `path`, named in errors) and syncs it. If
/// the write fails part-way (ENOSPC, EIO), the file is cut back to its previous end so it still
/// holds only whole lines, and the error is returned.
pub fn append_line(file: &mut File, path: &Path, line: &str) -> Result<()> {
    let end = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(path, e))?;
    let written = file
        .write_all(line.as_bytes())
        .and_then(|_| file.sync_data());
    if let Err(e) = written {
        // Drop whatever part of the line reached the file; the caller sees the first error.
        let _ = file.set_len(end).and_then(|_| file.sync_data());
        return Err(Error::io(path, e));
    }
    Ok(())
}
