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
    fs::copy(
        Path::new("/usr/lib/x86_64-linux-gnu/libm.so.6")
            .canonicalize()
            .or_else(|_| Path::new("/lib/x86_64-linux-gnu/libm.so.6").canonicalize())
            .expect("libm"),
        o("libm-copy.so.6"),
    )
    .unwrap();
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
