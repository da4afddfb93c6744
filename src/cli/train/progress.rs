//! What a user watching `coopc train` sees on stderr: on a terminal, one progress bar per
//! epoch (batches done, running loss and accuracy, images/s) that turns into a summary line
//! when the epoch ends; elsewhere (a log file, CI), plain lines: every phase and checkpoint,
//! one line per epoch, and a line every [`PLAIN_INTERVAL`] during long epochs.
//!
//! Invariant: progress output never changes what the run computes; it only observes events.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runtime::experiment::plan::format_lr;
use runtime::experiment::{PhaseActivation, PhasePlan};
use runtime::metrics::EpochMetrics;
use runtime::train::{BatchProgress, CarryReport, Event, Flow, Observer};

/// How often plain output reports on an epoch in progress.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(15);

/// Most tensor names listed in one line of the carry report.
const LISTED_NAMES: usize = 6;

/// The progress reporter of `coopc train`.
pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    total_epochs: u32,
    last_line: Instant,
}

impl Progress {
    /// A reporter for a run of `total_epochs`; bars when stderr is a terminal.
    pub fn new(total_epochs: u32) -> Progress {
        Progress {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            total_epochs,
            last_line: Instant::now(),
        }
    }

    /// Prints one line on stderr, above the bar when one is shown.
    #[expect(
        clippy::print_stderr,
        reason = "progress lines are the reporter's output"
    )]
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn start_epoch(&mut self, epoch: u32, phase: u8, lr: f64, batches: usize) {
        let lr = format_lr(lr);
        let prefix = format!(
            "epoch {epoch}/{} (phase {phase}, lr {lr})",
            self.total_epochs
        );
        if !self.terminal {
            self.last_line = Instant::now();
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        let template = "{prefix} [{bar:30}] {pos}/{len} {msg} ({eta} left)";
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    fn batch(&mut self, progress: &BatchProgress) {
        let message = format!(
            "loss {:.4} acc {:.2}% {:.0} img/s",
            progress.loss,
            100.0 * progress.accuracy,
            progress.images_per_s
        );
        if let Some(bar) = &self.bar {
            bar.set_position(progress.batch as u64);
            bar.set_message(message);
        } else if self.last_line.elapsed() >= PLAIN_INTERVAL {
            self.last_line = Instant::now();
            let (epoch, batch, batches) = (progress.epoch, progress.batch, progress.batches);
            self.line(&format!("epoch {epoch} batch {batch}/{batches}: {message}"));
        }
    }

    fn end_epoch(&mut self, record: &EpochMetrics) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.line(&epoch_line(record, self.total_epochs));
    }
}

impl Observer for Progress {
    fn event(&mut self, event: Event<'_>) -> Flow {
        match event {
            Event::Resumed { dir, epoch } => {
                self.line(&format!(
                    "resuming after epoch {epoch} from {}",
                    dir.display()
                ));
            }
            Event::Compiled { phase, seconds } => {
                self.line(&format!(
                    "phase {phase}: program compiled in {seconds:.1} s"
                ));
            }
            Event::PhaseStarted {
                plan,
                parameters,
                carry,
            } => {
                self.line(&phase_line(plan, parameters));
                for line in carry.map(carry_lines).unwrap_or_default() {
                    self.line(&line);
                }
            }
            Event::EpochStarted { plan, batches } => {
                self.start_epoch(plan.epoch, plan.phase, plan.lr, batches);
            }
            Event::Batch(progress) => self.batch(&progress),
            Event::Evaluating { images, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("evaluating {images} images"));
                }
            }
            Event::EpochDone(record) => self.end_epoch(record),
            Event::CheckpointSaved { dir, .. } if !self.terminal => {
                self.line(&format!("checkpoint {}", dir.display()));
            }
            Event::CheckpointSaved { .. } => {}
        }
        Flow::Continue
    }
}

/// `phase 2 (relu): epochs 3-10, 44426 parameters`.
fn phase_line(plan: &PhasePlan, parameters: usize) -> String {
    let activation = match &plan.activation {
        PhaseActivation::Single(name) => name.name().to_string(),
        PhaseActivation::Mix { activations, .. } => {
            let names: Vec<&str> = activations.iter().map(|name| name.name()).collect();
            format!("mix of {}", names.join(", "))
        }
    };
    let last = plan.first_epoch + plan.epochs - 1;
    format!(
        "phase {} ({activation}): epochs {}-{last}, {parameters} parameters",
        plan.phase, plan.first_epoch
    )
}

/// What crossed a phase boundary, in a few lines.
pub fn carry_lines(report: &CarryReport) -> Vec<String> {
    let (from, to) = (report.from_phase, report.to_phase);
    let mut lines = vec![format!(
        "phase {from} -> {to}: {} tensors carried by name",
        report.carried.len()
    )];
    if !report.dropped.is_empty() {
        let names: Vec<String> = report
            .dropped
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        lines.push(format!(
            "  dropped {} tensors ({} values): {}",
            names.len(),
            report.dropped_values(),
            listed(&names)
        ));
    }
    if !report.restarted.is_empty() {
        let count = report.restarted.len();
        lines.push(format!("  momentum restarts at zero for {count} buffers"));
    }
    if !report.fresh.is_empty() {
        let count = report.fresh.len();
        lines.push(format!(
            "  freshly initialised {count}: {}",
            listed(&report.fresh)
        ));
    }
    lines
}

fn listed(names: &[String]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(LISTED_NAMES)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(LISTED_NAMES);
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{}, and {more} more", shown.join(", "))
    }
}

/// The summary line of one epoch.
pub fn epoch_line(record: &EpochMetrics, total_epochs: u32) -> String {
    let mut line = format!(
        "epoch {}/{total_epochs} (phase {}, lr {}): train loss {:.4} acc {:.2}%",
        record.epoch,
        record.phase,
        format_lr(record.lr),
        record.train_loss,
        100.0 * record.train_acc
    );
    if let (Some(loss), Some(accuracy)) = (record.test_loss, record.test_acc) {
        line.push_str(&format!(
            ", test loss {loss:.4} acc {:.2}%",
            100.0 * accuracy
        ));
    }
    if let (Some(loss), Some(accuracy)) = (record.validation_loss, record.validation_acc) {
        line.push_str(&format!(
            ", validation loss {loss:.4} acc {:.2}%",
            100.0 * accuracy
        ));
    }
    line.push_str(&format!(
        ", {:.1} s, {:.0} img/s",
        record.seconds, record.images_per_s
    ));
    line
}
