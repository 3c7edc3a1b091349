//! Writing to stdout without panicking when the reader goes away (`phbguard check | head`).

use std::io::{self, Write};

/// Writes `text` and returns `code`; a closed pipe is not an error, any other failure is.
pub fn print(text: &str, code: u8) -> u8 {
    finish(io::stdout().lock().write_all(text.as_bytes()), code)
}

/// Maps the outcome of writing a report to the exit code.
pub fn finish(written: io::Result<()>, code: u8) -> u8 {
    match written {
        Ok(()) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("phbguard: cannot write the report: {e}");
            crate::EXIT_BAD_INPUT
        }
    }
}
