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
        eprintln!("reroot: {err:#}");
    }
    code
}
