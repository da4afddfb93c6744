//! What the trainer tells the outside while it runs: an [`Observer`] receives one [`Event`]
//! per thing that happened (a phase compiled and started, a batch trained, an epoch done, a
//! checkpoint written) and may ask the run to stop after any batch.
//!
//! The trainer itself prints nothing; the `coopc` binary turns events into progress bars or
//! log lines. Invariant: observing changes no result; a stop request ends the run at once
//! without writing anything for the interrupted epoch, exactly as if the process had been
//! killed there.

use std::path::Path;

use super::carry::CarryReport;
use crate::experiment::{EpochPlan, PhasePlan};
use crate::metrics::EpochMetrics;

/// Whether the run goes on after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop now, as if interrupted.
    Stop,
}

/// The state of an epoch after one of its batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchProgress {
    /// Global epoch.
    pub epoch: u32,
    /// Batches done in this epoch, including the one just trained.
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// Images trained so far in this epoch.
    pub images: usize,
    /// Mean loss over those images.
    pub loss: f64,
    /// Fraction of them classified correctly.
    pub accuracy: f64,
    /// Training images per second so far in this epoch.
    pub images_per_s: f64,
}

/// Something that happened during a run.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// The run continues from a checkpoint taken after `epoch`.
    Resumed {
        /// The checkpoint.
        dir: &'a Path,
        /// Its last completed epoch.
        epoch: u32,
    },
    /// A phase's program was compiled for the CPU.
    Compiled {
        /// The phase.
        phase: u8,
        /// Compilation time.
        seconds: f64,
    },
    /// A phase begins (or continues after a resume).
    PhaseStarted {
        /// Its plan.
        plan: &'a PhasePlan,
        /// Its number of trained values.
        parameters: usize,
        /// What crossed from the previous phase; `None` for a phase that starts fresh or
        /// resumes from its own checkpoint.
        carry: Option<&'a CarryReport>,
    },
    /// An epoch begins.
    EpochStarted {
        /// Its plan.
        plan: &'a EpochPlan,
        /// Its number of batches.
        batches: usize,
    },
    /// A batch was trained.
    Batch(BatchProgress),
    /// The epoch's training is done and evaluation begins.
    Evaluating {
        /// The epoch.
        epoch: u32,
        /// Images to evaluate.
        images: usize,
    },
    /// An epoch is complete; its metrics are logged.
    EpochDone(&'a EpochMetrics),
    /// A checkpoint was written.
    CheckpointSaved {
        /// Its directory.
        dir: &'a Path,
        /// Its epoch.
        epoch: u32,
    },
}

/// Receives the events of a run.
pub trait Observer {
    /// Called for every event; [`Flow::Stop`] ends the run at once. It is honoured after
    /// [`Event::Batch`], [`Event::EpochDone`] and [`Event::CheckpointSaved`] and ignored
    /// after the others.
    fn event(&mut self, event: Event<'_>) -> Flow;
}

/// An observer that ignores everything (tests, scripted runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietObserver;

impl Observer for QuietObserver {
    fn event(&mut self, _event: Event<'_>) -> Flow {
        Flow::Continue
    }
}

impl<F: FnMut(Event<'_>) -> Flow> Observer for F {
    fn event(&mut self, event: Event<'_>) -> Flow {
        self(event)
    }
}
