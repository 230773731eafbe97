//! What ships beside the binary: the manual page and shell completions
//! (`reroot --generate`), checked with the real tools (man/groff, bash,
//! zsh, fish); the static binary (`tools/build-static.sh`) run in an empty
//! chroot; the Ansible role (`tools/ansible/`) linted and run end to end
//! against a sandbox host.

use std::fs;
use std::path::Path;
use std::process::Command;

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("tools/build-static.sh"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-static.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // It prints the sha256 line, and the file beside it checks.
    let sum = String::from_utf8_lossy(&built.stdout);
    assert!(sum.trim_end().ends_with("  reroot"), "{sum}");
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("reroot.sha256")
            .current_dir(&out),
    );
    // Stripped.
    let syms = run_ok(
        Command::new("readelf")
            .args(["-SW"])
            .arg(out.join("reroot")),
    );
    assert!(!String::from_utf8_lossy(&syms.stdout).contains(".symtab"));

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
