//! Learning-rate schedules, one per training phase, evaluated once per epoch (the learning
//! rate is constant within an epoch, as with PyTorch's schedulers stepped after each epoch).
//!
//! With `base` the phase's initial rate, `e` the epoch within the phase counted from 0 and
//! `E` the phase's length:
//! - `constant`: `base`;
//! - `step: {every: k, factor: f}`: `base · f^⌊e / k⌋` (PyTorch `StepLR`; the paper's
//!   "divided by 5 every 50 epochs" is `every: 50, factor: 0.2`);
//! - `multistep: {milestones: [m₁, m₂, …], factor: f}`: `base · f^(number of mᵢ ≤ e)`
//!   (PyTorch `MultiStepLR`);
//! - `cosine`: `base · (1 + cos(π·e/E)) / 2`, falling from `base` towards 0 over the phase
//!   (PyTorch `CosineAnnealingLR` with `T_max = E`, `eta_min = 0`).
//!
//! Invariant: [`Schedule::lr_at`] is a pure function of the schedule, `base`, `e` and `E`,
//! so the rate of any epoch can be recomputed on resume without replaying earlier epochs.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule over one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout (the default).
    #[default]
    Constant,
    /// Multiply by `factor` every `every` epochs.
    Step {
        /// Epochs between decays (at least 1).
        every: u32,
        /// Multiplier applied at each decay (in `(0, 1]` for a decay).
        factor: f64,
    },
    /// Multiply by `factor` at each milestone epoch (counted from 0 within the phase).
    Multistep {
        /// Epochs at which the rate drops, strictly increasing.
        milestones: Vec<u32>,
        /// Multiplier applied at each milestone.
        factor: f64,
    },
    /// Half a cosine from `base` down to 0 over the phase.
    Cosine,
}

/// A problem with a schedule's numbers: the key (relative to the schedule) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleIssue {
    /// The offending key, e.g. `step.every`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl Schedule {
    /// The learning rate of epoch `epoch` (from 0) of a phase of `epochs` epochs.
    pub fn lr_at(&self, base: f64, epoch: u32, epochs: u32) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { every, factor } => {
                base * factor.powi((epoch / (*every).max(1)) as i32)
            }
            Schedule::Multistep { milestones, factor } => {
                let passed = milestones
                    .iter()
                    .filter(|&&milestone| milestone <= epoch)
                    .count();
                base * factor.powi(passed as i32)
            }
            Schedule::Cosine => {
                let progress = f64::from(epoch) / f64::from(epochs.max(1));
                base * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
        }
    }

    /// The rate of every epoch of a phase of `epochs` epochs.
    pub fn rates(&self, base: f64, epochs: u32) -> Vec<f64> {
        (0..epochs)
            .map(|epoch| self.lr_at(base, epoch, epochs))
            .collect()
    }

    /// Everything wrong with the schedule's numbers (empty when it is sound).
    pub fn issues(&self) -> Vec<ScheduleIssue> {
        let mut issues = Vec::new();
        let mut report = |key: &str, message: String| {
            issues.push(ScheduleIssue {
                key: key.to_string(),
                message,
            });
        };
        let factor_ok = |factor: f64| factor.is_finite() && factor > 0.0;
        match self {
            Schedule::Constant | Schedule::Cosine => {}
            Schedule::Step { every, factor } => {
                if *every == 0 {
                    report("step.every", "must be at least 1 epoch".into());
                }
                if !factor_ok(*factor) {
                    report(
                        "step.factor",
                        format!("must be a positive number, got {factor}"),
                    );
                }
            }
            Schedule::Multistep { milestones, factor } => {
                if milestones.windows(2).any(|pair| pair[0] >= pair[1]) {
                    let message = format!("must be strictly increasing, got {milestones:?}");
                    report("multistep.milestones", message);
                }
                if !factor_ok(*factor) {
                    report(
                        "multistep.factor",
                        format!("must be a positive number, got {factor}"),
                    );
                }
            }
        }
        issues
    }

    /// A short description for plans and logs: `step every 50 × 0.2`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Constant => "constant".to_string(),
            Schedule::Step { every, factor } => format!("step every {every} × {factor}"),
            Schedule::Multistep { milestones, factor } => {
                format!("multistep at {milestones:?} × {factor}")
            }
            Schedule::Cosine => "cosine to 0".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_divides_by_five_every_fifty_epochs() {
        let schedule = Schedule::Step {
            every: 50,
            factor: 0.2,
        };
        let rates = schedule.rates(0.1, 300);
        assert_eq!(rates[0], 0.1);
        assert_eq!(rates[49], 0.1);
        assert!((rates[50] - 0.02).abs() < 1e-15);
        assert!((rates[100] - 0.004).abs() < 1e-15);
        assert!((rates[299] - 0.1 * 0.2f64.powi(5)).abs() < 1e-18);
    }

    #[test]
    fn multistep_drops_at_each_milestone() {
        let schedule = Schedule::Multistep {
            milestones: vec![3, 5],
            factor: 0.1,
        };
        let rates = schedule.rates(1.0, 7);
        let expected = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1f64 * 0.1, 0.1 * 0.1];
        for (rate, expected) in rates.iter().zip(expected) {
            assert!((rate - expected).abs() < 1e-15, "{rates:?}");
        }
    }

    #[test]
    fn cosine_starts_at_base_and_halves_midway() {
        let rates = Schedule::Cosine.rates(0.4, 10);
        assert_eq!(rates[0], 0.4);
        assert!((rates[5] - 0.2).abs() < 1e-15);
        assert!(rates.windows(2).all(|pair| pair[1] < pair[0]));
        assert!(rates[9] > 0.0);
        assert_eq!(Schedule::Constant.rates(0.3, 3), vec![0.3; 3]);
    }

    /// How experiment files hold a schedule: a field read through `singleton_map`, so that
    /// variants are written `step: {...}` rather than with YAML tags.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        #[serde(with = "serde_yaml::with::singleton_map")]
        schedule: Schedule,
    }

    fn parse(text: &str) -> Result<Schedule, serde_yaml::Error> {
        serde_yaml::from_str::<Holder>(text).map(|holder| holder.schedule)
    }

    #[test]
    fn schedules_parse_from_yaml_and_refuse_unknown_keys() {
        let step = parse("schedule: {step: {every: 10, factor: 0.2}}").unwrap();
        assert_eq!(
            step,
            Schedule::Step {
                every: 10,
                factor: 0.2
            }
        );
        assert_eq!(parse("schedule: cosine").unwrap(), Schedule::Cosine);
        let multistep = parse("schedule:\n  multistep:\n    milestones: [2, 4]\n    factor: 0.5");
        assert_eq!(
            multistep.unwrap(),
            Schedule::Multistep {
                milestones: vec![2, 4],
                factor: 0.5
            }
        );
        assert!(parse("schedule: {step: {every: 10, factr: 0.2}}").is_err());
        assert!(parse("schedule: linear").is_err());
    }

    #[test]
    fn bad_numbers_are_reported_by_key() {
        let issues = Schedule::Step {
            every: 0,
            factor: -1.0,
        }
        .issues();
        let keys: Vec<&str> = issues.iter().map(|issue| issue.key.as_str()).collect();
        assert_eq!(keys, vec!["step.every", "step.factor"]);
        let issues = Schedule::Multistep {
            milestones: vec![5, 5],
            factor: 0.1,
        }
        .issues();
        assert_eq!(issues[0].key, "multistep.milestones");
        assert!(Schedule::Cosine.issues().is_empty());
    }
}
