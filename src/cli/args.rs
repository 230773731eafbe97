//! The command line's syntax: the top-level [`Cli`], global flags and the
//! list of subcommands. Each subcommand's own flags live in its module
//! (`cli/<command>.rs`) next to the code that turns them into library options.

use clap::{Parser, Subcommand};

use super::generate::Generate;
use super::{bench, check, copy, demo, finish, grow, map, migrate, pivot, quiesce, status, verify};

/// Move a running Linux root filesystem to another block device, without a reboot.
#[derive(Debug, Parser)]
#[command(
    name = "reroot",
    version,
    arg_required_else_help = true,
    about,
    long_about = "Move a running Linux root filesystem to another block device without a \
reboot: into LVM or md RAID, onto a bigger disk, or into another filesystem type.\n\n\
reroot replaces the manual procedure (hunt what keeps / busy, remount read-only, dd, \
resize2fs, pivot_root, move mounts back, restart services) with checked, verified, \
resumable stages. Start with `reroot demo` to watch a whole migration in a sandbox, or \
`reroot check` to see what stands in the way on this machine.",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 refused/not ready, 4 verify mismatch, \
5 I/O error, 6 filesystem corrupt/unsupported, 7 external tool, 8 busy, 130 interrupted."
)]
pub struct Cli {
    /// Global flags.
    #[command(flatten)]
    pub global: Global,
    /// Print the manual page or a shell completion script, and exit.
    #[arg(
        long,
        value_name = "WHAT",
        value_enum,
        long_help = "Print the manual page (`man`: roff for reroot(1), every subcommand with its \
options) or a shell completion script (`complete-bash`, `complete-zsh`, `complete-fish`) on \
stdout, and exit. For example: `reroot --generate man > /usr/local/share/man/man1/reroot.1`, \
`reroot --generate complete-bash > /etc/bash_completion.d/reroot`."
    )]
    pub generate: Option<Generate>,
    /// What to do (required unless --generate).
    #[command(subcommand)]
    pub command: Command,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// `--generate WHAT`: print it and exit, no command.
    Generate(Generate),
    /// A command.
    Run(Box<Cli>),
}

/// Parse `args` (the program name first). `--generate` stands alone, so the
/// subcommand is optional to clap and required here.
pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command().subcommand_required(false);
    let m = cmd.try_get_matches_from_mut(args)?;
    match (m.get_one::<Generate>("generate"), m.subcommand_name()) {
        (Some(g), None) => Ok(Parsed::Generate(*g)),
        (Some(_), Some(_)) => {
            Err(cmd.error(ErrorKind::ArgumentConflict, "--generate takes no command"))
        }
        (None, None) => Err(cmd.error(
            ErrorKind::MissingSubcommand,
            "a command is required (see --help)",
        )),
        (None, Some(_)) => Ok(Parsed::Run(Box::new(Cli::from_arg_matches(&m)?))),
    }
}

/// Flags every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Print the result as JSON on stdout.
    #[arg(
        long,
        global = true,
        long_help = "Print the result as one JSON document on stdout (errors too, as \
{\"error\": {...}}). Progress and warnings still go to stderr."
    )]
    pub json: bool,
    /// Show no progress, only warnings and errors.
    #[arg(
        long,
        short,
        global = true,
        long_help = "Show no progress bar or progress lines on stderr; warnings and errors \
are still printed."
    )]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an ext2/3/4 filesystem's geometry and used byte ranges.
    Map(map::Args),
    /// Copy the used blocks of SRC to one or more targets, xxh3-verified.
    Copy(copy::Args),
    /// Compare the used blocks of SRC and DST by hash, writing nothing.
    Verify(verify::Args),
    /// Preflight: what keeps the root busy, and is the target fit.
    Check(check::Args),
    /// Stop what keeps the root busy and remount it read-only.
    Quiesce(quiesce::Args),
    /// Undo `quiesce`: remount read-write, swap on, restart services.
    ResumeServices(quiesce::ResumeArgs),
    /// Grow the filesystem on DEV to fill the device (e2fsck, then resize2fs).
    #[command(long_about = grow::LONG_ABOUT)]
    Grow(grow::Args),
    /// Switch the running system to the root on NEWDEV.
    Pivot(pivot::Args),
    /// After the pivot: release and relabel the old root, check fstab and boot.
    Finish(finish::Args),
    /// The whole move: check, quiesce, copy, verify, grow, pivot, finish.
    Migrate(migrate::Args),
    /// Show the progress and log of a running or finished migration.
    Status(status::Args),
    /// Benchmark copy strategies on your own devices.
    Bench(bench::Args),
    /// Run a whole migration in a sandbox (loop devices, private namespaces).
    Demo(demo::Args),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_parse_after_the_subcommand() {
        let cli = Cli::try_parse_from(["reroot", "map", "/dev/x", "--json", "-q"]).unwrap();
        assert!(cli.global.json);
        assert!(cli.global.quiet);
    }

    #[test]
    fn generate_flag_stands_alone() {
        assert!(matches!(
            parse_from(["reroot", "--generate", "man"]),
            Ok(Parsed::Generate(Generate::Man))
        ));
        assert!(matches!(
            parse_from(["reroot", "map", "/dev/x"]),
            Ok(Parsed::Run(c)) if c.generate.is_none() && matches!(c.command, Command::Map(_))
        ));
        let kind = |args: &[&str]| parse_from(args).err().map(|e| e.kind());
        use clap::error::ErrorKind;
        assert_eq!(
            kind(&["reroot", "--generate", "nope"]),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            kind(&["reroot", "--generate", "man", "status"]),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            kind(&["reroot", "--json"]),
            Some(ErrorKind::MissingSubcommand)
        );
        assert_eq!(
            kind(&["reroot"]),
            Some(ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)
        );
    }
}
