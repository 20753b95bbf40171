//! Writing to stdout and stderr: a closed pipe (`incept report | head`) is not an error.

use std::io::{self, Write};

/// Writes `text` to stdout. A broken pipe ends the output quietly.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints an error and its causes to stderr as one paragraph.
pub fn error(err: &anyhow::Error) {
    let mut text = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        // thiserror messages often embed their source already.
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Prints a warning to stderr.
pub fn warning(text: &str) {
    let _ = writeln!(io::stderr().lock(), "warning: {text}");
}
