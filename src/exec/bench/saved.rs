//! Saved bench results: one JSON file holding the latest [`BenchReport`] per
//! (source, target) pair, which `reroot copy --tune` reads back.
//!
//! Default place: `/var/lib/reroot/bench.json` for root, else
//! `$XDG_STATE_HOME/reroot/bench.json` (or `~/.local/state/reroot/bench.json`).
//! Written to a temporary file and renamed, so a reader never sees half a file.
//! May import `error` and this module's report types.

use std::path::{Path, PathBuf};

use super::BenchReport;
use crate::error::{Error, Result};

/// Results kept in the file at most (the oldest go first).
pub const MAX_SAVED: usize = 32;

/// Version of the file's layout.
pub const SAVED_VERSION: u32 = 1;

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedResults {
    /// Layout version ([`SAVED_VERSION`]).
    pub version: u32,
    /// Oldest first.
    pub results: Vec<BenchReport>,
}

/// Where results go when no `--save FILE` is given.
pub fn default_path() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/reroot/bench.json");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    state.join("reroot").join("bench.json")
}

/// Read `path`; a missing file is an empty set of results.
pub fn load(path: &Path) -> Result<SavedResults> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SavedResults {
                version: SAVED_VERSION,
                results: Vec::new(),
            });
        }
        Err(e) => return Err(Error::io("reading saved bench results", e).device(path)),
    };
    let saved: SavedResults = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!("not a reroot bench results file: {e}"))
            .device(path)
            .hint("run `reroot bench` again to rewrite it, or name another file")
    })?;
    if saved.version != SAVED_VERSION {
        return Err(Error::invalid(format!(
            "bench results file version {} (this reroot reads {SAVED_VERSION})",
            saved.version
        ))
        .device(path)
        .hint("run `reroot bench` again to rewrite it"));
    }
    Ok(saved)
}

/// Add `report` to the file at `path` (created with its directory),
/// replacing an earlier result for the same source and target. A file that
/// cannot be parsed is replaced.
pub fn save(path: &Path, report: &BenchReport) -> Result<()> {
    let mut saved = load(path).unwrap_or_default();
    saved.version = SAVED_VERSION;
    let key = |r: &BenchReport| {
        (
            r.source.canonical.clone(),
            r.target.as_ref().map(|t| t.canonical.clone()),
        )
    };
    let k = key(report);
    saved.results.retain(|r| key(r) != k);
    saved.results.push(report.clone());
    let excess = saved.results.len().saturating_sub(MAX_SAVED);
    saved.results.drain(..excess);
    let io_err = |what: &str, e| Error::io(what, e).device(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating the results directory", e))?;
    }
    let text = serde_json::to_string_pretty(&saved)
        .map_err(|e| Error::invalid(format!("serialising results: {e}")))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text + "\n").map_err(|e| io_err("writing bench results", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("renaming bench results into place", e))
}

/// The newest saved result for `source` (canonical path and size) that has a
/// tuning: one with copy rows (a target) if any, else a read-only one.
pub fn find<'a>(saved: &'a SavedResults, canonical: &Path, size: u64) -> Option<&'a BenchReport> {
    let fits = |r: &&BenchReport| {
        r.source.canonical == canonical && r.source.size == size && r.tuning.is_some()
    };
    let newest = |with_target: bool| {
        saved
            .results
            .iter()
            .rev()
            .filter(fits)
            .find(|r| r.target.is_some() == with_target)
    };
    newest(true).or_else(|| newest(false))
}
