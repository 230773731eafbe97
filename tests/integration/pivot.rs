//! `reroot pivot` and `reroot finish` in a sandbox: an "old root" ext4 on a
//! loop device with a busybox userland and real services, booted as PID 1 of
//! a private mount + PID + network (+ cgroup) namespace, pivoted onto a copy
//! on a second loop device.
//!
//! Safety: loop devices are attached here, outside the namespace, with RAII
//! guards; everything is mounted only inside the namespace, whose boot
//! script refuses to run in this process's mount namespace (and whose
//! mounts vanish with it). The scenario inside checks again before pivoting.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reroot::exec::sandbox::{self, Boot, CgroupDir, SandboxOptions};
use reroot::probe::mountinfo::{self, Mount};

use crate::common::{LoopDev, Mounted, mkfs, run_ok, scratch, sparse_file};

/// A sandbox image on a loop device plus an empty target of the same size.
struct Rig {
    dir: tempfile::TempDir,
    old: LoopDev,
    new: LoopDev,
    cgroup: Option<CgroupDir>,
}

/// Output of one boot: the scenario's stdout split into `=== name ===` sections.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn section(&self, name: &str) -> &str {
        let tag = format!("=== {name} ===\n");
        let Some(start) = self.stdout.find(&tag) else {
            panic!("no section {name} in output:\n{}\nstderr:\n{}", self.stdout, self.stderr)
        };
        let rest = &self.stdout[start + tag.len()..];
        &rest[..rest.find("=== ").unwrap_or(rest.len())]
    }

    fn mounts(&self, name: &str) -> Vec<Mount> {
        mountinfo::parse(self.section(name)).expect("mountinfo parses")
    }

    fn json(&self, name: &str) -> serde_json::Value {
        let s = self.section(name);
        serde_json::from_str(s).unwrap_or_else(|e| panic!("section {name} is not JSON ({e}):\n{s}"))
    }

    fn assert_ok(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "sandbox failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

impl Rig {
    /// Old root: 192 MiB ext4 labelled `sandbox-root` with the sandbox
    /// userland, `reroot` and `scenario`; new: an empty device as big.
    fn new(scenario: &str, fstab_root: Option<&str>) -> Rig {
        let dir = scratch();
        let old = LoopDev::attach(&sparse_file(&dir.path().join("old.img"), 192 << 20), &[]);
        let new = LoopDev::attach(&sparse_file(&dir.path().join("new.img"), 192 << 20), &[]);
        mkfs("ext4", old.path(), &["-L", "sandbox-root"]);
        {
            let m = Mounted::new(old.path(), &dir.path().join("populate"), None);
            let mut opts = SandboxOptions {
                scenario: Some(scenario.to_owned()),
                ..SandboxOptions::default()
            };
            if let Some(f) = fstab_root {
                opts.fstab_root = f.to_owned();
            }
            opts.host_binaries.push(sandbox::HostBinary {
                from: env!("CARGO_BIN_EXE_reroot").into(),
                to: "/usr/sbin/reroot".into(),
            });
            sandbox::build(m.dir(), &opts).expect("building the sandbox root");
        }
        fs::create_dir_all(dir.path().join("nsroot")).unwrap();
        let name = format!(
            "reroot-pivot-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let cgroup = CgroupDir::create(&name);
        Rig {
            dir,
            old,
            new,
            cgroup,
        }
    }

    /// Copy the old root to the new device (the filesystem is not mounted
    /// anywhere at this point): `reroot copy` when built, else `dd`.
    fn copy(&self) {
        let out = crate::common::reroot()
            .arg("copy")
            .arg(self.old.path())
            .arg(self.new.path())
            .output()
            .unwrap();
        if !out.status.success() {
            run_ok(
                Command::new("dd")
                    .arg(format!("if={}", self.old.path().display()))
                    .arg(format!("of={}", self.new.path().display()))
                    .args(["bs=4M", "conv=fsync", "status=none"]),
            );
        }
    }

    /// Boot the sandbox and wait (at most `limit`) for the scenario to end.
    fn boot(&self, limit: Duration) -> Run {
        let b = Boot {
            device: self.old.path(),
            mount_dir: &self.dir.path().join("nsroot"),
            blockdevs: vec![self.old.path().to_path_buf(), self.new.path().to_path_buf()],
            cgroup: self.cgroup.as_ref(),
        };
        let out_path = self.dir.path().join("stdout");
        let err_path = self.dir.path().join("stderr");
        let mut cmd = sandbox::boot_command(&b).unwrap();
        cmd.env("SANDBOX_OLD", self.old.path())
            .env("SANDBOX_NEW", self.new.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        let mut child = cmd.spawn().expect("spawning the sandbox");
        let start = Instant::now();
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if start.elapsed() > limit {
                // The unshare process we started; --kill-child takes the
                // namespace's PID 1, and so the whole namespace, with it.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        fs::File::open(&out_path)
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        fs::File::open(&err_path)
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Run {
            code,
            stdout,
            stderr,
        }
    }

    fn uuid(dev: &Path) -> String {
        let out = run_ok(Command::new("tune2fs").arg("-l").arg(dev));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        format!("{} {}", field("Filesystem UUID:"), field("Filesystem volume name:"))
    }
}

/// Common scenario prelude: a section helper and the in-namespace safety check.
const PRELUDE: &str = r#"set -u
sec() { echo "=== $1 ==="; }
done_rc() { echo "$1" >/run/sandbox/poweroff; exit "$1"; }
# Services are up (init starts us after them); give the logger a tick.
sleep 1
"#;

fn skip_without_tools() -> bool {
    for t in ["unshare", "losetup", "mkfs.ext4", "tune2fs", "ldd"] {
        if !crate::common::have_tool(t) {
            eprintln!("SKIP: `{t}` is not installed");
            return true;
        }
    }
    if sandbox::find_busybox().is_err() {
        eprintln!("SKIP: no static busybox (apt-get install busybox-static)");
        return true;
    }
    false
}

fn by_point<'a>(m: &'a [Mount], p: &str) -> Option<&'a Mount> {
    mountinfo::mount_of(m, Path::new(p)).filter(|x| x.mount_point == Path::new(p))
}

#[test]
fn sandbox_boots_with_services_mounts_and_units() {
    require_root!();
    if skip_without_tools() {
        return;
    }
    let scenario = format!(
        "{PRELUDE}
sec mountinfo; cat /proc/self/mountinfo
sec units; systemctl list-units
sec cgroup; cat /proc/$(cat /run/sandbox/logger.service.pgid)/cgroup
sec ns; readlink /proc/self/ns/mnt
sec end
done_rc 0
"
    );
    let rig = Rig::new(&scenario, None);
    let run = rig.boot(Duration::from_secs(60));
    run.assert_ok();
    let m = run.mounts("mountinfo");
    let root = by_point(&m, "/").unwrap();
    let old_rdev = fs::metadata(rig.old.path()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(root.dev(), old_rdev.rdev(), "/ is the old device");
    assert_eq!(root.propagation.make_flag(), "shared");
    for p in ["/proc", "/sys", "/dev", "/dev/pts", "/run", "/srv", "/home/shared"] {
        assert!(by_point(&m, p).is_some(), "{p} mounted: {m:#?}");
    }
    let units = run.section("units");
    for u in ["syslog", "logger", "app", "holder", "mapper", "ssh", "nsholder"] {
        assert!(
            units.contains(&format!("{u}.service active")),
            "{u} runs:\n{units}\n{}",
            run.stderr
        );
    }
    if rig.cgroup.is_some() {
        assert!(
            run.section("cgroup").contains("0::/system.slice/logger.service"),
            "{}",
            run.section("cgroup")
        );
    }
    let here = fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(run.section("ns").trim(), here.to_string_lossy());
    let _ = PathBuf::new();
}
