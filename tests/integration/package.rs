//! What ships beside the binary: the manual page and shell completions
//! (`reroot --generate`), checked with the real tools (man/groff, bash,
//! zsh, fish); the static binary (`tools/build-static.sh`) run in an empty
//! chroot; the Ansible role (`tools/ansible/`) linted and run end to end
//! against a sandbox host.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{reroot, run_ok, scratch};

fn generate(what: &str) -> String {
    let out = run_ok(reroot().args(["--generate", what]));
    String::from_utf8(out.stdout).expect("--generate writes UTF-8")
}

/// `MANWIDTH=80 man --warnings -l` renders the page without a warning.
#[test]
fn man_page_renders_without_warnings() {
    require_tool!("man");
    require_tool!("groff");
    let dir = scratch();
    let page = dir.path().join("reroot.1");
    fs::write(&page, generate("man")).unwrap();
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man warns:\n{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    // The rendered page names every command and the exit codes.
    for s in [
        "REROOT MIGRATE",
        "REROOT STATUS",
        "REROOT CHECK",
        "EXIT STATUS",
        "--dry-run",
    ] {
        assert!(text.contains(s), "rendered page lacks {s}:\n{text}");
    }
    assert!(
        text.lines().all(|l| l.chars().count() <= 80),
        "a line is wider than MANWIDTH"
    );
}

/// Run bash's completion function for `words` (the last one being completed)
/// and return COMPREPLY.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\n\
         COMP_WORDS=({})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _reroot reroot '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[cword],
        words[cword.saturating_sub(1)],
    );
    let out = run_ok(Command::new("bash").arg("--norc").arg("-c").arg(prog));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `bash -n` accepts the script, and completing `reroot mi<TAB>` offers
/// `migrate` (and only it), `reroot migrate --dr<TAB>` offers `--dry-run`.
#[test]
fn bash_completion_completes_commands_and_flags() {
    require_tool!("bash");
    let dir = scratch();
    let script = dir.path().join("reroot.bash");
    fs::write(&script, generate("complete-bash")).unwrap();
    run_ok(Command::new("bash").arg("-n").arg(&script));
    assert_eq!(bash_complete(&script, &["reroot", "mi"]), ["migrate"]);
    let all = bash_complete(&script, &["reroot", ""]);
    for c in ["map", "check", "migrate", "status", "finish", "--generate"] {
        assert!(all.iter().any(|w| w == c), "no {c} in {all:?}");
    }
    assert_eq!(
        bash_complete(&script, &["reroot", "migrate", "--dr"]),
        ["--dry-run"]
    );
    assert_eq!(
        bash_complete(&script, &["reroot", "--generate", "complete-b"]),
        ["complete-bash"]
    );
}

fn shell_parses(shell: &str, what: &str) {
    let dir = scratch();
    let script = dir.path().join(format!("reroot.{shell}"));
    fs::write(&script, generate(what)).unwrap();
    run_ok(Command::new(shell).arg("-n").arg(&script));
}

/// `zsh -n` accepts the zsh completion.
#[test]
fn zsh_completion_parses() {
    require_tool!("zsh");
    shell_parses("zsh", "complete-zsh");
}

/// `fish -n` accepts the fish completion.
#[test]
fn fish_completion_parses() {
    require_tool!("fish");
    shell_parses("fish", "complete-fish");
}

/// Run `tools/build-static.sh OUT` and check what it wrote: the sha256
/// line it prints, the file beside the binary, and a stripped binary.
fn build_static(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("tools/build-static.sh"))
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-static.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let sum = String::from_utf8_lossy(&built.stdout);
    assert!(sum.trim_end().ends_with("  reroot"), "{sum}");
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("reroot.sha256")
            .current_dir(out),
    );
    let syms = run_ok(
        Command::new("readelf")
            .args(["-SW"])
            .arg(out.join("reroot")),
    );
    assert!(!String::from_utf8_lossy(&syms.stdout).contains(".symtab"));
}

/// `tools/build-static.sh` (a release build for the musl target, in the
/// same target directory: cargo lets go of its lock before running tests)
/// gives a static binary that runs in an
/// empty chroot: `--version`, and `map --json` on an ext4 image there gives
/// what the test's own binary says about it, and dumpe2fs agrees.
#[test]
fn static_binary_runs_in_an_empty_chroot() {
    require_root!(); // chroot
    require_tool!("mkfs.ext4");
    require_tool!("dumpe2fs");
    require_tool!("readelf");
    let dir = scratch();
    let out = dir.path().join("out");
    build_static(&out);
    let jail = dir.path().join("empty");
    fs::create_dir(&jail).unwrap();
    fs::copy(out.join("reroot"), jail.join("reroot")).unwrap();
    let img = jail.join("root.img");
    crate::common::sparse_file(&img, 64 << 20);
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "jail"])
            .arg(&img),
    );
    // Nothing in the directory but the binary and the image: no libc, no
    // loader, no /proc, no /dev.
    let mut names: Vec<_> = fs::read_dir(&jail)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["reroot", "root.img"]);

    let v = run_ok(
        Command::new("chroot")
            .arg(&jail)
            .args(["/reroot", "--version"]),
    );
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("reroot {}", env!("CARGO_PKG_VERSION"))
    );
    let m =
        run_ok(
            Command::new("chroot")
                .arg(&jail)
                .args(["/reroot", "map", "--json", "/root.img"]),
        );
    let mut inside: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    let m = run_ok(reroot().args(["map", "--json"]).arg(&img));
    let mut outside: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(inside["device"], "/root.img");
    inside["device"] = serde_json::Value::Null;
    outside["device"] = serde_json::Value::Null;
    assert_eq!(inside, outside);
    let d = run_ok(Command::new("dumpe2fs").arg("-h").arg(&img));
    let header = String::from_utf8_lossy(&d.stdout);
    let field = |name: &str| -> u64 {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in dumpe2fs -h"))
    };
    assert_eq!(inside["geometry"]["blocks_count"], field("Block count:"));
    assert_eq!(
        inside["geometry"]["free_blocks_count"],
        field("Free blocks:")
    );
}

/// The sandbox's scenario: say it is up, wait for the playbook, then the
/// facts after it, and power off.
const ANSIBLE_SCENARIO: &str = r#"
sec before; facts
touch /run/ansible-ready
while [ ! -e /run/ansible-done ]; do sleep 1; done
sec after; facts
sec end
done_rc 0
"#;

/// The host pid of the sandbox's PID 1: the process in another PID
/// namespace, where it is pid 1, started with our old root's device.
fn sandbox_init(old: &Path) -> Option<u32> {
    let want = format!("REROOT_DEMO_OLD={}", old.display());
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
        if nspid.is_none_or(|n| n.split_whitespace().last() != Some("1")) {
            continue;
        }
        let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// `sh -c script` inside the sandbox (mount + PID namespaces, its root).
fn in_sandbox(pid: u32, script: &str) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(["--all", "--root", "--wd", "--", "/bin/sh", "-c"])
        .arg(script)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap()
}

/// Copy the host's Debian python3 (binary, standard library, the libraries
/// they load) into the sandbox: Ansible's modules need a Python on the
/// host, as on any server.
fn bootstrap_python(pid: u32) {
    let script = format!(
        "set -e; py=$(readlink -f /usr/bin/python3); v=$(basename \"$py\"); \
         libs=$(for f in \"$py\" /usr/lib/$v/lib-dynload/*.so; do ldd \"$f\"; done \
           | awk '$2 == \"=>\" && $3 ~ /^\\// {{print $3}} $1 ~ /^\\// {{print $1}}' | sort -u); \
         tar -ch --exclude=test --exclude=__pycache__ --exclude=site-packages \
           --exclude=dist-packages -f - \"$py\" $libs /usr/lib/$v 2>/dev/null \
         | nsenter --target={pid} --all --root --wd -- /bin/sh -c \
           'tar -xf - -C / && ln -sf '\"$v\"' /usr/bin/python3'"
    );
    run_ok(Command::new("bash").arg("-c").arg(script));
    let out = in_sandbox(pid, "python3 -c 'import json, hashlib, shutil; print(42)'");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "python3 in the sandbox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run the real playbook (`tools/ansible/migrate.yml`, role `reroot`)
/// against `inventory`; returns (exit code, output).
fn playbook(work: &Path, inventory: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // No ansible.cfg of this machine's user applies.
    fs::write(work.join("ansible.cfg"), "[defaults]\n").unwrap();
    let out = Command::new("ansible-playbook")
        .arg("-i")
        .arg(inventory)
        .arg(root.join("tools/ansible/migrate.yml"))
        .args(extra)
        .env(
            "ANSIBLE_CONNECTION_PLUGINS",
            root.join("tools/ansible/sandbox/connection_plugins"),
        )
        .env("ANSIBLE_LOCAL_TEMP", work.join("ansible-local"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_CONFIG", work.join("ansible.cfg"))
        .output()
        .unwrap();
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn json_file(path: &Path) -> serde_json::Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The playbook moves a host for real: the host is a `reroot demo`
/// sandbox (busybox root on a loop device, PID 1 of private mount and PID
/// namespaces, services holding the root busy) reached through nsenter.
/// First a host whose target is not a block device is stopped at the
/// preflight, and the play stops before the next batch;
/// then `--check` gives the plan and changes nothing; then the real run
/// migrates, finishes and fetches the report. The sandbox's own view is the
/// oracle: `/` on the new device and writable, the data tree's hash
/// unchanged, the old filesystem released.
#[test]
fn ansible_playbook_moves_a_sandbox_host() {
    require_root!();
    require_tool!("ansible-playbook");
    require_tool!("nsenter");
    require_tool!("readelf");
    if let Err(e) = reroot::exec::demo::requirements() {
        panic!("the sandbox cannot be built here: {e}");
    }
    let dir = scratch();
    let out = dir.path().join("out");
    build_static(&out);
    let opts = reroot::exec::demo::RigOptions {
        parent: dir.path().to_path_buf(),
        keep: false,
        reroot_exe: out.join("reroot"),
        old_bytes: 256 << 20,
        new_bytes: 320 << 20,
        data_bytes: 4 << 20,
        scenario: format!("{}{ANSIBLE_SCENARIO}", reroot::exec::demo::SCENARIO_LIB),
        extra_tools: Vec::new(),
        churn_bytes_per_s: 0,
    };
    let rig = reroot::exec::demo::Rig::build(&opts, &mut |_| {}).expect("building the sandbox");
    let (old, new) = (rig.old.path().to_owned(), rig.new.path().to_owned());
    let new_devno = rig.new.devno();
    let reports = dir.path().join("reports");
    let (run, outcome) = std::thread::scope(|s| {
        let booted = s.spawn(|| {
            rig.boot(&[], Duration::from_secs(900), &mut |_| {}, &mut || None)
                .expect("booting the sandbox")
        });
        let t0 = std::time::Instant::now();
        let pid = loop {
            if let Some(pid) = sandbox_init(&old) {
                if in_sandbox(pid, "test -e /run/ansible-ready")
                    .status
                    .success()
                {
                    break pid;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120) && !booted.is_finished(),
                "the sandbox did not come up"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        // From here on, whatever happens, let the sandbox end.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bootstrap_python(pid);
            let inventory = dir.path().join("inventory.yml");
            // Hosts `(name, target)`, all of them the sandbox.
            let hosts = |hs: &[(&str, &Path)]| {
                let mut y = String::from("reroot:\n  hosts:\n");
                for (name, target) in hs {
                    y.push_str(&format!(
                        "    {name}:\n      ansible_connection: reroot_sandbox\n      \
                         reroot_sandbox_pid: {pid}\n      \
                         ansible_python_interpreter: /usr/bin/python3\n      \
                         ansible_become: false\n      ansible_remote_tmp: /run/ansible-tmp\n      \
                         reroot_source: {}\n      reroot_target: {}\n      reroot_grow: true\n",
                        old.display(),
                        target.display()
                    ));
                }
                y
            };
            let common = [
                "-e".to_owned(),
                format!("reroot_binary={}", out.join("reroot").display()),
                "-e".to_owned(),
                format!("reroot_report_dir={}", reports.display()),
                "-e".to_owned(),
                "reroot_poll_interval=2 reroot_finish_delay=2 reroot_release_timeout=20".to_owned(),
            ];
            let common: Vec<&str> = common.iter().map(String::as_str).collect();

            // A host whose target is not a block device stops at the
            // preflight, with check's blocker in the message; with one host
            // per batch and no failure allowed, the play ends there and the
            // next host is never reached.
            let zero = Path::new("/dev/zero");
            fs::write(&inventory, hosts(&[("blocked", zero), ("sandbox", &new)])).unwrap();
            let (rc, text) = playbook(dir.path(), &inventory, &common);
            assert_ne!(rc, Some(0), "{text}");
            assert!(text.contains("blocked: reroot cannot migrate"), "{text}");
            assert!(text.contains("not a block device"), "{text}");
            let recap = &text[text.find("PLAY RECAP").expect("no recap")..];
            assert!(
                recap.contains("blocked ") && recap.contains("failed=1"),
                "{recap}"
            );
            assert!(!recap.contains("sandbox "), "the second batch ran:\n{text}");
            assert!(reports.join("blocked/check.json").is_file());
            assert!(!reports.join("sandbox").exists());

            fs::write(&inventory, hosts(&[("sandbox", &new)])).unwrap();
            let mut check = common.clone();
            check.push("--check");
            let (rc, text) = playbook(dir.path(), &inventory, &check);
            assert_eq!(rc, Some(0), "--check:\n{text}");
            let plan = json_file(&reports.join("sandbox/plan.json"));
            assert!(
                plan["blockers"].as_array().is_some_and(|b| b.is_empty()),
                "{plan}"
            );
            assert!(plan["point_of_no_return"].is_string());
            // --check started nothing.
            let st = in_sandbox(pid, "reroot status --json");
            assert!(String::from_utf8_lossy(&st.stdout).contains("\"state\": \"none\""));

            let (rc, text) = playbook(dir.path(), &inventory, &common);
            assert_eq!(rc, Some(0), "the migration:\n{text}");
            let report = json_file(&reports.join("sandbox/migrate-report.json"));
            assert_eq!(report["state"], "done", "{report}");
            assert_eq!(report["target"], new.display().to_string());
            let finish = json_file(&reports.join("sandbox/finish.json"));
            assert_eq!(finish["unmounted"], true, "{finish}");
            text
        }));
        if let Some(pid) = sandbox_init(&old) {
            in_sandbox(pid, "touch /run/ansible-done");
        }
        (booted.join().expect("the boot thread"), outcome)
    });
    let cleanup = rig.cleanup();
    let text = match outcome {
        Ok(text) => text,
        Err(e) => {
            eprintln!("sandbox stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
            std::panic::resume_unwind(e)
        }
    };
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let before = reroot::exec::demo::Facts::parse(run.section("before").unwrap());
    let after = reroot::exec::demo::Facts::parse(run.section("after").unwrap());
    assert_eq!(after.root_dev(), Some(new_devno), "{text}");
    assert_ne!(before.root_dev(), after.root_dev());
    assert!(after.root_writable);
    assert_eq!(before.tree, after.tree);
    let old_name = old.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !after.ext4.contains(&old_name),
        "the old root is still mounted somewhere: {:?}",
        after.ext4
    );
    assert!(cleanup.left_behind.is_empty(), "{:?}", cleanup.left_behind);
}

/// `tools/build-static.sh --package` makes a Debian package (cargo-deb)
/// holding the static binary, the manual and the three completions; what
/// `dpkg-deb -x` unpacks runs, and its manual renders.
#[test]
fn deb_package_holds_binary_manual_and_completions() {
    require_tool!("cargo-deb");
    require_tool!("dpkg-deb");
    require_tool!("readelf");
    require_tool!("man");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("tools/build-static.sh"))
        .arg("--package")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-static.sh --package failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = fs::read_dir(root.join("target/static"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("no .deb in target/static");
    let info = run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package"));
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "reroot");
    let dir = scratch();
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.path()));
    let p = dir.path();
    for f in [
        "usr/sbin/reroot",
        "usr/share/man/man1/reroot.1.gz",
        "usr/share/bash-completion/completions/reroot",
        "usr/share/zsh/vendor-completions/_reroot",
        "usr/share/fish/vendor_completions.d/reroot.fish",
    ] {
        assert!(p.join(f).is_file(), "the package lacks {f}");
    }
    let v = run_ok(Command::new(p.join("usr/sbin/reroot")).arg("--version"));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("reroot "));
    let interp = run_ok(
        Command::new("readelf")
            .arg("-lW")
            .arg(p.join("usr/sbin/reroot")),
    );
    assert!(!String::from_utf8_lossy(&interp.stdout).contains("INTERP"));
    let man = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(p.join("usr/share/man/man1/reroot.1.gz"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(man.status.success() && man.stderr.is_empty());
    assert!(String::from_utf8_lossy(&man.stdout).contains("REROOT MIGRATE"));
    // The completion in the package is the binary's own.
    let bash = fs::read_to_string(p.join("usr/share/bash-completion/completions/reroot")).unwrap();
    assert_eq!(bash, generate("complete-bash"));
}

/// `ansible-lint --strict` finds nothing in the role and the playbook.
#[test]
fn ansible_role_is_lint_clean() {
    require_tool!("ansible-lint");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ansible");
    let out = Command::new("ansible-lint")
        .args(["--strict", "--nocolor"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ansible-lint:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
