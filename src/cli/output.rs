//! Printing results and errors: human text, or one JSON document on stdout
//! with `--json`.

use std::io::Write;

use reroot::Error;
use serde::Serialize;

use super::Exit;

/// Print `value` as pretty JSON on stdout.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Serialize)]
struct JsonError<'a> {
    kind: &'static str,
    exit_code: u8,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

/// Print an error (stderr, or JSON on stdout) and return its exit code.
pub fn error(err: &anyhow::Error, as_json: bool) -> Exit {
    let lib = err.chain().find_map(|e| e.downcast_ref::<Error>());
    let code = lib.map_or(Exit::Failure, |e| Exit::of(e.kind()));
    if as_json {
        let ctx = lib.map(Error::context);
        let doc = serde_json::json!({ "error": JsonError {
            kind: code.name(),
            exit_code: code as u8,
            message: lib.map_or_else(|| format!("{err:#}"), |e| e.kind().to_string()),
            stage: ctx.and_then(|c| c.stage).map(|s| s.to_string()),
            device: ctx.and_then(|c| c.device.as_ref()).map(|d| d.display().to_string()),
            offset: ctx.and_then(|c| c.offset),
            hint: lib.and_then(Error::hint_text),
        }});
        let _ = json(&doc);
    } else {
        eprintln!("reroot: {}", chain_once(err));
    }
    code
}

/// `{err:#}` without repeats: a library I/O error carries its cause's text
/// in its own message and the cause as its source, and anyhow prints both
/// ("...: No such file or directory (os error 2): No such file or
/// directory (os error 2)"). A cause already said is left out.
fn chain_once(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for part in err.chain().map(ToString::to_string) {
        if out.contains(&part) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: `map` on a missing path printed the errno text twice.
    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::from(Error::io("opening the device", io).device("/nope"))
            .context("cannot map /nope");
        let s = chain_once(&e);
        assert_eq!(s.matches("No such file or directory").count(), 1, "{s}");
        assert!(
            s.starts_with("cannot map /nope: /nope: I/O error: opening the device"),
            "{s}"
        );
        // A cause that adds something is kept.
        let e = anyhow::anyhow!("inner detail").context("outer");
        assert_eq!(chain_once(&e), "outer: inner detail");
    }
}
