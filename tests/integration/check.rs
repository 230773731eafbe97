//! `reroot check`, `reroot quiesce` and `reroot resume-services` against a
//! loop-mounted ext4 image inside a private mount namespace, with real
//! processes that keep it busy: (a) a deleted file held open, (b) a mapped
//! copy of a shared library that was then deleted, (c) a log file open for
//! writing, (d) a bound unix socket, (e) a swap file swapped on.
//!
//! The namespace is held by one `unshare --mount --propagation private
//! sleep` process; everything else enters it with `nsenter --mount` (which
//! execs in place, so a spawned child's pid is the pid reroot must name).
//! Guards swap off, kill exactly the pids spawned, and end the namespace
//! (which unmounts the image) before the loop device is detached.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{LoopDev, mkfs, run_ok, scratch, sparse_file};

/// A private mount namespace, held by a sleeping process.
struct Namespace {
    holder: Child,
}

impl Namespace {
    fn new() -> Self {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "100000"])
            .spawn()
            .expect("unshare");
        let ns = Self { holder };
        // Wait until unshare has exec'd sleep inside the new namespace.
        wait_for(
            || comm(ns.pid()).as_deref() == Some("sleep"),
            "namespace holder",
        );
        ns
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command that runs inside the namespace.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .arg("--mount")
            .arg("--")
            .arg(program);
        c
    }

    /// `path` (as seen inside) reached from outside, through the holder's root.
    fn outside(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.pid())).join(path.strip_prefix("/").unwrap())
    }

    /// The namespace's mountinfo line for `mp`, if mounted.
    fn mount_options(&self, mp: &Path) -> Option<String> {
        let text = fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).ok()?;
        let mp = mp.to_str()?;
        text.lines()
            .rfind(|l| l.split(' ').nth(4) == Some(mp))
            .and_then(|l| l.split(' ').nth(5).map(str::to_owned))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // The namespace, and the mounts only it has, go with its last process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A spawned process, killed (by its own pid) on drop.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A swap file swapped on inside the namespace; swapped off on drop.
struct SwapOn<'a> {
    ns: &'a Namespace,
    path: PathBuf,
}

impl Drop for SwapOn<'_> {
    fn drop(&mut self) {
        if swap_active(&self.path) {
            let _ = self.ns.cmd("swapoff").arg(&self.path).status();
        }
    }
}

fn swap_active(path: &Path) -> bool {
    fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().next() == path.to_str())
}

fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(cmd: &mut Command) -> Proc {
    Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning a test process"),
    )
}

/// The loop-mounted image with the five kinds of users.
struct Busy<'a> {
    held: Proc,
    mapper: Proc,
    writer: Proc,
    listener: Proc,
    swap: SwapOn<'a>,
}

const PERL_LISTEN: &str = "use IO::Socket::UNIX; \
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 1) or die $!; \
sleep 100000";
const PERL_LOG: &str = "open(my $f, '>>', $ARGV[0]) or die $!; select($f); $| = 1; \
while (1) { print \"tick\\n\"; sleep 1 }";

fn make_busy<'a>(ns: &'a Namespace, dev: &Path, mp: &Path) -> Busy<'a> {
    run_ok(ns.cmd("mount").arg(dev).arg(mp));
    let o = |rel: &str| ns.outside(&mp.join(rel));

    // (a) a file held open, then deleted.
    fs::write(o("held"), b"held\n").unwrap();
    let held = spawn(ns.cmd("sh").args([
        "-c",
        "exec 3<\"$1\"; rm \"$1\"; exec sleep 100000",
        "sh",
        mp.join("held").to_str().unwrap(),
    ]));
    wait_for(|| comm(held.pid()).as_deref() == Some("sleep"), "(a)");

    // (b) a copy of a shared library, preloaded, then deleted.
    let lib = mp.join("libm-copy.so.6");
    fs::copy(libm(), o("libm-copy.so.6")).unwrap();
    let mapper = spawn(
        ns.cmd("env")
            .arg(format!("LD_PRELOAD={}", lib.display()))
            .args(["sleep", "100000"]),
    );
    let maps = format!("/proc/{}/maps", mapper.pid());
    wait_for(
        || {
            fs::read_to_string(&maps)
                .unwrap_or_default()
                .contains("libm-copy")
        },
        "(b) mapping",
    );
    fs::remove_file(o("libm-copy.so.6")).unwrap();

    // (c) a log file written every second.
    let writer = spawn(
        ns.cmd("perl")
            .args(["-e", PERL_LOG])
            .arg(mp.join("app.log")),
    );
    wait_for(|| o("app.log").exists(), "(c)");

    // (d) a listening unix socket.
    let listener = spawn(
        ns.cmd("perl")
            .args(["-e", PERL_LISTEN])
            .arg(mp.join("app.sock")),
    );
    wait_for(|| o("app.sock").exists(), "(d)");

    // (e) a swap file: fully allocated, mkswap'ed, swapped on.
    let swapfile = mp.join("swapfile");
    fs::write(o("swapfile"), vec![0u8; 16 << 20]).unwrap();
    run_ok(ns.cmd("chmod").arg("600").arg(&swapfile));
    run_ok(ns.cmd("mkswap").arg("-q").arg(&swapfile));
    let swap = SwapOn {
        ns,
        path: swapfile.clone(),
    };
    run_ok(ns.cmd("swapon").arg(&swapfile));
    Busy {
        held,
        mapper,
        writer,
        listener,
        swap,
    }
}

/// libm.so.6 of this system: next to the libc this test runs with.
fn libm() -> PathBuf {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
        .expect("this test links libc");
    let m = Path::new(libc).with_file_name("libm.so.6");
    assert!(m.exists(), "no {}", m.display());
    m
}

/// `reroot --json <args>` inside the namespace: (exit code, JSON).
fn reroot_json(ns: &Namespace, args: &[&str]) -> (i32, Value) {
    let out = ns
        .cmd(env!("CARGO_BIN_EXE_reroot"))
        .arg("--json")
        .args(args)
        .output()
        .expect("running reroot");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reroot {args:?}: bad JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn findings<'v>(report: &'v Value, category: &str) -> Vec<&'v Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["category"] == category)
        .collect()
}

fn pids(f: &Value) -> Vec<u64> {
    f["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

fn has_path(f: &Value, p: &Path) -> bool {
    f["paths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str() == p.to_str())
}

/// The one finding of `category` naming `pid`.
fn finding_for<'v>(report: &'v Value, category: &str, pid: u32) -> &'v Value {
    let v: Vec<_> = findings(report, category)
        .into_iter()
        .filter(|f| pids(f).contains(&u64::from(pid)))
        .collect();
    assert_eq!(v.len(), 1, "{category} for pid {pid}: {report:#}");
    v[0]
}

struct Image {
    _dir: tempfile::TempDir,
    base: PathBuf,
    dev: LoopDev,
}

fn image() -> Image {
    let dir = scratch();
    let base = dir.path().to_path_buf();
    let img = sparse_file(&base.join("root.img"), 96 << 20);
    mkfs("ext4", &img, &[]);
    let dev = LoopDev::attach(&img, &[]);
    fs::create_dir_all(base.join("mnt")).unwrap();
    Image {
        _dir: dir,
        base,
        dev,
    }
}

#[test]
fn check_names_every_user_of_the_root_with_pid_and_advice() {
    require_root!();
    require_tool!("unshare");
    require_tool!("nsenter");
    require_tool!("mkswap");
    require_tool!("perl");
    let img = image();
    let ns = Namespace::new();
    let mp = img.base.join("mnt");
    let busy = make_busy(&ns, img.dev.path(), &mp);

    let (code, r) = reroot_json(&ns, &["check", "--root", mp.to_str().unwrap()]);
    assert_eq!(code, 3, "blockers must give exit 3: {r:#}");
    assert_eq!(r["ready"], false);
    assert_eq!(r["root"], mp.to_str().unwrap());
    assert_eq!(r["fstype"], "ext4");

    let a = finding_for(&r, "deleted-open", busy.held.pid());
    assert_eq!(a["severity"], "blocker");
    assert!(has_path(a, &mp.join("held")), "{a:#}");
    assert!(
        a["advice"].as_str().unwrap().contains("remount,ro"),
        "{a:#}"
    );

    let b = finding_for(&r, "deleted-mapped", busy.mapper.pid());
    assert_eq!(b["severity"], "blocker");
    assert!(has_path(b, &mp.join("libm-copy.so.6")), "{b:#}");

    let c = finding_for(&r, "open-for-write", busy.writer.pid());
    assert_eq!(c["severity"], "blocker");
    assert!(has_path(c, &mp.join("app.log")), "{c:#}");
    assert!(c["advice"].as_str().unwrap().contains("by hand"), "{c:#}");

    let d = finding_for(&r, "unix-socket", busy.listener.pid());
    assert_eq!(d["severity"], "warning");
    assert!(has_path(d, &mp.join("app.sock")), "{d:#}");
    assert!(
        d["advice"].as_str().unwrap().contains("after the pivot"),
        "{d:#}"
    );

    let e = findings(&r, "swap-file");
    assert_eq!(e.len(), 1, "{r:#}");
    assert_eq!(e[0]["severity"], "blocker");
    assert!(has_path(e[0], &busy.swap.path), "{r:#}");
    assert_eq!(e[0]["action"]["action"], "swapoff");

    // A "container": a process in a mount namespace of its own (a copy of
    // the test's, so it has the image mounted too), with its cwd on it.
    let boxed = spawn(ns.cmd("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "cd \"$1\" && exec sleep 100000",
        "sh",
        mp.to_str().unwrap(),
    ]));
    wait_for(
        || comm(boxed.pid()).as_deref() == Some("sleep"),
        "container",
    );
    let (_, r) = reroot_json(&ns, &["check", "--root", mp.to_str().unwrap()]);
    let other = findings(&r, "other-namespace");
    assert_eq!(other.len(), 1, "{r:#}");
    assert_eq!(other[0]["severity"], "warning");
    assert_eq!(pids(other[0]), vec![u64::from(boxed.pid())]);
    let runs = finding_for(&r, "runs-from-root", boxed.pid());
    assert!(
        runs["summary"]
            .as_str()
            .unwrap()
            .contains("another mount namespace"),
        "{runs:#}"
    );
    boxed.kill();

    // Nothing else blocks: exactly these four blockers.
    assert_eq!(r["blockers"], 4, "{r:#}");
    // No process in this test belongs to a service, and PID 1 is no
    // service manager here: nothing is grouped by service.
    assert!(r["services"].as_array().unwrap().is_empty(), "{r:#}");

    // The text form says the same, and the exit code is the same.
    let out = ns
        .cmd(env!("CARGO_BIN_EXE_reroot"))
        .args(["check", "--root", mp.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3));
    assert!(text.contains("Blockers (4):"), "{text}");
    assert!(
        text.contains(&format!("pid {} (perl) writes", busy.writer.pid())),
        "{text}"
    );
    assert!(text.contains("Not ready"), "{text}");
    drop(busy);
}

#[test]
fn quiesce_fails_while_a_writer_runs_names_it_and_resume_undoes() {
    require_root!();
    require_tool!("unshare");
    require_tool!("nsenter");
    require_tool!("mkswap");
    require_tool!("perl");
    let img = image();
    let ns = Namespace::new();
    let mp = img.base.join("mnt");
    let state = img.base.join("state/quiesce.json");
    let Busy {
        held,
        mapper,
        writer,
        listener,
        swap,
        ..
    } = make_busy(&ns, img.dev.path(), &mp);
    let mps = mp.to_str().unwrap();
    let states = state.to_str().unwrap();
    let rw = |ns: &Namespace| ns.mount_options(&mp).unwrap();
    assert!(rw(&ns).starts_with("rw"));

    // (a) and (b) belong to no service: nothing but their end releases the
    // root. (c), the writer, stays for now; (d) only warns.
    held.kill();
    mapper.kill();

    // Without --force, quiesce refuses and changes nothing: (c) is a
    // blocker it cannot resolve.
    let (code, r) = reroot_json(
        &ns,
        &["quiesce", "--root", mps, "--yes", "--state-file", states],
    );
    assert_eq!(code, 3, "{r:#}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("pid {} (perl) writes", writer.pid())),
        "{msg}"
    );
    assert!(swap_active(&swap.path), "refused quiesce must not swap off");
    assert!(!state.exists());

    // Not confirmed: refused, nothing changed.
    let (code, r) = reroot_json(
        &ns,
        &["quiesce", "--root", mps, "--force", "--state-file", states],
    );
    assert_eq!(code, 3, "{r:#}");
    assert!(swap_active(&swap.path));

    // With --force: the swap file goes off, the remount fails with EBUSY,
    // and the re-scan names the writer.
    let (code, r) = reroot_json(
        &ns,
        &[
            "quiesce",
            "--root",
            mps,
            "--yes",
            "--force",
            "--state-file",
            states,
        ],
    );
    assert_eq!(code, 8, "busy: {r:#}");
    assert_eq!(r["read_only"], false);
    let holders = r["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{r:#}");
    assert_eq!(pids(&holders[0]), vec![u64::from(writer.pid())]);
    assert!(has_path(&holders[0], &mp.join("app.log")));
    assert!(!swap_active(&swap.path), "the swap file must be off");
    assert!(rw(&ns).starts_with("rw"));
    assert!(
        ns.outside(&mp.join("mnt/oldroot")).is_dir(),
        "prepared before the remount"
    );
    let recorded = fs::read_to_string(&state).unwrap();
    assert!(recorded.contains("\"swapoff\""), "{recorded}");
    assert!(!recorded.contains("remount-read-only"), "{recorded}");

    // Once the writer is gone, quiesce succeeds; the socket listener (d)
    // does not keep the root from going read-only.
    writer.kill();
    let (code, r) = reroot_json(
        &ns,
        &["quiesce", "--root", mps, "--yes", "--state-file", states],
    );
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["read_only"], true);
    assert!(rw(&ns).starts_with("ro"), "{}", rw(&ns));
    assert!(fs::write(ns.outside(&mp.join("x")), b"x").is_err());
    let recorded = fs::read_to_string(&state).unwrap();
    assert!(recorded.contains("remount-read-only"), "{recorded}");

    // resume-services: read-write again, swap on again, state file gone.
    let (code, r) = reroot_json(&ns, &["resume-services", "--state-file", states]);
    assert_eq!(code, 0, "{r:#}");
    assert!(rw(&ns).starts_with("rw"), "{}", rw(&ns));
    assert!(swap_active(&swap.path), "swap file back on: {r:#}");
    assert!(!state.exists());
    fs::write(ns.outside(&mp.join("x")), b"x").unwrap();
    let undone: Vec<&str> = r["undone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(undone, vec!["remount-read-only", "swapoff"], "{r:#}");
    drop(listener);
    drop(swap);
}

/// An idle root is ready (exit 0), and `--target` adds the target rules:
/// a fit blank device passes; one that is mounted, too small or carries a
/// filesystem blocks (the signature not with `--force`).
#[test]
fn check_target_rules_and_a_ready_root() {
    require_root!();
    require_tool!("unshare");
    require_tool!("nsenter");
    let img = image();
    let ns = Namespace::new();
    let mp = img.base.join("mnt");
    run_ok(ns.cmd("mount").arg(img.dev.path()).arg(&mp));
    let mps = mp.to_str().unwrap();

    let (code, r) = reroot_json(&ns, &["check", "--root", mps]);
    assert_eq!(code, 0, "an idle root is ready: {r:#}");
    assert_eq!(r["ready"], true);
    assert_eq!(r["blockers"], 0);

    let target =
        |name: &str, size: u64| LoopDev::attach(&sparse_file(&img.base.join(name), size), &[]);
    let blank = target("blank.img", 128 << 20);
    let (code, r) = reroot_json(
        &ns,
        &[
            "check",
            "--root",
            mps,
            "--target",
            blank.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "a blank, larger target is fine: {r:#}");
    assert!(findings(&r, "target").is_empty());

    let small = target("small.img", 32 << 20);
    let (code, r) = reroot_json(
        &ns,
        &[
            "check",
            "--root",
            mps,
            "--target",
            small.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{r:#}");
    let t = findings(&r, "target");
    assert_eq!(t.len(), 1, "{r:#}");
    assert_eq!(t[0]["severity"], "blocker");
    assert!(has_path(t[0], small.path()));

    let used = target("used.img", 128 << 20);
    mkfs("ext4", used.path(), &[]);
    let args = [
        "check",
        "--root",
        mps,
        "--target",
        used.path().to_str().unwrap(),
    ];
    let (code, r) = reroot_json(&ns, &args);
    assert_eq!(code, 3, "a filesystem signature blocks: {r:#}");
    assert_eq!(findings(&r, "target").len(), 1, "{r:#}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, r) = reroot_json(&ns, &forced);
    assert_eq!(code, 0, "--force accepts the signature: {r:#}");

    let mp2 = img.base.join("mnt2");
    fs::create_dir_all(&mp2).unwrap();
    run_ok(ns.cmd("mount").arg(used.path()).arg(&mp2));
    let (code, r) = reroot_json(&ns, &forced);
    assert_eq!(code, 3, "a mounted target blocks, --force or not: {r:#}");
    assert!(!findings(&r, "target").is_empty());
    run_ok(ns.cmd("umount").arg(&mp2));

    let (code, r) = reroot_json(
        &ns,
        &["check", "--root", mps, "--target", "/dev/nonexistent-x"],
    );
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(findings(&r, "target").len(), 1, "{r:#}");
}

/// A loop device backed by a file on the root, mounted below it: check
/// names it (a blocker: the backing file is open for writing); quiesce
/// unmounts and detaches it before the remount; resume-services re-attaches
/// it and mounts it again.
#[test]
fn quiesce_releases_a_loop_device_backed_by_the_root_and_resume_restores_it() {
    require_root!();
    require_tool!("unshare");
    require_tool!("nsenter");
    let img = image();
    let ns = Namespace::new();
    let mp = img.base.join("mnt");
    run_ok(ns.cmd("mount").arg(img.dev.path()).arg(&mp));
    let inner_img = mp.join("inner.img");
    let inner_mp = mp.join("inner");
    sparse_file(&ns.outside(&inner_img), 16 << 20);
    fs::create_dir_all(ns.outside(&inner_mp)).unwrap();
    mkfs("ext4", &ns.outside(&inner_img), &[]);
    // Attached inside the namespace, so sysfs shows the path as it sees it.
    let out = run_ok(ns.cmd("losetup").args(["--find", "--show"]).arg(&inner_img));
    let _inner = InnerLoops {
        ns: &ns,
        backing: inner_img.clone(),
        mp: inner_mp.clone(),
    };
    let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    run_ok(ns.cmd("mount").arg(&node).arg(&inner_mp));
    fs::write(ns.outside(&inner_mp.join("data")), b"inner\n").unwrap();
    let (mps, state) = (mp.to_str().unwrap(), img.base.join("state.json"));
    let states = state.to_str().unwrap();

    let (code, r) = reroot_json(&ns, &["check", "--root", mps]);
    assert_eq!(code, 3, "{r:#}");
    let l = findings(&r, "loop-device");
    assert_eq!(l.len(), 1, "{r:#}");
    assert_eq!(l[0]["severity"], "blocker");
    assert!(
        has_path(l[0], &inner_img) && has_path(l[0], &inner_mp),
        "{r:#}"
    );
    assert_eq!(l[0]["action"]["action"], "release-loop");
    let subs: Vec<&str> = r["mounts_under_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mount_point"].as_str().unwrap())
        .collect();
    assert_eq!(subs, vec![inner_mp.to_str().unwrap()]);

    let (code, r) = reroot_json(
        &ns,
        &["quiesce", "--root", mps, "--yes", "--state-file", states],
    );
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["read_only"], true);
    assert!(ns.mount_options(&inner_mp).is_none(), "inner unmounted");
    assert!(ns.mount_options(&mp).unwrap().starts_with("ro"));
    assert!(!inner_attached(&ns, &inner_img), "inner loop detached");

    let (code, r) = reroot_json(&ns, &["resume-services", "--state-file", states]);
    assert_eq!(code, 0, "{r:#}");
    assert!(ns.mount_options(&mp).unwrap().starts_with("rw"));
    assert!(inner_attached(&ns, &inner_img), "re-attached: {r:#}");
    assert_eq!(
        fs::read_to_string(ns.outside(&inner_mp.join("data"))).unwrap(),
        "inner\n",
        "mounted again: {r:#}"
    );
}

fn inner_attached(ns: &Namespace, backing: &Path) -> bool {
    let out = ns
        .cmd("losetup")
        .args(["--noheadings", "--output", "NAME", "--associated"])
        .arg(backing)
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// Unmounts and detaches, inside the namespace, whatever loop device is
/// backed by our file (resume may have re-attached it under a new name).
struct InnerLoops<'a> {
    ns: &'a Namespace,
    backing: PathBuf,
    mp: PathBuf,
}

impl Drop for InnerLoops<'_> {
    fn drop(&mut self) {
        let _ = self.ns.cmd("umount").arg(&self.mp).status();
        if let Ok(out) = self
            .ns
            .cmd("losetup")
            .args(["--noheadings", "--output", "NAME", "--associated"])
            .arg(&self.backing)
            .output()
        {
            for dev in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.ns.cmd("losetup").arg("-d").arg(dev).status();
            }
        }
    }
}

/// A cgroup directory in the v1 `name=systemd` hierarchy, removed on drop
/// (after the processes in it are gone).
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
# A stand-in for systemctl: units are cgroups under $CG; "active" lists the
# units it considers running; stop/restart kill the unit's processes.
CG=@CG@; DIR=@DIR@
echo "$*" >> "$DIR/systemctl.log"
drain() {
  for p in $(cat "$CG/$1/cgroup.procs" 2>/dev/null); do kill "$p"; done
  while [ -n "$(cat "$CG/$1/cgroup.procs" 2>/dev/null)" ]; do
    live=""
    for p in $(cat "$CG/$1/cgroup.procs"); do
      grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null || live=1
    done
    [ -z "$live" ] && break
    sleep 0.05
  done
}
cmd=$1; shift
case "$cmd" in
  show) [ "$3" = logger.service ] && echo logger.socket; exit 0 ;;
  list-units) cat "$DIR/active"; exit 0 ;;
  stop) for u in "$@"; do drain "$u"; grep -v "^$u " "$DIR/active" > "$DIR/a"; mv "$DIR/a" "$DIR/active"; done ;;
  restart) for u in "$@"; do drain "$u"; done ;;
  start) for u in "$@"; do echo "$u loaded active running fake" >> "$DIR/active"; done ;;
  *) exit 1 ;;
esac
"#;

const FAKE_JOURNALCTL: &str = r#"#!/bin/sh
# A stand-in for journalctl: --relinquish-var makes "journald" (the
# processes of its cgroup) let go of the root by ending them.
CG=@CG@; DIR=@DIR@
echo "$*" >> "$DIR/journalctl.log"
if [ "$1" = --relinquish-var ]; then
  for p in $(cat "$CG/systemd-journald.service/cgroup.procs"); do kill "$p"; done
  sleep 0.3
fi
"#;

/// The service path end to end, without systemd: real processes in cgroups
/// of the v1 `name=systemd` hierarchy look like units to reroot; a fake
/// /run/systemd/system makes it pick systemd; stand-ins for systemctl and
/// journalctl record what reroot asks. quiesce must restart the unit holding
/// a deleted file, stop the writing unit together with its socket, have
/// journald relinquish /var, remount read-only; resume must start both units
/// and flush the journal.
#[test]
fn quiesce_drives_systemd_units_restart_stop_relinquish_and_resume_starts_them() {
    use reroot::exec::check::CheckOptions;
    use reroot::exec::event::EventSink;
    use reroot::exec::quiesce::{self, QuiesceOptions, Systemd};
    use reroot::plan::preflight::{Action, Category};
    use reroot::plan::quiesce::Step;
    use reroot::probe::SysRoot;

    require_root!();
    require_tool!("perl");
    let v1 = Path::new("/sys/fs/cgroup/systemd");
    if !v1.join("cgroup.procs").exists() || Path::new("/run/systemd/system").exists() {
        return crate::common::skip(
            "needs the v1 name=systemd cgroup hierarchy on a host not run by systemd",
        );
    }
    let img = image();
    let mnt = crate::common::Mounted::new(img.dev.path(), &img.base.join("mnt"), None);
    let mp = mnt.dir().to_path_buf();
    let dir = img.base.clone();
    let slice = Cgroup(v1.join(format!("reroot-test-{}.slice", std::process::id())));
    fs::create_dir_all(&slice.0).unwrap();
    let units: Vec<Cgroup> = [
        "logger.service",
        "holder.service",
        "systemd-journald.service",
    ]
    .iter()
    .map(|u| {
        let c = Cgroup(slice.0.join(u));
        fs::create_dir_all(&c.0).unwrap();
        c
    })
    .collect();
    let join =
        |c: &Cgroup, p: &Proc| fs::write(c.0.join("cgroup.procs"), p.pid().to_string()).unwrap();

    fs::create_dir_all(mp.join("var/log/journal")).unwrap();
    let logger = spawn(
        Command::new("perl")
            .args(["-e", PERL_LOG])
            .arg(mp.join("app.log")),
    );
    join(&units[0], &logger);
    fs::write(mp.join("held"), b"x").unwrap();
    let holder = spawn(Command::new("sh").args([
        "-c",
        "exec 3<\"$1\"; rm \"$1\"; exec sleep 100000",
        "sh",
        mp.join("held").to_str().unwrap(),
    ]));
    join(&units[1], &holder);
    let journal = spawn(
        Command::new("perl")
            .args(["-e", PERL_LOG])
            .arg(mp.join("var/log/journal/system.journal")),
    );
    join(&units[2], &journal);
    wait_for(|| comm(holder.pid()).as_deref() == Some("sleep"), "holder");
    wait_for(|| mp.join("app.log").exists(), "logger");
    wait_for(
        || mp.join("var/log/journal/system.journal").exists(),
        "journal",
    );

    fs::create_dir_all(dir.join("run/systemd/system")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(
        dir.join("active"),
        "logger.service loaded active running x\nlogger.socket loaded active running x\n\
         holder.service loaded active running x\n",
    )
    .unwrap();
    for (name, text) in [
        ("systemctl", FAKE_SYSTEMCTL),
        ("journalctl", FAKE_JOURNALCTL),
    ] {
        let text = text
            .replace("@CG@", slice.0.to_str().unwrap())
            .replace("@DIR@", dir.to_str().unwrap());
        fs::write(dir.join("bin").join(name), text).unwrap();
        run_ok(
            Command::new("chmod")
                .arg("755")
                .arg(dir.join("bin").join(name)),
        );
    }
    let mgr = Systemd {
        systemctl: dir.join("bin/systemctl").to_str().unwrap().into(),
        journalctl: dir.join("bin/journalctl").to_str().unwrap().into(),
    };
    let opts = QuiesceOptions {
        check: CheckOptions {
            root: mp.clone(),
            run_dir: dir.join("run"),
            ..CheckOptions::default()
        },
        state_file: dir.join("state/quiesce.json"),
        force: false,
        prepare_dirs: vec![PathBuf::from("mnt/oldroot")],
    };
    let sys = SysRoot::live();

    let (report, plan) = quiesce::prepare(&sys, &opts).unwrap();
    let action_of = |cat: Category, unit: &str| {
        report
            .findings
            .iter()
            .find(|f| f.category == cat && f.service.as_ref().is_some_and(|s| s.name() == unit))
            .unwrap_or_else(|| panic!("{cat:?} for {unit}: {report:#?}"))
            .action
            .clone()
    };
    assert!(matches!(
        action_of(Category::OpenForWrite, "logger.service"),
        Some(Action::StopService { .. })
    ));
    assert!(matches!(
        action_of(Category::DeletedOpen, "holder.service"),
        Some(Action::RestartService { .. })
    ));
    assert_eq!(
        action_of(Category::OpenForWrite, "systemd-journald.service"),
        Some(Action::RelinquishJournal)
    );
    assert!(plan.unresolved.is_empty(), "{plan:#?}");
    let steps: Vec<String> = plan.steps.iter().map(Step::describe).collect();
    assert_eq!(
        steps,
        vec![
            format!("create {}", mp.join("mnt/oldroot").display()),
            "restart holder.service".to_owned(),
            "stop logger.service".to_owned(),
            "journalctl --relinquish-var (journald writes to /run until resumed)".to_owned(),
            format!("mount -o remount,ro {}", mp.display()),
        ]
    );

    let out = quiesce::quiesce(&sys, &opts, &plan, &mgr, &EventSink::none()).unwrap();
    assert!(out.read_only, "{out:#?}");
    assert!(out.holders.is_empty());
    assert!(fs::write(mp.join("x"), b"x").is_err(), "read-only");
    let log = fs::read_to_string(dir.join("systemctl.log")).unwrap();
    assert!(log.contains("restart holder.service"), "{log}");
    assert!(log.contains("show -P TriggeredBy logger.service"), "{log}");
    assert!(log.contains("stop logger.service logger.socket"), "{log}");
    let jlog = fs::read_to_string(dir.join("journalctl.log")).unwrap();
    assert_eq!(jlog, "--relinquish-var\n");
    let stopped = out
        .done
        .iter()
        .find_map(|s| match s {
            Step::StopService { units, .. } => Some(units.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(stopped, vec!["logger.service", "logger.socket"]);

    let r = quiesce::resume(&sys, &opts.state_file, &mgr, &EventSink::none()).unwrap();
    assert!(r.failed.is_empty(), "{r:#?}");
    let log = fs::read_to_string(dir.join("systemctl.log")).unwrap();
    assert!(
        log.ends_with("start logger.service logger.socket\n"),
        "{log}"
    );
    let jlog = fs::read_to_string(dir.join("journalctl.log")).unwrap();
    assert_eq!(jlog, "--relinquish-var\n--flush\n");
    fs::write(mp.join("x"), b"x").unwrap();
    assert!(!opts.state_file.exists());
    drop((logger, holder, journal));
    drop(units);
}
