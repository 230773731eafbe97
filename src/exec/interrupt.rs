//! Ctrl-C, `SIGTERM` and `SIGHUP` turned into a clean stop: [`Interrupts`]
//! blocks them and reads them from a signalfd, so a long operation (the
//! demo's sandbox, a copy's pipeline) polls for them, finishes what is in
//! flight, releases its devices and reports how far it got (exit code 130).
//!
//! Imports nothing from reroot; uses nix's safe signal wrappers.

/// Ctrl-C, `SIGTERM` and `SIGHUP`, caught for as long as this lives: they
/// are blocked in this thread (and the threads it starts) and read from a
/// signalfd, so the demo can end the sandbox and clean up in order. Child
/// processes start with an empty signal mask (std resets it).
#[derive(Debug)]
pub struct Interrupts {
    mask: nix::sys::signal::SigSet,
    fd: Option<nix::sys::signalfd::SignalFd>,
}

impl Interrupts {
    /// Start catching.
    pub fn catch() -> Self {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            mask.add(s);
        }
        let fd = mask.thread_block().ok().and_then(|()| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
        });
        Self { mask, fd }
    }

    /// The signal that came, if one did.
    pub fn poll(&self) -> Option<String> {
        let info = self.fd.as_ref()?.read_signal().ok()??;
        let name = i32::try_from(info.ssi_signo)
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
            .map_or_else(|| info.ssi_signo.to_string(), |s| s.as_str().to_owned());
        Some(format!("interrupted by {name}"))
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.fd = None;
        let _ = self.mask.thread_unblock();
    }
}
