//! `/proc/loadavg`: the 1, 5 and 15 minute load averages, so benchmark
//! results say how busy the machine was while they were taken.
//!
//! Imports only [`SysRoot`].

use super::SysRoot;

/// Parse the first three fields of `/proc/loadavg` ("0.52 0.58 0.59 1/389 12345").
pub fn parse(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<f64>);
    let mut out = [0.0; 3];
    for v in &mut out {
        *v = it.next()?.ok().filter(|x| x.is_finite() && *x >= 0.0)?;
    }
    Some(out)
}

/// The load averages, when `/proc/loadavg` can be read and parsed.
pub fn read(root: &SysRoot) -> Option<[f64; 3]> {
    parse(&std::fs::read_to_string(root.proc("loadavg")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_averages() {
        assert_eq!(
            parse("0.52 0.58 1.59 1/389 12345\n"),
            Some([0.52, 0.58, 1.59])
        );
        assert_eq!(parse("0.52 x 1"), None);
        assert_eq!(parse("1 2"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn reads_a_fixture() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/loadavg"), "2.00 1.50 1.00 3/100 7\n").unwrap();
        assert_eq!(read(&SysRoot::under(dir.path())), Some([2.0, 1.5, 1.0]));
        assert_eq!(read(&SysRoot::under(&dir.path().join("none"))), None);
    }
}
