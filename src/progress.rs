//! A progress indicator for long commands: a bar redrawn in place on a terminal, plain
//! lines every 10% otherwise (CI logs, pipes). Written to stderr.

use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Debug)]
pub struct Progress {
    label: String,
    tty: bool,
    started: Instant,
    last_tenth: i32,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(label: &str) -> Self {
        Progress {
            label: label.to_string(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_tenth: -1,
            last_draw: None,
        }
    }

    /// `share` of the work is done (0.0–1.0).
    pub fn set(&mut self, share: f64) {
        let share = share.clamp(0.0, 1.0);
        let mut err = std::io::stderr().lock();
        if self.tty {
            if self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 100) && share < 1.0 {
                return;
            }
            self.last_draw = Some(Instant::now());
            let width = 30;
            let filled = (share * width as f64).round() as usize;
            let _ = write!(
                err,
                "\r{} [{}{}] {:>5.1}%  {:.1}s",
                self.label,
                "#".repeat(filled),
                " ".repeat(width - filled),
                100.0 * share,
                self.started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        } else {
            let tenth = (share * 10.0).floor() as i32;
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                let _ = writeln!(
                    err,
                    "{}: {:>3}% ({:.1}s)",
                    self.label,
                    tenth * 10,
                    self.started.elapsed().as_secs_f64()
                );
            }
        }
    }

    pub fn finish(&mut self) {
        self.set(1.0);
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}
