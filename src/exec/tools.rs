//! The external programs reroot drives (e2fsprogs, xfsprogs, btrfs-progs):
//! find them, check they are new enough, say how to install them, and run
//! them collecting their output.
//!
//! Imports `error` only. Nothing here parses a tool's progress; the stage
//! that runs a tool does.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

/// A dotted version number (`1.47.0`, `6.2`); serialized as `"1.47.0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// First component.
    pub major: u32,
    /// Second component.
    pub minor: u32,
    /// Third component (0 when absent).
    pub patch: u32,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parse `1.47.0`, `v6.2`, `4.3`; trailing text after the digits of a
    /// component (`1.47.0-rc1`) is ignored.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A program reroot needs, and the oldest version that does the job right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// Program name.
    pub tool: &'static str,
    /// The package that ships it (same name on Debian, Fedora, SUSE, Arch).
    pub package: &'static str,
    /// Alpine splits some tools into another package.
    pub alpine_package: &'static str,
    /// Arguments that make it print its version (it may exit non-zero).
    pub version_args: &'static [&'static str],
    /// The name that precedes the version in that output.
    pub version_name: &'static str,
    /// Oldest accepted version.
    pub min: Version,
    /// Why that minimum.
    pub why: &'static str,
}

/// e2fsprogs 1.43 is the first that checks, resizes and re-UUIDs
/// metadata_csum filesystems correctly (the Debian/Ubuntu default since 2016).
const E2FS_MIN: Version = Version::new(1, 43, 0);
const E2FS_WHY: &str = "metadata_csum support";

/// `e2fsck`.
pub const E2FSCK: Requirement = Requirement {
    tool: "e2fsck",
    package: "e2fsprogs",
    alpine_package: "e2fsprogs",
    version_args: &["-V"],
    version_name: "e2fsck",
    min: E2FS_MIN,
    why: E2FS_WHY,
};

/// `resize2fs` (prints its version before the usage when given no arguments).
pub const RESIZE2FS: Requirement = Requirement {
    tool: "resize2fs",
    package: "e2fsprogs",
    alpine_package: "e2fsprogs-extra",
    version_args: &[],
    version_name: "resize2fs",
    min: E2FS_MIN,
    why: E2FS_WHY,
};

/// `tune2fs` (prints its version after the usage when given no arguments).
pub const TUNE2FS: Requirement = Requirement {
    tool: "tune2fs",
    package: "e2fsprogs",
    alpine_package: "e2fsprogs-extra",
    version_args: &[],
    version_name: "tune2fs",
    min: E2FS_MIN,
    why: E2FS_WHY,
};

/// `xfs_growfs`: 3.2 handles v5 (CRC) filesystems, the mkfs.xfs default since.
pub const XFS_GROWFS: Requirement = Requirement {
    tool: "xfs_growfs",
    package: "xfsprogs",
    alpine_package: "xfsprogs-extra",
    version_args: &["-V"],
    version_name: "xfs_growfs",
    min: Version::new(3, 2, 0),
    why: "v5 (CRC) filesystems",
};

/// `xfs_admin`: 4.3 can change the UUID of a v5 filesystem (meta_uuid).
pub const XFS_ADMIN: Requirement = Requirement {
    tool: "xfs_admin",
    package: "xfsprogs",
    alpine_package: "xfsprogs-extra",
    version_args: &["-V"],
    version_name: "xfs_admin",
    min: Version::new(4, 3, 0),
    why: "changing the UUID of v5 filesystems",
};

/// `btrfs` (`filesystem resize`): any 4.x resizes one device by devid.
pub const BTRFS: Requirement = Requirement {
    tool: "btrfs",
    package: "btrfs-progs",
    alpine_package: "btrfs-progs",
    version_args: &["--version"],
    version_name: "btrfs-progs",
    min: Version::new(4, 1, 0),
    why: "`filesystem resize devid:max`",
};

/// `btrfstune -u` (4.1 added it). It prints no version; `btrfs` from the
/// same package is checked instead.
pub const BTRFSTUNE: Requirement = Requirement {
    tool: "btrfstune",
    package: "btrfs-progs",
    alpine_package: "btrfs-progs",
    version_args: &[],
    version_name: "",
    min: Version::new(4, 1, 0),
    why: "`btrfstune -u`",
};

/// A located, checked program.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tool {
    /// Program name.
    pub name: &'static str,
    /// Absolute path.
    pub path: PathBuf,
    /// Version found (`None` when the tool prints none; see [`BTRFSTUNE`]).
    pub version: Option<Version>,
}

impl Tool {
    /// A command running this tool.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }
}

/// Directories searched besides `$PATH`: sudo and cron often drop the sbin ones.
const EXTRA_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

/// The first executable `name` in `$PATH` or the sbin directories.
pub fn find(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The version printed after `name` in a tool's output (`e2fsck 1.47.0 (...)`,
/// `xfs_growfs version 6.1.0`, `btrfs-progs v6.2`).
pub fn parse_version(output: &str, name: &str) -> Option<Version> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.find_map(Version::parse)
    })
}

/// How to install `req`'s package.
pub fn install_hint(req: &Requirement) -> String {
    let p = req.package;
    let alpine = if req.alpine_package == p {
        format!("apk add {p}")
    } else {
        format!("apk add {p} {}", req.alpine_package)
    };
    format!(
        "install {p}: `apt install {p}` (Debian/Ubuntu), `dnf install {p}` (Fedora/RHEL), \
`zypper install {p}`, `pacman -S {p}`, or `{alpine}` (Alpine)"
    )
}

/// Find `req`'s tool and check its version.
pub fn locate(req: &Requirement) -> Result<Tool> {
    let path = find(req.tool).ok_or_else(|| {
        Error::tool(format!("`{}` is not installed", req.tool)).hint(install_hint(req))
    })?;
    let version = if req.version_name.is_empty() {
        None
    } else {
        let out = Command::new(&path)
            .args(req.version_args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", path.display()), e))?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = parse_version(&text, req.version_name).ok_or_else(|| {
            Error::tool(format!(
                "cannot tell the version of {} (it printed: {})",
                path.display(),
                tail(&text, 2)
            ))
            .hint(install_hint(req))
        })?;
        if v < req.min {
            return Err(Error::tool(format!(
                "{} is version {v}; reroot needs {} {} or newer ({})",
                path.display(),
                req.package,
                req.min,
                req.why
            ))
            .hint(install_hint(req)));
        }
        Some(v)
    };
    Ok(Tool {
        name: req.tool,
        path,
        version,
    })
}

/// Locate every requirement, reporting all missing or old tools at once.
pub fn locate_all(reqs: &[Requirement]) -> Result<Vec<Tool>> {
    let mut tools = Vec::new();
    let mut problems = Vec::new();
    let mut hints = Vec::new();
    for r in reqs {
        match locate(r) {
            Ok(t) => tools.push(t),
            Err(e) => {
                problems.push(e.kind().to_string());
                let h = install_hint(r);
                if !hints.contains(&h) {
                    hints.push(h);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(tools)
    } else {
        Err(Error::tool(problems.join("; ")).hint(hints.join("; ")))
    }
}

/// What a finished tool printed.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

impl ToolOutput {
    /// The last `n` non-empty lines of stderr, else of stdout, for messages.
    pub fn last_lines(&self, n: usize) -> String {
        let s = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        tail(s, n)
    }
}

impl ToolOutput {
    /// The last `n` non-empty lines of stdout followed by stderr: tools like
    /// e2fsck name the problem on one and the verdict on the other.
    pub fn said(&self, n: usize) -> String {
        tail(&format!("{}\n{}", self.stdout, self.stderr), n)
    }
}

/// The last `n` non-empty lines of `s`, joined with " / ".
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Describe a command for messages: `resize2fs -p /dev/loop3`.
pub fn describe(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program())
        .file_name()
        .map_or_else(
            || cmd.get_program().to_string_lossy(),
            |n| n.to_string_lossy(),
        )
        .into_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    if args.is_empty() {
        prog
    } else {
        format!("{prog} {}", args.join(" "))
    }
}

/// Run `cmd` with stdin closed, handing its stdout to `on_stdout` chunk by
/// chunk as it arrives (progress parsing) while stderr is collected on a
/// helper thread. Returns everything it printed once it has exited.
pub fn run_streaming(cmd: &mut Command, mut on_stdout: impl FnMut(&[u8])) -> Result<ToolOutput> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {what}"), e))?;
    let mut stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    on_stdout(chunk);
                    stdout.extend_from_slice(chunk);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {what}"), e))?;
    let stderr = err_thread.join().unwrap_or_default();
    Ok(ToolOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Run `cmd` to the end and collect its output.
pub fn run(cmd: &mut Command) -> Result<ToolOutput> {
    run_streaming(cmd, |_| {})
}

/// Run `cmd`; any exit status but 0 is an [`ErrorKind::Tool`](crate::ErrorKind::Tool)
/// error quoting what it printed.
pub fn run_ok(cmd: &mut Command) -> Result<ToolOutput> {
    let what = describe(cmd);
    let out = run(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::tool(format!(
            "`{what}` failed ({}): {}",
            out.status,
            out.last_lines(4)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_real_outputs() {
        let e2 = "e2fsck 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0, 5-Feb-2023\n";
        assert_eq!(parse_version(e2, "e2fsck"), Some(Version::new(1, 47, 0)));
        let tune = "Usage: tune2fs [-c max_mounts_count]\n\t[-r reserved_blocks_count]\ntune2fs 1.46.5 (30-Dec-2021)\n";
        assert_eq!(parse_version(tune, "tune2fs"), Some(Version::new(1, 46, 5)));
        assert_eq!(
            parse_version("xfs_growfs version 6.1.0\n", "xfs_growfs"),
            Some(Version::new(6, 1, 0))
        );
        assert_eq!(
            parse_version("btrfs-progs v6.2\n", "btrfs-progs"),
            Some(Version::new(6, 2, 0))
        );
        assert_eq!(
            parse_version("btrfs-progs v6.6.3\n-EXPERIMENTAL -INJECT\n", "btrfs-progs"),
            Some(Version::new(6, 6, 3))
        );
        assert_eq!(
            parse_version("resize2fs: no version here", "resize2fs"),
            None
        );
        assert_eq!(Version::parse("1.47.0-rc1"), Some(Version::new(1, 47, 0)));
        assert_eq!(Version::parse("abc"), None);
        assert!(Version::new(1, 42, 13) < E2FS_MIN);
    }

    #[test]
    fn missing_tools_say_how_to_install() {
        let req = Requirement {
            tool: "reroot-no-such-tool",
            ..RESIZE2FS
        };
        let e = locate(&req).unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Tool(_)));
        let hint = e.hint_text().unwrap();
        assert!(hint.contains("apt install e2fsprogs"), "{hint}");
        assert!(hint.contains("e2fsprogs-extra"), "{hint}");
        let e = locate_all(&[req, req]).unwrap_err();
        assert_eq!(e.hint_text().unwrap().matches("apt install").count(), 1);
    }

    #[test]
    fn old_versions_are_refused() {
        // `sh -c 'echo ...'` stands in for an old tool printing its version.
        let req = Requirement {
            tool: "sh",
            version_args: &["-c", "echo e2fsck 1.42.9 '(28-Dec-2013)'"],
            version_name: "e2fsck",
            ..E2FSCK
        };
        let e = locate(&req).unwrap_err();
        assert!(e.to_string().contains("1.42.9"), "{e}");
        assert!(e.to_string().contains("1.43.0 or newer"), "{e}");
        let ok = Requirement {
            version_args: &["-c", "echo e2fsck 1.47.2"],
            ..req
        };
        assert_eq!(locate(&ok).unwrap().version, Some(Version::new(1, 47, 2)));
    }

    #[test]
    fn run_collects_and_streams() {
        let mut seen = Vec::new();
        let out = run_streaming(
            Command::new("sh").args(["-c", "printf abc; echo oops >&2; exit 3"]),
            |c| seen.extend_from_slice(c),
        )
        .unwrap();
        assert_eq!(seen, b"abc");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.last_lines(1), "oops");
        let e = run_ok(Command::new("sh").args(["-c", "echo bad >&2; exit 1"])).unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        assert_eq!(tail("a\n\nb\nc\n", 2), "b / c");
    }
}
