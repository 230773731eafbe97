//! The binary's command-line layer: clap definitions ([`args`]), one module
//! per subcommand that turns flags into library options and shows the result,
//! and the exit codes ([`exit`]). No clap type enters the library, and this
//! layer never touches `reroot::sys`.

mod args;
mod bench;
mod check;
mod copy;
mod demo;
mod exit;
mod finish;
mod generate;
mod grow;
mod map;
mod migrate;
mod output;
mod pivot;
mod quiesce;
mod status;
mod transform;
mod verify;

use std::process::ExitCode;

use reroot::report::progress::{Reporter, Style};

use args::{Command, Global, Parsed};
pub use exit::Exit;

/// What a command needs besides its own flags.
#[derive(Debug, Clone)]
#[allow(dead_code)] // `style` and `reporter` serve the commands as they land
pub struct Ctx {
    /// `--json`: one JSON document on stdout.
    pub json: bool,
    /// How to show progress.
    pub style: Style,
}

impl Ctx {
    fn new(g: &Global) -> Self {
        let style = if g.quiet {
            Style::Quiet
        } else {
            Style::detect()
        };
        Self {
            json: g.json,
            style,
        }
    }

    /// Start a progress reporter in this context's style.
    #[allow(dead_code)]
    pub fn reporter(&self) -> Reporter {
        Reporter::spawn(self.style)
    }
}

/// A command's result: the exit code to end with, or an error.
pub type CmdResult = anyhow::Result<Exit>;

/// Parse, run, print the error if any, and return the exit code.
pub fn main() -> ExitCode {
    let cli = match args::parse_from(std::env::args_os()) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Generate(what)) => {
            return match generate::run(what) {
                Ok(code) => code.into(),
                Err(err) => output::error(&err, false).into(),
            };
        }
        Err(e) => e.exit(),
    };
    let ctx = Ctx::new(&cli.global);
    let result = match cli.command {
        Command::Map(a) => map::run(a, &ctx),
        Command::Copy(a) => copy::run(a, &ctx),
        Command::Verify(a) => verify::run(a, &ctx),
        Command::Check(a) => check::run(a, &ctx),
        Command::Quiesce(a) => quiesce::run(a, &ctx),
        Command::ResumeServices(a) => quiesce::run_resume(a, &ctx),
        Command::Grow(a) => grow::run(a, &ctx),
        Command::Pivot(a) => pivot::run(a, &ctx),
        Command::Finish(a) => finish::run(a, &ctx),
        Command::Migrate(a) => migrate::run(a, &ctx),
        Command::Status(a) => status::run(a, &ctx),
        Command::Bench(a) => bench::run(a, &ctx),
        Command::Demo(a) => demo::run(a, &ctx),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => output::error(&err, ctx.json).into(),
    }
}
