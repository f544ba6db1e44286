//! Live progress on stderr. On a terminal, the bottom row is reserved (a
//! scrolling region above it, as apt does) and redrawn in place, so the
//! commands' own output and progress bars scroll above it undisturbed.
//! Otherwise plain lines, every few seconds and at each step.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    /// The terminal's rows when drawing in place.
    rows: Option<u16>,
    last_plain: Option<Instant>,
    last_step: String,
}

impl Progress {
    pub fn new() -> Progress {
        let rows = if std::io::stderr().is_terminal() {
            terminal_size()
                .map(|(rows, _)| rows)
                .filter(|rows| *rows > 4)
        } else {
            None
        };
        if let Some(rows) = rows {
            // Make room for the status row, then scroll only above it.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\n\x1b[1;{}r\x1b[{};1H", rows - 1, rows - 1);
            let _ = err.flush();
        }
        Progress {
            rows,
            last_plain: None,
            last_step: String::new(),
        }
    }

    /// Shows the status line: redrawn in place on a terminal; else printed
    /// when the step changed or every few seconds.
    pub fn show(&mut self, step: &str, line: &str) {
        let mut err = std::io::stderr().lock();
        match self.rows {
            Some(rows) => {
                let (now, columns) = terminal_size().unwrap_or((rows, 80));
                let rows = if now != rows && now > 4 {
                    // Resized: move the scrolling region to the new bottom.
                    let _ = write!(err, "\x1b7\x1b[1;{}r\x1b8", now - 1);
                    self.rows = Some(now);
                    now
                } else {
                    rows
                };
                // One row: never wrap (that would scroll the whole screen).
                let line: String = line.chars().take(usize::from(columns.max(2)) - 1).collect();
                let _ = write!(err, "\x1b7\x1b[{rows};1H\x1b[2K\x1b[7m{line}\x1b[0m\x1b8");
            }
            None => {
                let due = self
                    .last_plain
                    .is_none_or(|last| last.elapsed() >= PLAIN_EVERY);
                if step != self.last_step || due {
                    let _ = writeln!(err, "demo: {line}");
                    self.last_plain = Some(Instant::now());
                }
            }
        }
        let _ = err.flush();
        if step != self.last_step {
            step.clone_into(&mut self.last_step);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(rows) = self.rows {
            // Give the whole screen back and clear the status row.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b7\x1b[r\x1b8\x1b7\x1b[{rows};1H\x1b[2K\x1b8");
            let _ = err.flush();
        }
    }
}

/// The terminal's rows and columns, from stderr.
fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stderr()).ok()?;
    (size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}
