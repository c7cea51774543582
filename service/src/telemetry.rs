//! Logging with `tracing`: human-readable or JSON lines on stderr (Greengrass captures a
//! component's stdout/stderr into `<root>/logs/<component>.log`; stdout stays free for
//! `classify-service openapi`).
//!
//! **One event, one line.** Log lines carry text that clients chose (file names, header
//! values); a newline in one of them would start a forged line in the text log. Call sites log
//! such values with `{:?}` (escaped), and as a backstop every event passes through
//! [`OneLinePerEvent`], which escapes any line break inside an event before it reaches stderr.
//! (The JSON format escapes on its own; the backstop costs nothing there.)

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`. Calling it twice
/// is harmless (the second call does nothing), which keeps tests simple.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLinePerEvent(std::io::stderr))
        // Colour codes only for a person at a terminal, never into Greengrass log files.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A [`MakeWriter`] whose writers escape `\n` and `\r` inside each write, keeping the final
/// newline. The fmt layer formats a whole event into one buffer and writes it at once, so one
/// write is one event.
#[derive(Debug, Clone, Copy)]
pub struct OneLinePerEvent<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLinePerEvent<M> {
    type Writer = Escaping<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Escaping(self.0.make_writer())
    }
}

/// The writer of [`OneLinePerEvent`].
#[derive(Debug)]
pub struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                other => line.push(other),
            }
        }
        if body.len() < buf.len() {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_inside_an_event_cannot_start_a_forged_line() {
        let mut out = Escaping(Vec::new());
        out.write_all(b"ERROR internal error error=reading a\nINFO forged\r\n")
            .unwrap();
        out.write_all(b"INFO plain\n").unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "ERROR internal error error=reading a\\nINFO forged\\r\nINFO plain\n"
        );
        assert_eq!(text.lines().count(), 2);
    }
}
