//! The demo's data tree and its hash: [`fill_data`] writes a deterministic
//! tree (directories, files of varied sizes and modes, symlinks, a hard
//! link); [`tree_hash`] hashes a tree (paths, modes, owners, sizes, mtimes,
//! links, contents) so "the data survived the move" is one comparison.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A small deterministic random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fill `dir` with about `bytes` of data: nested directories, files of
/// varied sizes and modes, symlinks and a hard link. Deterministic.
pub fn fill_data(dir: &Path, bytes: u64, seed: u64) -> Result<()> {
    let mut rng = Rng(seed | 1);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let sub = dir.join(format!("d{}/e{}", rng.below(6), rng.below(3)));
        fs::create_dir_all(&sub).map_err(|e| Error::io("creating", e).device(&sub))?;
        let size = match rng.below(10) {
            0..=6 => rng.below(32 << 10),
            _ => rng.below(2 << 20),
        };
        let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
        for chunk in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let p = sub.join(format!("f{i}"));
        fs::write(&p, &data).map_err(|e| Error::io("writing", e).device(&p))?;
        let mode = [0o644, 0o600, 0o755, 0o640][usize::try_from(rng.below(4)).unwrap_or(0)];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", e).device(&p))?;
        if i % 7 == 3 {
            let _ = std::os::unix::fs::symlink(format!("f{i}"), sub.join(format!("l{i}")));
        }
        if i == 0 {
            let _ = fs::hard_link(&p, dir.join("hardlink"));
        }
        written = written.saturating_add(size);
        i = i.saturating_add(1);
    }
    fs::write(
        dir.join("README"),
        "reroot demo data: its tree hash must survive the move\n",
    )
    .map_err(|e| Error::io("writing", e).device(dir))
}

fn walk(
    top: &Path,
    dir: &Path,
    lines: &mut Vec<String>,
    inodes: &mut Vec<((u64, u64), String)>,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io("reading", e).device(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).map_err(|e| Error::io("lstat", e).device(&p))?;
        let rel = p.strip_prefix(top).unwrap_or(&p).display().to_string();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "d".to_owned()
        } else if ft.is_symlink() {
            format!(
                "l {}",
                fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        } else if ft.is_file() {
            let key = (m.dev(), m.ino());
            if let Some((_, first)) = inodes.iter().find(|(k, _)| *k == key) {
                format!("h {first}")
            } else {
                inodes.push((key, rel.clone()));
                let data = fs::read(&p).map_err(|e| Error::io("reading", e).device(&p))?;
                format!("f {:016x}", xxhash_rust::xxh3::xxh3_64(&data))
            }
        } else {
            "o".to_owned()
        };
        lines.push(format!(
            "{rel} {:o} {}:{} {} {}.{} {what}",
            m.mode(),
            m.uid(),
            m.gid(),
            // A directory's size is the filesystem's business (ext4 counts
            // blocks, xfs and btrfs bytes of entries): `--mkfs` changes it.
            if ft.is_dir() { 0 } else { m.size() },
            m.mtime(),
            m.mtime_nsec()
        ));
        if ft.is_dir() {
            walk(top, &p, lines, inodes)?;
        }
    }
    Ok(())
}

/// A hash of the tree under `dir`: every entry's path, mode, owner, size (not for directories),
/// mtime, link target, hard-link group and the xxh3 of its contents.
pub fn tree_hash(dir: &Path) -> Result<String> {
    let mut lines = Vec::new();
    walk(dir, dir, &mut lines, &mut Vec::new())?;
    Ok(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(lines.join("\n").as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_tree_hash_are_deterministic_and_sensitive() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fill_data(a.path(), 256 << 10, 7).unwrap();
        fill_data(b.path(), 256 << 10, 7).unwrap();
        let h1 = tree_hash(a.path()).unwrap();
        assert_eq!(h1.len(), 16);
        assert_eq!(tree_hash(a.path()).unwrap(), h1);
        assert!(a.path().join("hardlink").exists());
        fs::write(a.path().join("README"), "changed").unwrap();
        assert_ne!(tree_hash(a.path()).unwrap(), h1);
        // Same seed, same contents (mtimes differ, so compare the files).
        assert_eq!(
            fs::read(a.path().join("hardlink")).unwrap(),
            fs::read(b.path().join("hardlink")).unwrap()
        );
    }
}
