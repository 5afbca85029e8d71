//! The `lanyard up` terminal while the pairing prompt waits: logs go to stderr and the question to stdout,
//! one screen. A log line written while the question waits would land after `[y/N] `, so the line is
//! cleared first and the question asked again after the log line.

use std::io::{self, Write};
use std::sync::Mutex;

/// The question the prompt is waiting on, as shown.
static ASKING: Mutex<Option<&'static str>> = Mutex::new(None);

pub(super) fn asking(question: Option<&'static str>) {
    *ASKING.lock().unwrap_or_else(|e| e.into_inner()) = question;
}

/// stderr for the logs of an interactive `lanyard up` (tracing writes one formatted line a call).
pub(super) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let asking = ASKING.lock().unwrap_or_else(|e| e.into_inner());
        write_log(&mut io::stderr().lock(), &mut io::stdout().lock(), line, *asking)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Writes `line` on `err`; with a question waiting, clears the question's line first (`\r`, erase line)
/// and shows the question again on `out` after it.
fn write_log(err: &mut impl Write, out: &mut impl Write, line: &[u8], asking: Option<&str>) -> io::Result<()> {
    let Some(question) = asking else { return err.write_all(line) };
    err.write_all(b"\r\x1b[2K")?;
    err.write_all(line)?;
    err.flush()?;
    out.write_all(question.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_during_a_question_clears_it_and_asks_again() {
        let (mut err, mut out) = (Vec::new(), Vec::new());
        write_log(&mut err, &mut out, b"INFO paired node connected\n", None).unwrap();
        assert_eq!((err.as_slice(), out.as_slice()), (&b"INFO paired node connected\n"[..], &b""[..]));

        let (mut err, mut out) = (Vec::new(), Vec::new());
        write_log(&mut err, &mut out, b"INFO paired node connected\n", Some("Approve? [y/N] ")).unwrap();
        assert_eq!(err, b"\r\x1b[2KINFO paired node connected\n");
        assert_eq!(out, b"Approve? [y/N] ");
    }
}
