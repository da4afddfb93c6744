//! The plan of a run, computed from an experiment: which phases it trains, what activation
//! each phase's network uses, how the trainer moves from phase 1 to phase 2, how many epochs
//! each lasts and the learning rate of every epoch. `coopc train --dry-run` prints
//! [`Plan::render`]; the trainer follows [`Plan::phases`] and [`Plan::epochs`].
//!
//! The variants (DESIGN.md's table):
//!
//! | variant | phase 1 | phase 2 |
//! | --- | --- | --- |
//! | baseline (γ) | none | γ |
//! | baseline-tpt (γ) | γ, phase 1's length and schedule | γ, same program, schedule restarts |
//! | mix (γ) | the mix | lowered to γ |
//! | mixture | the mix | the mix, never lowered |
//! | wnla | none | identity |
//!
//! Invariant: epochs are numbered globally from 1 across the phases, phase 1 first; every
//! epoch of the run appears exactly once in [`Plan::epochs`], with the rate its phase's
//! schedule gives it.

use std::fmt::Write as _;

use super::schema::{ActivationName, Experiment, Variant, DEFAULT_PHASE1_FRACTION};
use crate::schedule_lr::Schedule;

/// What a phase's network computes at each activation.
#[derive(Clone, Debug, PartialEq)]
pub enum PhaseActivation {
    /// `Σᵢ βᵢ·Fᵢ(x)`.
    Mix {
        /// The activations Fᵢ.
        activations: Vec<ActivationName>,
        /// The weights βᵢ.
        beta: Vec<f64>,
    },
    /// One activation everywhere.
    Single(ActivationName),
}

/// How the network of a phase is obtained.
#[derive(Clone, Debug, PartialEq)]
pub enum PhaseStart {
    /// Compiled from the model and freshly initialised from the seed.
    Fresh,
    /// The previous phase's network lowered to this activation (each mix becomes it); every
    /// surviving parameter and BatchNorm statistic is carried across by name (PReLU slopes
    /// only when the target is PReLU).
    Lower(ActivationName),
    /// The previous phase's program and parameters, unchanged; only the schedule restarts.
    Continue,
}

/// One phase of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasePlan {
    /// 1 or 2.
    pub phase: u8,
    /// What its network computes.
    pub activation: PhaseActivation,
    /// How its network is obtained.
    pub start: PhaseStart,
    /// Whether the optimizer's momentum buffers come from the previous phase (else they
    /// start at zero).
    pub carry_momentum: bool,
    /// Its length.
    pub epochs: u32,
    /// Global number of its first epoch.
    pub first_epoch: u32,
    /// Its initial learning rate.
    pub base_lr: f64,
    /// Its schedule.
    pub schedule: Schedule,
    /// The rate of each of its epochs, in order.
    pub lrs: Vec<f64>,
}

/// One epoch of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochPlan {
    /// Global epoch number, from 1.
    pub epoch: u32,
    /// Its phase, 1 or 2.
    pub phase: u8,
    /// Its number within the phase, from 1.
    pub phase_epoch: u32,
    /// Its learning rate.
    pub lr: f64,
}

/// A run's phases in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The experiment's name.
    pub name: String,
    /// Its variant.
    pub variant: Variant,
    /// Phase 1 (when the variant has one), then phase 2.
    pub phases: Vec<PhasePlan>,
    /// Checkpoint every this many global epochs (0: only at phase ends).
    pub checkpoint_every: u32,
    /// Evaluate every this many global epochs.
    pub eval_every: u32,
}

/// Phase 1's length: the given epochs, or the fraction of phase 2 rounded (at least 1).
pub fn phase1_epochs(experiment: &Experiment) -> u32 {
    let phase1 = &experiment.phase1;
    match (phase1.epochs, phase1.fraction) {
        (Some(epochs), _) => epochs,
        (None, fraction) => {
            let fraction = fraction.unwrap_or(DEFAULT_PHASE1_FRACTION);
            let epochs = (fraction * f64::from(experiment.phase2.epochs)).round();
            (epochs as u32).max(1)
        }
    }
}

impl Plan {
    /// The plan of a checked experiment (one whose [`Experiment::issues`] is empty).
    pub fn new(experiment: &Experiment) -> Plan {
        let mix = PhaseActivation::Mix {
            activations: experiment.mix.activations.clone(),
            beta: experiment.mix.weights(),
        };
        let target = experiment.target();
        let (first, second, start) = match experiment.variant {
            Variant::Baseline => (None, PhaseActivation::Single(target), PhaseStart::Fresh),
            Variant::Wnla => (
                None,
                PhaseActivation::Single(ActivationName::Identity),
                PhaseStart::Fresh,
            ),
            Variant::BaselineTpt => {
                let single = PhaseActivation::Single(target);
                (Some(single.clone()), single, PhaseStart::Continue)
            }
            Variant::Mix => (
                Some(mix),
                PhaseActivation::Single(target),
                PhaseStart::Lower(target),
            ),
            Variant::Mixture => (Some(mix.clone()), mix, PhaseStart::Continue),
        };

        let optimizer_lr = experiment.optimizer.lr;
        let mut phases = Vec::new();
        if let Some(activation) = first {
            let base_lr = experiment.phase1.lr.unwrap_or(optimizer_lr);
            let schedule = experiment.phase1.schedule.clone();
            let epochs = phase1_epochs(experiment);
            phases.push(phase(
                1,
                activation,
                PhaseStart::Fresh,
                false,
                epochs,
                1,
                base_lr,
                schedule,
            ));
        }
        let first_epoch = phases.first().map_or(1, |phase1| 1 + phase1.epochs);
        let start = if phases.is_empty() {
            PhaseStart::Fresh
        } else {
            start
        };
        let carry = !phases.is_empty() && experiment.optimizer.carry_momentum;
        let base_lr = experiment.phase2.lr.unwrap_or(optimizer_lr);
        let (epochs, schedule) = (experiment.phase2.epochs, experiment.phase2.schedule.clone());
        phases.push(phase(
            2,
            second,
            start,
            carry,
            epochs,
            first_epoch,
            base_lr,
            schedule,
        ));
        Plan {
            name: experiment.name.clone(),
            variant: experiment.variant,
            phases,
            checkpoint_every: experiment.checkpoint_every,
            eval_every: experiment.eval_every.max(1),
        }
    }

    /// Every epoch of the run in order.
    pub fn epochs(&self) -> impl Iterator<Item = EpochPlan> + '_ {
        self.phases.iter().flat_map(|phase| {
            phase
                .lrs
                .iter()
                .enumerate()
                .map(move |(index, &lr)| EpochPlan {
                    epoch: phase.first_epoch + index as u32,
                    phase: phase.phase,
                    phase_epoch: index as u32 + 1,
                    lr,
                })
        })
    }

    /// The number of epochs of the whole run.
    pub fn total_epochs(&self) -> u32 {
        self.phases.iter().map(|phase| phase.epochs).sum()
    }

    /// The plan for `epoch` (global, from 1), if the run has it.
    pub fn epoch(&self, epoch: u32) -> Option<EpochPlan> {
        self.epochs().find(|planned| planned.epoch == epoch)
    }

    /// Whether a checkpoint is written after global epoch `epoch`: every `checkpoint_every`
    /// epochs and at the end of each phase.
    pub fn checkpoint_after(&self, epoch: u32) -> bool {
        // `checked_rem` is `None` for a period of 0 (phase ends only).
        let periodic = epoch.checked_rem(self.checkpoint_every) == Some(0);
        periodic || self.is_phase_end(epoch)
    }

    /// Whether the test split is evaluated after global epoch `epoch`: every `eval_every`
    /// epochs and after the last epoch of each phase.
    pub fn evaluate_after(&self, epoch: u32) -> bool {
        epoch.checked_rem(self.eval_every) == Some(0) || self.is_phase_end(epoch)
    }

    /// Whether `epoch` is the last epoch of its phase.
    pub fn is_phase_end(&self, epoch: u32) -> bool {
        self.phases
            .iter()
            .any(|phase| phase.first_epoch + phase.epochs - 1 == epoch)
    }

    /// The plan as text: one paragraph per phase, then its epochs grouped into runs of
    /// equal learning rate.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let total = self.total_epochs();
        let count = self.phases.len();
        let variant = self.variant.name();
        let _ = writeln!(
            text,
            "{}: variant {variant}, {total} epochs in {count} phase(s)",
            self.name
        );
        for phase in &self.phases {
            let last = phase.first_epoch + phase.epochs - 1;
            let _ = writeln!(
                text,
                "phase {}: {}, epochs {}-{last} ({} epochs), {}, lr {} {}",
                phase.phase,
                describe_activation(&phase.activation),
                phase.first_epoch,
                phase.epochs,
                describe_start(&phase.start, phase.carry_momentum),
                format_lr(phase.base_lr),
                phase.schedule.describe(),
            );
            for (from, to, lr) in lr_runs(phase) {
                let span = if from == to {
                    format!("{from}")
                } else {
                    format!("{from}-{to}")
                };
                let _ = writeln!(text, "  epoch {span:>9}  lr {}", format_lr(lr));
            }
        }
        text
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a plain constructor of PhasePlan's fields"
)]
fn phase(
    number: u8,
    activation: PhaseActivation,
    start: PhaseStart,
    carry_momentum: bool,
    epochs: u32,
    first_epoch: u32,
    base_lr: f64,
    schedule: Schedule,
) -> PhasePlan {
    let lrs = schedule.rates(base_lr, epochs);
    PhasePlan {
        phase: number,
        activation,
        start,
        carry_momentum,
        epochs,
        first_epoch,
        base_lr,
        schedule,
        lrs,
    }
}

/// Runs of consecutive epochs with the same rate: `(first, last, lr)`, global numbers.
fn lr_runs(phase: &PhasePlan) -> Vec<(u32, u32, f64)> {
    let mut runs: Vec<(u32, u32, f64)> = Vec::new();
    for (index, &lr) in phase.lrs.iter().enumerate() {
        let epoch = phase.first_epoch + index as u32;
        match runs.last_mut() {
            Some(run) if run.2 == lr => run.1 = epoch,
            _ => runs.push((epoch, epoch, lr)),
        }
    }
    runs
}

/// A rate rounded to 10 significant digits, printed in its shortest form, so that
/// `0.1 · 0.2` shows as `0.02` and not `0.020000000000000004`.
pub fn format_lr(lr: f64) -> String {
    let rounded: f64 = format!("{lr:.9e}").parse().unwrap_or(lr);
    format!("{rounded}")
}

fn describe_activation(activation: &PhaseActivation) -> String {
    match activation {
        PhaseActivation::Single(name) => name.name().to_string(),
        PhaseActivation::Mix { activations, beta } => {
            let terms: Vec<String> = activations
                .iter()
                .zip(beta)
                .map(|(name, weight)| format!("{weight}·{}", name.name()))
                .collect();
            format!("mix {}", terms.join(" + "))
        }
    }
}

fn describe_start(start: &PhaseStart, carry_momentum: bool) -> String {
    let momentum = if carry_momentum {
        "momentum carried"
    } else {
        "momentum restarts"
    };
    match start {
        PhaseStart::Fresh => "freshly initialised".to_string(),
        PhaseStart::Lower(target) => format!("lowered to {} ({momentum})", target.name()),
        PhaseStart::Continue => format!("same network continues ({momentum})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(variant: &str, extra: &str) -> Experiment {
        let text = format!(
            "model: {{file: m.coop}}\ndataset: {{kind: cifar10, path: /d}}\nbatch_size: 64\n\
             optimizer: {{lr: 0.1, momentum: 0.9}}\nvariant: {variant}\n\
             phase1: {{fraction: 0.2, schedule: {{step: {{every: 10, factor: 0.2}}}}}}\n\
             phase2: {{epochs: 300, schedule: {{step: {{every: 50, factor: 0.2}}}}}}\n{extra}"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    #[test]
    fn mix_trains_the_mix_then_lowers_to_the_target() {
        let plan = Plan::new(&experiment("mix", "target: prelu"));
        let [phase1, phase2] = &plan.phases[..] else {
            panic!("{plan:?}")
        };
        assert!(matches!(&phase1.activation, PhaseActivation::Mix { beta, .. } if beta.len() == 4));
        assert_eq!((phase1.epochs, phase1.first_epoch), (60, 1));
        assert_eq!(phase2.start, PhaseStart::Lower(ActivationName::Prelu));
        assert_eq!(
            phase2.activation,
            PhaseActivation::Single(ActivationName::Prelu)
        );
        assert_eq!((phase2.epochs, phase2.first_epoch), (300, 61));
        assert_eq!(plan.total_epochs(), 360);
        assert!((phase1.lrs[10] - 0.02).abs() < 1e-15);
        assert!((phase2.lrs[50] - 0.02).abs() < 1e-15);
    }

    #[test]
    fn each_variant_gets_its_phases() {
        let shape = |variant: &str, extra: &str| {
            let plan = Plan::new(&experiment(variant, extra));
            let phases: Vec<(PhaseActivation, PhaseStart)> = plan
                .phases
                .iter()
                .map(|p| (p.activation.clone(), p.start.clone()))
                .collect();
            phases
        };
        use ActivationName::*;
        use PhaseActivation::Single;
        assert_eq!(
            shape("baseline", "target: elu"),
            vec![(Single(Elu), PhaseStart::Fresh)]
        );
        assert_eq!(
            shape("wnla", ""),
            vec![(Single(Identity), PhaseStart::Fresh)]
        );
        let tpt = shape("baseline-tpt", "");
        assert_eq!(tpt[0], (Single(Relu), PhaseStart::Fresh));
        assert_eq!(tpt[1], (Single(Relu), PhaseStart::Continue));
        let mixture = shape("mixture", "");
        assert!(matches!(
            mixture[1],
            (PhaseActivation::Mix { .. }, PhaseStart::Continue)
        ));
    }

    #[test]
    fn epochs_are_numbered_globally_with_their_phase_rates() {
        let mut short_phase1 = experiment("mix", "");
        (short_phase1.phase1.fraction, short_phase1.phase1.epochs) = (None, Some(3));
        let plan = Plan::new(&short_phase1);
        let epochs: Vec<EpochPlan> = plan.epochs().collect();
        assert_eq!(epochs.len(), 303);
        assert_eq!(
            (epochs[2].epoch, epochs[2].phase, epochs[2].phase_epoch),
            (3, 1, 3)
        );
        assert_eq!(
            (epochs[3].epoch, epochs[3].phase, epochs[3].phase_epoch),
            (4, 2, 1)
        );
        assert_eq!(plan.epoch(4).unwrap().lr, 0.1);
        assert_eq!(plan.epoch(304), None);
    }

    #[test]
    fn momentum_carries_only_into_a_second_phase_when_asked() {
        let mut carried = experiment("mix", "");
        carried.optimizer.carry_momentum = true;
        assert!(Plan::new(&carried).phases[1].carry_momentum);
        assert!(!Plan::new(&carried).phases[0].carry_momentum);
        carried.variant = Variant::Baseline;
        assert!(!Plan::new(&carried).phases[0].carry_momentum);
        assert!(!Plan::new(&experiment("mix", "")).phases[1].carry_momentum);
    }

    #[test]
    fn checkpoints_and_evaluations_fall_on_their_periods_and_phase_ends() {
        let mut every_seven = experiment("mix", "");
        (every_seven.checkpoint_every, every_seven.eval_every) = (7, 50);
        let plan = Plan::new(&every_seven);
        let saved: Vec<u32> = (1..=360)
            .filter(|&epoch| plan.checkpoint_after(epoch))
            .collect();
        assert_eq!(&saved[..3], &[7, 14, 21]);
        assert!(saved.contains(&60) && saved.contains(&360) && !saved.contains(&61));
        let evaluated: Vec<u32> = (1..=360)
            .filter(|&epoch| plan.evaluate_after(epoch))
            .collect();
        assert_eq!(&evaluated[..3], &[50, 60, 100]);
        every_seven.checkpoint_every = 0;
        let ends_only = Plan::new(&every_seven);
        let saved: Vec<u32> = (1..=360)
            .filter(|&epoch| ends_only.checkpoint_after(epoch))
            .collect();
        assert_eq!(saved, vec![60, 360]);
    }

    #[test]
    fn render_lists_every_epoch_range_and_rate() {
        let text = Plan::new(&experiment("mix", "name: demo")).render();
        assert!(
            text.starts_with("demo: variant mix, 360 epochs in 2 phase(s)\n"),
            "{text}"
        );
        assert!(
            text.contains("phase 1: mix 0.25·relu + 0.25·prelu"),
            "{text}"
        );
        assert!(text.contains("epoch      1-10  lr 0.1\n"), "{text}");
        assert!(text.contains("epoch    61-110  lr 0.1\n"), "{text}");
        assert!(
            text.contains("lowered to relu (momentum restarts)"),
            "{text}"
        );
        assert!(text.contains("epoch   111-160  lr 0.02\n"), "{text}");
        assert!(text.contains("epoch   311-360  lr 0.000032\n"), "{text}");
        assert_eq!(text.matches("  epoch ").count(), 6 + 6);
        assert_eq!(format_lr(0.1 * 0.2), "0.02");
    }
}
