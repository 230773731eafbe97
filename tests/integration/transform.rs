//! `reroot copy --mkfs TYPE` and `reroot verify --files` on loop devices:
//! a source ext4 holding every kind of object and metadata (setfacl, setcap,
//! setfattr, chattr, mknod, mkfifo, a socket, sparse files, hard links,
//! non-UTF-8 names, a deep tree) is copied onto smaller ext4, xfs and btrfs
//! targets. The oracles are independent of reroot: `rsync -naHAXS
//! --numeric-ids --checksum --itemize-changes` prints nothing, and
//! `getfattr`, `getfacl`, `lsattr` and `stat -c '%a %u %g %s %X %Y'`
//! listings are equal except on the paths reroot reported as lost; fsck of
//! the target is clean. Devices are populated and compared inside private
//! mount namespaces, so nothing shows on the machine's mount table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{LoopDev, reroot, run_ok, scratch, sparse_file};

/// Builds the source tree under the mount point $1; $2 small files.
const POPULATE: &str = r#"
set -e
cd "$1"; N=$2
mkdir -p d/sub/deep small acl caps flags links special sparse names topdir
echo hello > d/file; chown 1234:5678 d/file; chmod 4755 d/file
echo setgid > d/sg; chmod 2750 d/sg
chmod 1777 d/sub
ln -s ../file d/sub/rel-link; ln -s /nonexistent/abs d/abs-link; chown -h 42:43 d/abs-link
echo shared > links/a; ln links/a links/b; ln links/a d/sub/c
mknod special/blk b 7 200; mknod special/chr c 1 3; chmod 0640 special/chr; mkfifo special/fifo
setfattr -n user.comment -v "a user xattr" d/file
setfattr -n trusted.secret -v 0xdeadbeef d/file
setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' x)" d/sub
echo acl > acl/f; setfacl -m u:1000:rw,g:2000:r acl/f; setfacl -d -m u:1000:rwx acl
cp /bin/true caps/ping; setcap cap_net_raw+ep caps/ping
echo imm > flags/imm; chattr +i flags/imm
echo app > flags/app; chattr +a flags/app
echo nd > flags/nodump; chattr +dA flags/nodump
mkdir flags/immdir; echo x > flags/immdir/inside; chattr +i flags/immdir
chattr +T topdir
truncate -s 100M sparse/big; printf start | dd of=sparse/big conv=notrunc 2>/dev/null
printf middle | dd of=sparse/big bs=1 seek=52428800 conv=notrunc 2>/dev/null
printf end | dd of=sparse/big bs=1 seek=104857597 conv=notrunc 2>/dev/null
truncate -s 10M sparse/allhole
head -c 3000000 /dev/urandom > sparse/dense
touch -h -d '2001-02-03 04:05:06.123456789' d/abs-link
touch -d '1999-12-31 23:59:59.987654321' d/file
touch -a -d '2010-01-01 00:00:00.5' d/sg
printf x > "names/$(printf 'bad\377name\001')"
printf y > "names/$(printf 'sp ace\nnewline')"
p=names; for i in $(seq 1 60); do p=$p/deep$i; done; mkdir -p $p; echo bottom > $p/f
mkdir -p small; cd small
seq 1 "$N" | xargs sh -c 'for f; do echo "$f" > "f$f"; done' sh
"#;

/// Run `work` on a thread in a private mount namespace (mounts made there,
/// and by the commands it starts, are seen by nobody else).
fn in_private_ns<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare");
            run_ok(Command::new("mount").args(["--make-rprivate", "/"]));
            work()
        })
        .join()
        .expect("namespace thread")
    })
}

struct Rig {
    dir: tempfile::TempDir,
    src: LoopDev,
    dst: LoopDev,
}

/// A 600 MiB ext4 source (label 13 bytes: too long for xfs) populated
/// with `small` small files, and an empty 350 MiB target.
fn rig(small: usize) -> Rig {
    rig_sized(small, 600, 350)
}

/// The same with other sizes (MiB).
fn rig_sized(small: usize, src_mib: u64, dst_mib: u64) -> Rig {
    let dir = scratch();
    let src = LoopDev::attach(
        &sparse_file(&dir.path().join("src.img"), src_mib << 20),
        &[],
    );
    let dst = LoopDev::attach(
        &sparse_file(&dir.path().join("dst.img"), dst_mib << 20),
        &[],
    );
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-F", "-q", "-N", "120000", "-L", "reroot-source"])
            .arg(src.path()),
    );
    let m = dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    in_private_ns(|| {
        run_ok(Command::new("mount").arg(src.path()).arg(&m));
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(POPULATE)
                .arg("populate")
                .arg(&m)
                .arg(small.to_string()),
        );
        // A socket: bound by this process, left behind as an inode.
        let l = std::os::unix::net::UnixListener::bind(m.join("special/sock")).unwrap();
        drop(l);
        run_ok(Command::new("umount").arg(&m));
    });
    Rig { dir, src, dst }
}

impl Rig {
    fn src_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("src.img"))
            .unwrap()
            .len()
    }
}

fn blkid(dev: &Path, tag: &str) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(dev)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `reroot copy --mkfs KIND src dst --json ARGS`: (exit code, report).
fn transform(r: &Rig, kind: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = reroot()
        .args(["copy", "--json", "--mkfs", kind])
        .args(args)
        .arg(r.src.path())
        .arg(r.dst.path())
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, doc)
}

/// Listings keyed by path, from one side.
#[derive(Debug, PartialEq)]
struct Listings {
    xattrs: BTreeMap<String, String>,
    acls: BTreeMap<String, String>,
    lsattr: BTreeMap<String, String>,
    stat: BTreeMap<String, String>,
}

/// Split `# file: PATH` blocks (getfattr, getfacl) into a map.
fn blocks(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# file: ") {
            cur = Some(p.to_owned());
            out.insert(p.to_owned(), String::new());
        } else if let Some(c) = &cur {
            let mut lines: Vec<&str> = out[c].lines().collect();
            if !line.is_empty() {
                lines.push(line);
            }
            // XFS shows its ACLs again under their on-disk names.
            lines.retain(|l| !l.starts_with("trusted.SGI_ACL_"));
            lines.sort();
            out.insert(c.clone(), lines.join("\n"));
        }
    }
    out
}

/// Letters chattr sets (lsattr shows also flags the filesystem sets itself).
fn chattr_letters(flags: &str) -> String {
    flags
        .chars()
        .filter(|c| "sucSiadAmjtDTCP".contains(*c))
        .collect()
}

fn listings(root: &Path) -> Listings {
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd '{}' && find . -path ./lost+found -prune -o -print0 | sort -z | {script}",
                root.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lsattr = sh("xargs -0 lsattr -d 2>/dev/null")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(f, p)| (p.to_owned(), chattr_letters(f)))
        .collect();
    let stat = sh("xargs -0 stat -c '%n|%a %u %g %s %X %Y %F'")
        .lines()
        .filter(|l| !l.ends_with(" directory"))
        .filter_map(|l| l.split_once('|'))
        .map(|(p, v)| (p.to_owned(), v.to_owned()))
        .collect();
    Listings {
        xattrs: blocks(&sh("xargs -0 getfattr -h -d -m - 2>/dev/null")),
        acls: blocks(&sh("xargs -0 getfacl -p 2>/dev/null")),
        lsattr,
        stat,
    }
}

/// Compare both trees with the independent tools; return the differences
/// found on paths not listed in `lost` (as `/path`).
fn oracle(r: &Rig, target_opts: &str, lost: &[String]) -> Vec<String> {
    let s = r.dir.path().join("os");
    let d = r.dir.path().join("od");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    in_private_ns(|| {
        run_ok(
            Command::new("mount")
                .args(["-o", "ro,noatime"])
                .arg(r.src.path())
                .arg(&s),
        );
        run_ok(
            Command::new("mount")
                .args(["-o", &format!("ro,noatime{target_opts}")])
                .arg(r.dst.path())
                .arg(&d),
        );
        let skip = |p: &str| {
            let p = p.trim_start_matches("./").trim_end_matches('/');
            lost.iter().any(|l| l.trim_start_matches('/') == p)
        };
        let mut diffs = Vec::new();
        let rsync = run_ok(
            Command::new("rsync")
                .args([
                    "-naHAXS",
                    "--numeric-ids",
                    "--checksum",
                    "--itemize-changes",
                    "--filter=-x trusted.SGI_ACL_*",
                ])
                .arg(format!("{}/", s.display()))
                .arg(format!("{}/", d.display())),
        );
        for line in String::from_utf8_lossy(&rsync.stdout).lines() {
            let path = line.split_once(' ').map_or(line, |x| x.1);
            if !skip(path) {
                diffs.push(format!("rsync: {line}"));
            }
        }
        let (a, b) = (listings(&s), listings(&d));
        // getfattr lists only paths that have xattrs; the others list every path.
        for (name, x, y, least) in [
            ("getfattr", &a.xattrs, &b.xattrs, 4),
            ("getfacl", &a.acls, &b.acls, 100),
            ("lsattr", &a.lsattr, &b.lsattr, 100),
            ("stat", &a.stat, &b.stat, 100),
        ] {
            assert!(x.len() >= least, "{name} listed only {} paths", x.len());
            for (p, v) in x {
                if y.get(p) != Some(v) && !skip(p) {
                    diffs.push(format!("{name}: {p}: {v:?} vs {:?}", y.get(p)));
                }
            }
            for p in y.keys() {
                if !x.contains_key(p) {
                    diffs.push(format!("{name}: only on the target: {p}"));
                }
            }
        }
        run_ok(Command::new("umount").arg(&s));
        run_ok(Command::new("umount").arg(&d));
        diffs
    })
}

fn fsck_clean(kind: &str, dev: &Path) -> bool {
    let mut cmd = match kind {
        "xfs" => {
            let mut c = Command::new("xfs_repair");
            c.arg("-n");
            c
        }
        "btrfs" => {
            let mut c = Command::new("btrfs");
            c.args(["check", "--readonly"]);
            c
        }
        _ => {
            let mut c = Command::new("e2fsck");
            c.arg("-fn");
            c
        }
    };
    cmd.arg(dev).output().is_ok_and(|o| o.status.success())
}

fn losses(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["losses"]
        .as_array()
        .expect("losses")
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_owned(),
                l["what"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The common proof: the report, the oracles, fsck.
fn check_copy(r: &Rig, kind: &str, doc: &serde_json::Value, mount_opts: &str) {
    assert_eq!(doc["verified"], true, "{doc:#}");
    let diffs = doc["differences"].as_array().unwrap();
    assert!(
        diffs.iter().all(|d| d["explained"] == true),
        "unexplained differences: {doc:#}"
    );
    let lost: Vec<String> = losses(doc).into_iter().map(|l| l.0).collect();
    let found = oracle(r, mount_opts, &lost);
    assert!(
        found.is_empty(),
        "the oracles disagree:\n{}",
        found.join("\n")
    );
    assert!(fsck_clean(kind, r.dst.path()), "fsck of the {kind} target");
    assert!(
        doc["fit"]["target_bytes"].as_u64().unwrap() < r.src_bytes(),
        "the target is smaller than the source"
    );
    assert_eq!(blkid(r.dst.path(), "TYPE"), kind);
    assert!(doc["stats"]["hard_links"].as_u64().unwrap() >= 2);
    assert!(doc["stats"]["hole_bytes"].as_u64().unwrap() > 100_000_000);
}

#[test]
fn mkfs_ext4_onto_a_smaller_target_keeps_identity_and_everything() {
    require_root!();
    for t in [
        "mkfs.ext4",
        "rsync",
        "setfacl",
        "setfattr",
        "setcap",
        "getfattr",
    ] {
        require_tool!(t);
    }
    let r = rig(2000);
    let (code, doc) = transform(&r, "ext4", &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert!(losses(&doc).is_empty(), "{doc:#}");
    check_copy(&r, "ext4", &doc, "");
    assert_eq!(blkid(r.dst.path(), "UUID"), blkid(r.src.path(), "UUID"));
    assert_eq!(blkid(r.dst.path(), "LABEL"), "reroot-source");
    assert_eq!(doc["source_digest"], doc["target_digest"]);
}

#[test]
fn mkfs_xfs_reports_what_xfs_cannot_hold() {
    require_root!();
    for t in [
        "mkfs.xfs",
        "xfs_repair",
        "rsync",
        "setfacl",
        "setfattr",
        "setcap",
    ] {
        require_tool!(t);
    }
    let r = rig(2000);
    // The label is 13 bytes, xfs holds 12: refused before anything is written.
    let (code, doc) = transform(&r, "xfs", &[]);
    assert_eq!(code, 3, "{doc:#}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 12"),
        "{doc:#}"
    );
    assert_eq!(blkid(r.dst.path(), "TYPE"), "", "nothing was written");
    let (code, doc) = transform(&r, "xfs", &["--lossy"]);
    assert_eq!(code, 0, "{doc:#}");
    // xfs has no "top of directory hierarchy" flag: reported with the path.
    let l = losses(&doc);
    assert!(
        l.iter()
            .any(|(p, w)| p == "/topdir" && w.contains("inode flags T")),
        "{l:?}"
    );
    check_copy(&r, "xfs", &doc, ",nouuid");
    assert_eq!(blkid(r.dst.path(), "UUID"), blkid(r.src.path(), "UUID"));
    assert_eq!(blkid(r.dst.path(), "LABEL"), "reroot-sourc");
}

#[test]
fn mkfs_btrfs_with_a_new_uuid() {
    require_root!();
    for t in [
        "mkfs.btrfs",
        "btrfs",
        "rsync",
        "setfacl",
        "setfattr",
        "setcap",
    ] {
        require_tool!(t);
    }
    let r = rig(2000);
    // mkfs.btrfs refuses the source's UUID (another device carries it).
    let (code, doc) = transform(&r, "btrfs", &[]);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(blkid(r.dst.path(), "TYPE"), "", "nothing was written");
    // Without --lossy, the lost T flag fails the command, listing the path...
    let (code, doc) = transform(&r, "btrfs", &["--new-uuid"]);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(
        losses(&doc),
        [("/topdir".to_owned(), losses(&doc)[0].1.clone())]
    );
    // ...with it, the copy is accepted and otherwise complete.
    let (code, doc) = transform(&r, "btrfs", &["--new-uuid", "--lossy", "--force"]);
    assert_eq!(code, 0, "{doc:#}");
    check_copy(&r, "btrfs", &doc, "");
    assert_ne!(blkid(r.dst.path(), "UUID"), blkid(r.src.path(), "UUID"));
    assert_eq!(blkid(r.dst.path(), "LABEL"), "reroot-source");
}

#[test]
fn mkfs_100k_small_files_then_verify_files_finds_a_change() {
    require_root!();
    require_tool!("mkfs.ext4");
    require_tool!("setfattr");
    // 100k files take 4 KiB each on ext4: 400 MB.
    let r = rig_sized(100_000, 1024, 700);
    let (code, doc) = transform(&r, "ext4", &["--verify", "none"]);
    assert_eq!(code, 0, "{doc:#}");
    assert!(doc["stats"]["files"].as_u64().unwrap() > 100_000, "{doc:#}");
    let verify = |extra: &[&str]| {
        reroot()
            .args(["verify", "--files", "--json"])
            .args(extra)
            .arg(r.src.path())
            .arg(r.dst.path())
            .output()
            .unwrap()
    };
    let out = verify(&[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert!(v["entries"].as_u64().unwrap() > 100_000);
    assert_eq!(v["source_digest"], v["target_digest"]);
    // One changed xattr on the target, in 100k files, is found and named.
    let m: PathBuf = r.dir.path().join("mv");
    std::fs::create_dir_all(&m).unwrap();
    in_private_ns(|| {
        run_ok(Command::new("mount").arg(r.dst.path()).arg(&m));
        run_ok(
            Command::new("setfattr")
                .args(["-n", "user.x", "-v", "1"])
                .arg(m.join("small/f77777")),
        );
        run_ok(Command::new("umount").arg(&m));
    });
    let out = verify(&[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(4), "{v:#}");
    assert_eq!(v["differences"][0]["path"], "/small/f77777");
    assert_eq!(v["differences"][0]["what"], "xattrs");
    assert!(fsck_clean("ext4", r.dst.path()));
}

#[test]
fn mkfs_refuses_before_writing_when_the_data_do_not_fit() {
    require_root!();
    require_tool!("mkfs.ext4");
    let dir = scratch();
    let src = LoopDev::attach(&sparse_file(&dir.path().join("src.img"), 600 << 20), &[]);
    let dst = LoopDev::attach(&sparse_file(&dir.path().join("dst.img"), 200 << 20), &[]);
    run_ok(Command::new("mkfs.ext4").args(["-F", "-q"]).arg(src.path()));
    let m = dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    in_private_ns(|| {
        run_ok(Command::new("mount").arg(src.path()).arg(&m));
        run_ok(
            Command::new("dd")
                .args(["if=/dev/urandom", "bs=1M", "count=250", "status=none"])
                .arg(format!("of={}", m.join("big").display())),
        );
        run_ok(Command::new("umount").arg(&m));
    });
    let out = reroot()
        .args(["copy", "--mkfs", "ext4"])
        .arg(src.path())
        .arg(dst.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("would need") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(blkid(dst.path(), "TYPE"), "", "the target was not touched");
}

#[test]
fn demo_mkfs_xfs_migrates_the_sandbox_into_xfs() {
    require_root!();
    require_tool!("mkfs.xfs");
    if let Err(e) = reroot::exec::demo::requirements() {
        eprintln!("SKIP: {e}");
        return;
    }
    let out = reroot()
        .args(["demo", "--json", "--mkfs", "xfs"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{stderr}");
    // Every check: new root mounted read-write, old released and
    // re-identified, services back from the new root, data identical.
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "{c:#}");
    }
    let m = &r["migrate"];
    assert_eq!(m["outcome"], "done", "{m:#}");
    for s in m["stages"].as_array().unwrap() {
        // mkfs sizes the filesystem and gives it its identity.
        let want = if s["stage"] == "grow" || s["stage"] == "identity" {
            "skipped"
        } else {
            "done"
        };
        assert_eq!(s["status"], want, "{s:#}");
    }
    let text = m.to_string();
    assert!(text.contains("live pre-copy into a new xfs"), "{m:#}");
    assert!(text.contains("verified equal (tree digest"), "{m:#}");
}
