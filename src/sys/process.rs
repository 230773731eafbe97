//! Process detachment: start a child in its own session (`setsid(2)`) with
//! `SIGHUP` ignored, so that a dropped SSH connection (hangup of the
//! controlling terminal, the shell's `SIGHUP` to its jobs) cannot kill it.
//!
//! Used by the pivot worker; the caller redirects stdio to a log file first.

use std::process::{Child, Command};

use crate::error::{Error, Result};

/// Spawn `cmd` as the leader of a new session with `SIGHUP` ignored. The
/// disposition "ignored" survives `execve(2)`, so it holds from the first
/// instruction of the new program: there is no window in which a hangup kills it.
pub fn spawn_detached(cmd: &mut Command) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setsid(2) and sigaction(2) (through nix), both async-signal-safe; it
    // allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGHUP,
                nix::sys::signal::SigHandler::SigIgn,
            )
            .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| Error::io(format!("starting {:?} detached", cmd.get_program()), e))
}

/// Ignore `SIGHUP` in this process (the worker does it again after a re-exec,
/// although the disposition is inherited, to not depend on how it was started).
pub fn ignore_sighup() -> Result<()> {
    // SAFETY: installing SIG_IGN has no handler code that could run
    // concurrently with anything; it only changes the disposition.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map(drop)
    .map_err(|e| Error::io("ignoring SIGHUP", std::io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_child_has_its_own_session_and_ignores_hup() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("kill -HUP $$; cat /proc/$$/stat");
        c.stdout(std::process::Stdio::piped());
        let child = spawn_detached(&mut c).unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        // It survived its own SIGHUP and exited normally.
        assert!(out.status.success(), "{:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        // Session id (field 6 of /proc/PID/stat) equals its pid: a session leader.
        let sid = text
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap();
        assert_eq!(sid, pid.to_string());
    }
}
