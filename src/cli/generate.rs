//! `reroot --generate WHAT`: the manual page and shell completions, made
//! from the clap definitions so they never drift from `--help` (the way
//! ripgrep does it). `man` is one page, reroot(1), that documents every
//! subcommand with its options (clap_mangen renders each part);
//! `complete-*` are clap_complete's scripts for bash, zsh and fish.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use super::{CmdResult, Exit};

/// What `--generate` writes on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The manual page reroot(1), in roff.
    Man,
    /// A bash completion script.
    CompleteBash,
    /// A zsh completion script.
    CompleteZsh,
    /// A fish completion script.
    CompleteFish,
}

/// Write `what` on stdout.
pub fn run(what: Generate) -> CmdResult {
    let mut out = Vec::new();
    write(what, &mut out)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(Exit::Success)
}

/// Write `what` into `w`.
pub fn write(what: Generate, w: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    let shell = match what {
        Generate::Man => return man(cmd, w),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "reroot", w);
    Ok(())
}

/// Replace each `.SH HEADING` line of a rendered part with `.SS title`
/// (the first) or `.SS Heading` (option groups), so a subcommand's parts
/// become subsections of its own `.SH` section.
fn demote(part: &[u8], first: &str) -> String {
    let text = String::from_utf8_lossy(part);
    let mut out = String::new();
    let mut seen = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix(".SH ") {
            let title = if seen { h.trim_matches('"') } else { first };
            seen = true;
            out.push_str(&format!(".SS \"{title}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// reroot(1): the top-level parts, then one section per visible
/// subcommand (synopsis, description, options), then the exit codes.
fn man(mut cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone())
        .manual("reroot manual")
        .source(format!("reroot {}", env!("CARGO_PKG_VERSION")));
    top.render_title(w)?;
    top.render_name_section(w)?;
    top.render_synopsis_section(w)?;
    top.render_description_section(w)?;
    top.render_options_section(w)?;
    // The list points into this page (clap_mangen's would name
    // reroot-map(1) and such, which do not exist).
    writeln!(w, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            w,
            ".TP\n\\fBreroot {}\\fR\n{}",
            escape(sub.get_name()),
            escape(&about)
        )?;
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("reroot {}", sub.get_name());
        writeln!(w, ".SH \"{}\"", name.to_uppercase())?;
        let page = clap_mangen::Man::new(sub.clone().bin_name(&name).display_name(&name));
        for (render, title) in [
            (
                clap_mangen::Man::render_synopsis_section
                    as fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>,
                "Synopsis",
            ),
            (clap_mangen::Man::render_description_section, "Description"),
            (clap_mangen::Man::render_options_section, "Options"),
        ] {
            let mut part = Vec::new();
            render(&page, &mut part)?;
            w.write_all(demote(&part, title).as_bytes())?;
        }
    }
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    let codes = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let codes = codes.trim_start_matches("Exit codes: ");
    for entry in codes.trim_end_matches('.').split(", ") {
        let (code, meaning) = entry.split_once(' ').unwrap_or((entry, ""));
        writeln!(w, ".TP\n.B {code}\n{}", escape(meaning))?;
    }
    writeln!(
        w,
        ".PP\n`reroot migrate` ends with the failed stage's code when it was rolled back, 3 when \
         it was cancelled, and 130 when its worker is gone (resume with `reroot migrate \
         \\-\\-resume`)."
    )?;
    writeln!(w, ".SH FILES")?;
    writeln!(
        w,
        ".TP\n.B /run/reroot/\nThe state directory of a migration: migrate.journal, migrate.log, \
         migrate\\-report.json, quiesce.json, the pivot's files."
    )?;
    top.render_version_section(w)?;
    Ok(())
}

/// Text for a roff line: no leading control character, backslashes and
/// hyphens escaped.
fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{Parsed, parse_from};
    use super::*;

    fn text(what: Generate) -> String {
        let mut v = Vec::new();
        write(what, &mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn generate_flag_parses_each_value() {
        for (word, g) in [
            ("man", Generate::Man),
            ("complete-bash", Generate::CompleteBash),
            ("complete-zsh", Generate::CompleteZsh),
            ("complete-fish", Generate::CompleteFish),
        ] {
            let p = parse_from(["reroot", "--generate", word]).unwrap();
            assert!(matches!(p, Parsed::Generate(x) if x == g), "{word}");
        }
        assert!(parse_from(["reroot", "--generate", "complete-tcsh"]).is_err());
    }

    #[test]
    fn man_page_documents_every_visible_subcommand_and_its_flags() {
        let page = text(Generate::Man);
        assert!(page.contains("\n.TH reroot 1 "), "{}", &page[..200]);
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            let head = format!(".SH \"REROOT {}\"", sub.get_name().to_uppercase());
            assert!(page.contains(&head), "no section {head}");
        }
        // A long help of a subcommand flag, and the exit codes.
        assert!(page.contains("point of no return"));
        assert!(page.contains("\\-\\-dry\\-run"));
        assert!(page.contains(".SH \"EXIT STATUS\"\n.TP\n.B 0\nok"));
        assert!(page.contains(".B 130\ninterrupted"));
        assert!(page.contains(".TP\n\\fBreroot resume\\-services\\fR\nUndo"));
        // Hidden internals stay out of the manual.
        assert!(!page.contains("inject") && !page.contains("\\-\\-worker"));
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = text(Generate::CompleteBash);
        assert!(bash.contains("_reroot()") && bash.contains("migrate"));
        assert!(text(Generate::CompleteZsh).starts_with("#compdef reroot"));
        assert!(text(Generate::CompleteFish).contains("complete -c reroot"));
    }

    #[test]
    fn escape_protects_control_characters() {
        assert_eq!(escape(".x-y"), "\\&.x\\-y");
        assert_eq!(escape("a\\b"), "a\\eb");
    }
}
