//! Driving e2fsprogs: `e2fsck -f -p` and `resize2fs -p`, their progress
//! turned into `Percent` [`Event`](super::event::Event)s, and e2fsck's exit
//! code into an outcome or a typed error.
//!
//! e2fsck gets `-C FD` with FD the write end of a pipe: it then writes one
//! machine-readable line per step (`pass current max device`), where `-C 0`
//! would draw a terminal bar without the pass. resize2fs `-p` prints, per
//! pass, a label, 40 dashes, 40 backspaces and then up to 40 `X`s.
//! Imports `error`, `exec::tools`, `exec::event`.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Instant;

use super::event::{EventSink, Unit};
use super::tools::{self, Tool, ToolOutput};
use crate::error::{Error, ErrorKind, Result, Stage};

/// How e2fsck left the filesystem (exit codes 0 to 3; worse ones are errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsckVerdict {
    /// Exit 0: nothing to fix.
    Clean,
    /// Exit 1: errors were found and corrected.
    Corrected,
    /// Exit 2 or 3: corrected, and the system "should be rebooted" (only
    /// meaningful for a mounted root; reported, not fatal).
    RebootAdvised,
}

/// What an `e2fsck -f -p` run found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FsckOutcome {
    /// e2fsck's exit code.
    pub exit_code: i32,
    /// What it means.
    pub verdict: FsckVerdict,
    /// e2fsck's last lines (its one-line summary in preen mode).
    pub summary: String,
}

/// Where each e2fsck pass ends, in percent of the whole check: e2fsck's own
/// weights (`e2fsck_tbl` in e2fsck/unix.c): pass 1 is 70 % of the work.
const E2FSCK_PASS_END: [u64; 6] = [0, 70, 90, 92, 95, 100];

/// One line of `e2fsck -C FD` output (`2 350 699 /dev/loop0`) as overall percent.
pub fn e2fsck_percent(line: &str) -> Option<u64> {
    let mut w = line.split_whitespace();
    let pass: usize = w.next()?.parse().ok()?;
    let cur: u64 = w.next()?.parse().ok()?;
    let max: u64 = w.next()?.parse().ok()?;
    let start = *E2FSCK_PASS_END.get(pass.checked_sub(1)?)?;
    let end = *E2FSCK_PASS_END.get(pass)?;
    let within = (end - start)
        .checked_mul(cur.min(max))?
        .checked_div(max)
        .unwrap_or(0);
    Some(start + within)
}

/// Turn e2fsck's exit status into a verdict or an error. A copy that e2fsck
/// cannot repair in preen mode is a bad copy: that is [`ErrorKind::Corrupt`],
/// and nothing may write to it afterwards.
pub fn judge_e2fsck(dev: &Path, status: ExitStatus, out: &ToolOutput) -> Result<FsckVerdict> {
    let said = out.said(3);
    let Some(code) = status.code() else {
        return Err(Error::new(ErrorKind::Interrupted(format!(
            "e2fsck was killed ({status})"
        ))));
    };
    let err = match code {
        0 => return Ok(FsckVerdict::Clean),
        1 => return Ok(FsckVerdict::Corrected),
        2 | 3 => return Ok(FsckVerdict::RebootAdvised),
        c if c & 32 != 0 => Error::new(ErrorKind::Interrupted(format!(
            "e2fsck was cancelled (exit {c})"
        ))),
        c if c & 4 != 0 => Error::corrupt(format!(
            "e2fsck found errors it may not fix unattended (exit {c}): {said}"
        ))
        .hint(format!(
            "a fresh copy should be clean, so this copy is bad and resize2fs did not run: do not \
use it. Check the source (`e2fsck -fn SOURCE`), then copy again; inspect the copy with \
`e2fsck -fn {}`",
            dev.display()
        )),
        c => Error::tool(format!("e2fsck failed (exit {c}): {said}")),
    };
    Err(err.device(dev))
}

/// Run `e2fsck -f -p -C FD DEV`, reporting progress as phase `fsck`.
pub fn e2fsck_preen(tool: &Tool, dev: &Path, sink: &EventSink) -> Result<FsckOutcome> {
    let io =
        |what: &str, e: nix::Error| Error::io(what, std::io::Error::from(e)).stage(Stage::Grow);
    // The read end stays ours (close-on-exec); e2fsck inherits a dup of the
    // write end, which has no close-on-exec flag.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("creating the progress pipe", e))?;
    let child_wr = nix::unistd::dup(&wr).map_err(|e| io("duplicating the progress pipe", e))?;
    drop(wr);
    let mut cmd = tool.command();
    cmd.args(["-f", "-p", "-C"])
        .arg(child_wr.as_raw_fd().to_string())
        .arg(dev);

    let started = Instant::now();
    sink.phase("fsck", Some(100), Unit::Percent);
    let progress_sink = sink.clone();
    let reader = std::thread::spawn(move || {
        let mut last = 0;
        for line in BufReader::new(std::fs::File::from(rd)).lines() {
            let Ok(line) = line else { break };
            if let Some(p) = e2fsck_percent(&line) {
                if p > last {
                    last = p;
                    progress_sink.progress(p);
                }
            }
        }
        last
    });
    let result = tools::run(&mut cmd);
    drop(child_wr); // now the reader sees EOF once e2fsck has exited
    let last = reader.join().unwrap_or(0);
    let out = result.map_err(|e| e.stage(Stage::Grow).device(dev))?;
    sink.phase_end("fsck", last, started.elapsed());
    let verdict = judge_e2fsck(dev, out.status, &out).map_err(|e| e.stage(Stage::Grow))?;
    let summary = tools::tail(&out.stdout, 2);
    match verdict {
        FsckVerdict::Clean => {}
        FsckVerdict::Corrected => sink.warn(format!(
            "e2fsck corrected errors on {}: {}",
            dev.display(),
            out.last_lines(3)
        )),
        FsckVerdict::RebootAdvised => sink.warn(format!(
            "e2fsck corrected errors on {} and advises a reboot (exit {}): {}",
            dev.display(),
            out.status.code().unwrap_or(-1),
            out.last_lines(3)
        )),
    }
    Ok(FsckOutcome {
        exit_code: out.status.code().unwrap_or(-1),
        verdict,
        summary,
    })
}

/// What the resize2fs progress parser saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizeProgress {
    /// A pass began (`Begin pass 2 (max = 1527)`, label `Relocating blocks`).
    Pass {
        /// Pass number, 1 to 5.
        pass: u32,
        /// What the pass does.
        label: String,
    },
    /// Overall percent, counting the five possible passes equally.
    Percent(u64),
}

/// Incremental parser of `resize2fs -p` stdout; feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct ResizeParser {
    line: Vec<u8>,
    pass: Option<u32>,
    label_done: bool,
    xs: u64,
    last_percent: u64,
}

/// resize2fs's passes (`E2_RSZ_*_PASS`) and the width of its bar.
const RESIZE_PASSES: u64 = 5;
const RESIZE_BAR: u64 = 40;

impl ResizeParser {
    /// A fresh parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume `bytes`; returns what they revealed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ResizeProgress> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => {
                    self.end_line(&mut out);
                }
                b'-' | 0x08 if self.pass.is_some() => {
                    if !self.label_done {
                        self.label_done = true;
                        let label = String::from_utf8_lossy(&self.line).trim().to_owned();
                        if let Some(pass) = self.pass {
                            out.push(ResizeProgress::Pass { pass, label });
                        }
                    }
                }
                b'X' if self.label_done => {
                    self.xs = (self.xs + 1).min(RESIZE_BAR);
                    self.push_percent(&mut out);
                }
                _ => {
                    if !self.label_done {
                        self.line.push(b);
                    }
                }
            }
        }
        out
    }

    fn push_percent(&mut self, out: &mut Vec<ResizeProgress>) {
        let pass = u64::from(self.pass.unwrap_or(1)).clamp(1, RESIZE_PASSES);
        let p = ((pass - 1) * 100 + self.xs * 100 / RESIZE_BAR) / RESIZE_PASSES;
        if p > self.last_percent {
            self.last_percent = p;
            out.push(ResizeProgress::Percent(p));
        }
    }

    fn end_line(&mut self, out: &mut Vec<ResizeProgress>) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if self.label_done {
            // The bar of a pass ended.
            self.pass = None;
            self.label_done = false;
            self.xs = 0;
        } else if let Some(rest) = text.trim().strip_prefix("Begin pass ") {
            let n = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            self.pass = n;
            self.xs = 0;
            if n.is_some() {
                self.push_percent(out);
            }
        }
        self.line.clear();
    }
}

/// Run `resize2fs -p DEV [BLOCKS]`, reporting progress as phase `resize`.
pub fn resize2fs(tool: &Tool, dev: &Path, blocks: Option<u64>, sink: &EventSink) -> Result<()> {
    let mut cmd = tool.command();
    cmd.arg("-p").arg(dev);
    if let Some(b) = blocks {
        cmd.arg(b.to_string());
    }
    let what = tools::describe(&cmd);
    let started = Instant::now();
    sink.phase("resize", Some(100), Unit::Percent);
    let mut parser = ResizeParser::new();
    let out = tools::run_streaming(&mut cmd, |chunk| {
        for ev in parser.feed(chunk) {
            match ev {
                ResizeProgress::Pass { pass, label } => {
                    sink.info(format!("resize2fs pass {pass}: {label}"));
                }
                ResizeProgress::Percent(p) => sink.progress(p),
            }
        }
    })
    .map_err(|e| e.stage(Stage::Grow).device(dev))?;
    if !out.status.success() {
        return Err(Error::tool(format!(
            "`{what}` failed ({}): {}",
            out.status,
            out.last_lines(3)
        ))
        .stage(Stage::Grow)
        .device(dev)
        .hint("the filesystem was checked clean before; run the same command by hand to see all it says"));
    }
    sink.progress(100);
    sink.phase_end("resize", 100, started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn e2fsck_progress_fixture_is_monotonic_and_complete() {
        // Real `e2fsck -f -p -C 3` output (passes 2 and 3 thinned out).
        let text = include_str!("testdata/e2fsck-C-fd.txt");
        let ps: Vec<u64> = text.lines().filter_map(e2fsck_percent).collect();
        assert_eq!(ps.len(), text.lines().count(), "every line parses");
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
        assert_eq!(ps.first(), Some(&0));
        assert_eq!(ps.last(), Some(&100));
        assert_eq!(e2fsck_percent("2 0 699 /dev/loop0"), Some(70));
        assert_eq!(e2fsck_percent("1 4 8 /dev/loop0"), Some(35));
        assert_eq!(e2fsck_percent("3 5 0 /dev/x"), Some(90));
    }

    #[test]
    fn e2fsck_progress_rejects_garbage() {
        for l in [
            "",
            "/dev/loop0: clean",
            "0 1 2 x",
            "6 1 2 x",
            "1 a 2",
            "1 2",
            "99999999999999999999 1 1",
        ] {
            assert_eq!(e2fsck_percent(l), None, "{l:?}");
        }
        assert_eq!(e2fsck_percent("1 9 8 x"), Some(70), "cur > max is clamped");
        assert_eq!(
            e2fsck_percent(&format!("1 {} {} x", u64::MAX, u64::MAX)),
            None
        );
    }

    #[test]
    fn resize_progress_fixture() {
        // Real `resize2fs -p` output of a grow that relocated blocks.
        let bytes = include_bytes!("testdata/resize2fs-p.txt");
        let mut p = ResizeParser::new();
        let evs = p.feed(bytes);
        let passes: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                ResizeProgress::Pass { pass, label } => Some((*pass, label.as_str())),
                ResizeProgress::Percent(_) => None,
            })
            .collect();
        assert_eq!(
            passes,
            [
                (2, "Relocating blocks"),
                (3, "Scanning inode table"),
                (5, "Moving inode table")
            ]
        );
        let pcts: Vec<u64> = evs
            .iter()
            .filter_map(|e| match e {
                ResizeProgress::Percent(p) => Some(*p),
                ResizeProgress::Pass { .. } => None,
            })
            .collect();
        assert!(pcts.windows(2).all(|w| w[0] < w[1]), "{pcts:?}");
        assert_eq!(pcts.last(), Some(&100));
        assert_eq!(pcts.first(), Some(&20), "pass 2 starts at 20 %");
    }

    #[test]
    fn resize_parser_handles_split_chunks_and_plain_output() {
        let bytes = include_bytes!("testdata/resize2fs-p.txt");
        let mut whole = ResizeParser::new();
        let expected = whole.feed(bytes);
        let mut split = ResizeParser::new();
        let got: Vec<_> = bytes.chunks(7).flat_map(|c| split.feed(c)).collect();
        assert_eq!(got, expected);
        let mut quiet = ResizeParser::new();
        let plain = b"Resizing the filesystem on /dev/loop0 to 131072 (4k) blocks.\n\
The filesystem on /dev/loop0 is now 131072 (4k) blocks long.\n\n";
        assert!(quiet.feed(plain).is_empty());
        assert!(
            ResizeParser::new()
                .feed(b"XXXX---\x08\x08Begin pass x\n")
                .is_empty()
        );
    }

    fn out(stdout: &str, stderr: &str) -> ToolOutput {
        ToolOutput {
            status: ExitStatus::from_raw(0),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn e2fsck_exit_codes() {
        let dev = Path::new("/dev/loop9");
        // Real e2fsck -p output: the problem on stdout, the verdict on stderr.
        let o = out(
            "/dev/loop9: Root inode is not a directory.  ",
            "\n\n/dev/loop9: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n\t(i.e., without -a or -p options)\n",
        );
        let st = |c: i32| ExitStatus::from_raw(c << 8);
        assert_eq!(judge_e2fsck(dev, st(0), &o).unwrap(), FsckVerdict::Clean);
        assert_eq!(
            judge_e2fsck(dev, st(1), &o).unwrap(),
            FsckVerdict::Corrected
        );
        assert_eq!(
            judge_e2fsck(dev, st(3), &o).unwrap(),
            FsckVerdict::RebootAdvised
        );
        let e = judge_e2fsck(dev, st(4), &o).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
        assert!(e.to_string().contains("UNEXPECTED INCONSISTENCY"), "{e}");
        assert!(
            e.to_string().contains("Root inode is not a directory"),
            "{e}"
        );
        assert!(e.hint_text().unwrap().contains("copy again"));
        let e = judge_e2fsck(dev, st(8), &o).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Tool(_)), "{e}");
        let e = judge_e2fsck(dev, st(12), &o).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
        let e = judge_e2fsck(dev, st(32), &o).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Interrupted(_)), "{e}");
        let e = judge_e2fsck(dev, ExitStatus::from_raw(9), &o).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Interrupted(_)), "{e}");
    }
}
