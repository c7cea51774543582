//! Logging with `tracing`: human-readable or JSON lines on stderr (Greengrass captures a
//! component's stdout/stderr into `<root>/logs/<component>.log`; stdout stays free for
//! `classify-service openapi`).
//!
//! libdlr prints to the process's stdout and stderr on its own (`Set Num Threads: 2`, "Output
//! node with index 0 was not found in metadata file!"), which would break `--log-format json`
//! and interleave unmarked lines. [`init_capturing_native_output`] (the binary's set-up) gives
//! `tracing` a duplicate of the original stderr, then points fds 1 and 2 at a pipe whose lines
//! a thread re-emits as log events with target `native_output`. The fd plumbing uses rustix's
//! safe wrappers, so no `unsafe` is needed here.
//!
//! **One event, one line.** Log lines carry text that clients chose (file names, header
//! values); a newline in one of them would start a forged line in the text log. Call sites log
//! such values with `{:?}` (escaped), and as a backstop every event passes through
//! [`OneLinePerEvent`], which escapes any line break inside an event before it reaches stderr.
//! (The JSON format escapes on its own; the backstop costs nothing there.)

use std::fs::File;
use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to stderr. `RUST_LOG`, when set, overrides
/// `filter`. Calling it twice is harmless (the second call does nothing), which keeps tests
/// simple.
pub fn init(format: LogFormat, filter: &str) {
    install(
        format,
        filter,
        std::io::stderr().is_terminal(),
        std::io::stderr,
    );
}

/// [`init`], and everything written to fds 1 and 2 from now on (libdlr's prints, a panic
/// message) becomes log events, so the log stays one format. If the redirection cannot be set
/// up, logging goes to stderr as with [`init`] and the reason is logged.
pub fn init_capturing_native_output(format: LogFormat, filter: &str) {
    // Colour codes only for a person at a terminal, never into Greengrass log files; decided
    // on the real stderr, before it becomes a pipe.
    let terminal = std::io::stderr().is_terminal();
    let original = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Arc::new(File::from(fd)),
        Err(e) => {
            init(format, filter);
            tracing::warn!(error = %e, "libdlr's own output is not captured");
            return;
        }
    };
    install(format, filter, terminal, SharedFile(original));
    if let Err(e) = redirect_into_log() {
        tracing::warn!(error = %e, "libdlr's own output is not captured");
    }
}

fn install<W>(format: LogFormat, filter: &str, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every event stays one line, whichever writer is underneath.
        .with_writer(OneLinePerEvent(writer))
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// An error and its chain of sources on one line ("a: b: c"), for logs and the exit message.
///
/// The crate's error types keep the cause out of their own message and expose it as
/// `source` instead, so that chain printers show each cause once; this is that printer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The duplicated stderr, shared by every log write.
struct SharedFile(Arc<File>);

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = &'a File;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

fn redirect_into_log() -> std::io::Result<()> {
    let (reader, writer) = rustix::pipe::pipe()?;
    let reader = File::from(reader);
    std::thread::Builder::new()
        .name("native-output".into())
        .spawn(move || relay(reader))?;
    // Rust's own stdout buffer is empty here (nothing was printed yet in serve mode).
    std::io::stdout().flush()?;
    rustix::stdio::dup2_stdout(&writer)?;
    rustix::stdio::dup2_stderr(&writer)?;
    Ok(())
}

/// Re-emits each captured line; ends when every writer of the pipe is gone.
fn relay(reader: File) {
    let mut reader = std::io::BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let (source, message) = split_dlr_line(text.trim_end());
        if message.is_empty() {
            continue;
        }
        match source {
            Some(source) => tracing::info!(target: "native_output", source, "{message}"),
            None => tracing::info!(target: "native_output", "{message}"),
        }
    }
}

/// DLR's lines look like `[19:26:00] /workspace/src/dlr.cc:221: message`: the clock is
/// dropped (events carry their own time) and the source file kept as a field.
fn split_dlr_line(line: &str) -> (Option<&str>, &str) {
    let rest = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((_clock, rest)) => rest,
        None => return (None, line),
    };
    match rest.split_once(": ") {
        Some((path, message)) if path.contains(".cc:") || path.contains(".h:") => {
            let file = path.rsplit('/').next().unwrap_or(path);
            (Some(file), message)
        }
        _ => (None, rest),
    }
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
    fn the_chain_shows_each_cause_once() {
        let error = crate::Error::Bind {
            address: "127.0.0.1:1".parse().unwrap(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(error.to_string(), "cannot listen on 127.0.0.1:1");
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot listen on 127.0.0.1:1: boom"
        );
        let labels = crate::labels::LabelsError::Read {
            path: "/x/synset.txt".into(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(ErrorChain(&labels).to_string().matches("boom").count(), 1);
    }

    #[test]
    fn dlr_lines_lose_their_clock_and_keep_their_source() {
        assert_eq!(
            split_dlr_line("[19:26:00] /workspace/src/dlr_tvm.cc:294: Set Num Threads: 2"),
            (Some("dlr_tvm.cc:294"), "Set Num Threads: 2")
        );
        assert_eq!(
            split_dlr_line("thread 'main' panicked at src/x.rs:1:2:"),
            (None, "thread 'main' panicked at src/x.rs:1:2:")
        );
        assert_eq!(split_dlr_line("[12:00:00] plain"), (None, "plain"));
    }

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
