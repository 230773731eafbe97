//! `reroot finish`: release and re-identify the old root, check fstab and
//! boot. Flags to [`FinishOptions`]; the report as text or JSON.

use std::path::PathBuf;

use reroot::exec::finish::{self, FinishOptions, FinishReport};
use reroot::exec::pivot;
use reroot::plan::finish::FstabVerdict;

use super::{CmdResult, Ctx, Exit, output};

/// Flags of `reroot finish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the old root is mounted after the pivot.
    #[arg(
        long,
        default_value = "/mnt/oldroot",
        value_name = "DIR",
        long_help = "Where `reroot pivot` put the old root. finish lists what still holds it \
(processes, other mount namespaces, mounts under it), unmounts it when nothing does (never \
lazily), and checks that the kernel released the filesystem."
    )]
    pub oldroot: PathBuf,
    /// Keep the old root's UUID and label (both disks then share them).
    #[arg(
        long,
        long_help = "Do not give the old filesystem a new UUID and the label `oldroot`. A block \
copy carries UUID and label, so with root=UUID=... or root=LABEL=... (or such fstab entries) a \
reboot may then mount either disk: only use this when the old disk is removed before a reboot."
    )]
    pub keep_old_identity: bool,
    /// Regenerate the initramfs and GRUB config and install GRUB on this disk.
    #[arg(
        long,
        value_name = "DEV",
        long_help = "Run what must be regenerated for the machine to boot from the new root: \
the initramfs (update-initramfs, dracut or mkinitcpio: LVM and md roots need one that can \
assemble them), `grub-install DEV`, and the GRUB config (update-grub or grub-mkconfig). \
Without it, finish only prints these commands."
    )]
    pub bootloader: Option<PathBuf>,
    /// On LVM, md or dm-crypt: do everything the next boot needs.
    #[arg(
        long,
        long_help = "When the new root is an LVM volume, an md array or a dm-crypt mapping \
(or a stack of them): write the arrays into mdadm.conf (mdadm --detail --scan), regenerate \
the initramfs of every installed kernel, regenerate the GRUB configuration and install GRUB \
on every disk the machine may boot from (the disks debconf's grub-pc/install_devices names, \
or those whose boot sector holds GRUB, and every disk under the new root: both halves of a \
RAID1), or on the ESP under UEFI. Stops at the first command that fails. Without it, finish \
prints exactly these commands. `reroot check --target DEV` says beforehand what is missing."
    )]
    pub boot: bool,
    /// The pivot's state directory.
    #[arg(
        long,
        default_value = pivot::STATE_DIR,
        value_name = "DIR",
        long_help = "Where `reroot pivot` left its state (which device the old root is on); \
the same as pivot's --state-dir."
    )]
    pub state_dir: PathBuf,
}

/// Run `reroot finish`.
pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let o = FinishOptions {
        put_old: args.oldroot,
        state_dir: args.state_dir,
        keep_old_identity: args.keep_old_identity,
        bootloader: args.bootloader,
        boot: args.boot,
    };
    let report = finish::finish(&o)?;
    if ctx.json {
        output::json(&report)?;
    } else {
        print_human(&report, &o);
    }
    match report.to_error() {
        None => Ok(Exit::Success),
        Some(e) if ctx.json => Ok(Exit::of(e.kind())),
        Some(e) => Err(e.into()),
    }
}

fn print_human(r: &FinishReport, o: &FinishOptions) {
    let dev = r
        .old_device
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "?".into());
    if !r.unmounted {
        println!("{} ({dev}) is still in use:", o.put_old.display());
        for g in &r.holders {
            println!(
                "  {:<28} pids {:?} ({})  {}",
                g.unit.as_deref().unwrap_or("-"),
                g.pids,
                g.comms.join(","),
                g.note
            );
        }
        for n in &r.namespaces {
            let at: Vec<String> = n
                .mounts
                .iter()
                .map(|m| m.mount_point.display().to_string())
                .collect();
            let units: Vec<String> = n.services.iter().map(|s| s.to_string()).collect();
            println!(
                "  mount namespace mnt:[{}] (pids {:?}, {}) has it at {}",
                n.ns,
                n.pids,
                units.join(", "),
                at.join(", ")
            );
        }
        for s in &r.submounts {
            println!("  mounted under it: {}", s.display());
        }
        return;
    }
    if r.nothing_left {
        println!(
            "nothing left to do: the old root ({dev}) is unmounted, released and re-identified \
             (UUID {}, label {:?})",
            r.old_identity_after.uuid.as_deref().unwrap_or("?"),
            r.old_identity_after.label.as_deref().unwrap_or("")
        );
        super::pivot::print_names(&r.names);
        return;
    }
    println!("unmounted the old root ({dev})");
    if r.released == Some(true) {
        println!("  the kernel released the filesystem");
    }
    let (b, a) = (&r.old_identity_before, &r.old_identity_after);
    if b.uuid != a.uuid || b.label != a.label {
        println!(
            "  old root re-identified: UUID {} -> {}, label {:?} -> {:?}",
            b.uuid.as_deref().unwrap_or("?"),
            a.uuid.as_deref().unwrap_or("?"),
            b.label.as_deref().unwrap_or(""),
            a.label.as_deref().unwrap_or("")
        );
    }
    match &r.fstab {
        Some(FstabVerdict::Ok { why }) => println!("/etc/fstab: ok ({why})"),
        Some(FstabVerdict::Fix {
            old_spec, new_spec, ..
        }) => println!(
            "/etc/fstab: root entry {old_spec} -> {new_spec} (backup {})",
            r.fstab_backup
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Some(FstabVerdict::Warn { why }) => println!("/etc/fstab: CHECK: {why}"),
        Some(FstabVerdict::NoRootEntry) => println!("/etc/fstab: no entry for /"),
        None => {}
    }
    if !r.boot.commands.is_empty() {
        println!(
            "{}",
            if r.boot_ran {
                "boot regeneration run:"
            } else {
                "to boot from the new root, run (or use --boot, or --bootloader DEV):"
            }
        );
        for c in &r.boot.commands {
            println!("  {}", c.join(" "));
        }
    }
    for n in &r.boot.notes {
        println!("note: {n}");
    }
    for c in r.commands.iter().filter(|c| !c.ok) {
        println!("FAILED: {}: {}", c.command, c.output);
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    super::pivot::print_names(&r.names);
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Args {
        let mut v = vec!["reroot", "finish"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Finish(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        assert_eq!(a.oldroot, PathBuf::from("/mnt/oldroot"));
        assert!(!a.keep_old_identity);
        assert!(a.bootloader.is_none());
        assert_eq!(a.state_dir, PathBuf::from("/run/reroot"));
    }

    #[test]
    fn oldroot_flag() {
        assert_eq!(parse(&["--oldroot", "/old"]).oldroot, PathBuf::from("/old"));
    }

    #[test]
    fn keep_old_identity_flag() {
        assert!(parse(&["--keep-old-identity"]).keep_old_identity);
    }

    #[test]
    fn boot_flag() {
        assert!(!parse(&[]).boot);
        assert!(parse(&["--boot"]).boot);
    }

    #[test]
    fn bootloader_flag() {
        assert_eq!(
            parse(&["--bootloader", "/dev/sdb"]).bootloader,
            Some(PathBuf::from("/dev/sdb"))
        );
        assert!(Cli::try_parse_from(["reroot", "finish", "--bootloader"]).is_err());
    }

    #[test]
    fn state_dir_flag() {
        assert_eq!(
            parse(&["--state-dir", "/run/x"]).state_dir,
            PathBuf::from("/run/x")
        );
    }
}
