//! What the binary writes: reports to stdout without panicking when the reader goes away
//! (`phbguard check | head`), and errors to stderr as one line with their causes.

use std::io::{self, Write};

use anyhow::Context;

/// Writes `text` and returns `code`; a closed pipe is not an error, any other failure is.
pub fn print(text: &str, code: u8) -> anyhow::Result<u8> {
    finish(io::stdout().lock().write_all(text.as_bytes()), code)
}

/// Maps the outcome of writing a report to the exit code.
pub fn finish(written: io::Result<()>, code: u8) -> anyhow::Result<u8> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        other => other.map(|()| code).context("cannot write the report"),
    }
}

/// `phbguard: FILE: what went wrong: why`, the error and its causes on one line; control
/// characters from a document or a file name in it are escaped.
pub fn error(err: &anyhow::Error) {
    eprintln!(
        "phbguard: {}",
        phbguard_core::escape::controls(&format!("{err:#}"))
    );
}
