//! Crossing the phase boundary: the next phase's persistent tensors start from the previous
//! phase's values wherever the name exists in both (weights, biases, BatchNorm parameters and
//! running statistics, and PReLU slopes when phase 2 keeps them), and from their fresh
//! initial values elsewhere. Momentum buffers cross only when the plan says so; otherwise
//! they restart at their initial value (zero), as a new PyTorch optimizer would.
//!
//! Invariant: the result holds exactly the next model's persistent tensors, each with the
//! shape of its slot; every name of the previous phase is accounted for in the report as
//! carried or dropped, and every name of the next phase as carried, restarted or fresh.

use super::{PhaseModel, TensorKind, TrainError};
use crate::program::ParamStore;

/// What crossed a phase boundary, by tensor name (each list sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CarryReport {
    /// The phase left.
    pub from_phase: u8,
    /// The phase entered.
    pub to_phase: u8,
    /// Tensors whose values crossed.
    pub carried: Vec<String>,
    /// Tensors of the previous phase the next one does not have (e.g. PReLU slopes of the
    /// mix when phase 2 is plain ReLU), with their number of values.
    pub dropped: Vec<(String, usize)>,
    /// Tensors of both phases that start again from their initial value (momentum buffers
    /// when momentum does not carry).
    pub restarted: Vec<String>,
    /// Tensors only the next phase has, freshly initialised.
    pub fresh: Vec<String>,
}

impl CarryReport {
    /// The number of values dropped.
    pub fn dropped_values(&self) -> usize {
        self.dropped.iter().map(|(_, count)| count).sum()
    }
}

/// The persistent tensors of `next` at the start of its phase, given `previous`, the store
/// at the end of the phase before.
///
/// # Errors
///
/// [`TrainError::CarryShape`] when a tensor of both phases changes shape.
pub fn carry_into(
    previous: &ParamStore,
    next: &PhaseModel,
    carry_momentum: bool,
    (from_phase, to_phase): (u8, u8),
) -> Result<(ParamStore, CarryReport), TrainError> {
    let mut store = next.initial.clone();
    let mut report = CarryReport {
        from_phase,
        to_phase,
        ..CarryReport::default()
    };
    for (name, fresh) in store.tensors.iter_mut() {
        let Some(old) = previous.get(name) else {
            report.fresh.push(name.clone());
            continue;
        };
        if old.shape != fresh.shape || old.dtype() != fresh.dtype() {
            return Err(TrainError::CarryShape {
                name: name.clone(),
                phase: from_phase,
                next: to_phase,
                from: old.shape.clone(),
                to: fresh.shape.clone(),
            });
        }
        if next.kind(name) == TensorKind::Optimizer && !carry_momentum {
            report.restarted.push(name.clone());
        } else {
            *fresh = old.clone();
            report.carried.push(name.clone());
        }
    }
    for (name, tensor) in &previous.tensors {
        if store.get(name).is_none() {
            report.dropped.push((name.clone(), tensor.len()));
        }
    }
    Ok((store, report))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::program::{HostTensor, Program};

    fn model(tensors: &[(&str, usize, TensorKind, f32)]) -> PhaseModel {
        let mut initial = ParamStore::default();
        let mut kinds = BTreeMap::new();
        for &(name, len, kind, value) in tensors {
            initial.insert(name, HostTensor::f32(vec![len], vec![value; len]));
            kinds.insert(name.to_string(), kind);
        }
        let program = Program {
            mlir: String::new(),
            tensors: Vec::new(),
            entries: Vec::new(),
            max_batch: 1,
            arena_bytes: 0,
        };
        PhaseModel {
            program,
            initial,
            kinds,
        }
    }

    fn values(store: &ParamStore, name: &str) -> Vec<f32> {
        store.get(name).unwrap().as_f32().unwrap().to_vec()
    }

    #[test]
    fn shared_names_carry_slopes_drop_and_momentum_restarts() {
        use TensorKind::*;
        let phase1 = model(&[
            ("conv.weight", 4, Trained, 1.0),
            ("conv.weight.momentum", 4, Optimizer, 2.0),
            ("bn.running_mean", 2, Statistic, 3.0),
            ("act.prelu.slope", 1, Trained, 0.3),
        ]);
        let phase2 = model(&[
            ("conv.weight", 4, Trained, 0.0),
            ("conv.weight.momentum", 4, Optimizer, 0.0),
            ("bn.running_mean", 2, Statistic, 0.0),
            ("new.bias", 3, Trained, 9.0),
        ]);
        let (store, report) = carry_into(&phase1.initial, &phase2, false, (1, 2)).unwrap();
        assert_eq!(values(&store, "conv.weight"), vec![1.0; 4]);
        assert_eq!(values(&store, "bn.running_mean"), vec![3.0; 2]);
        assert_eq!(values(&store, "conv.weight.momentum"), vec![0.0; 4]);
        assert_eq!(values(&store, "new.bias"), vec![9.0; 3]);
        assert_eq!(store.tensors.len(), 4);
        assert_eq!(report.carried, vec!["bn.running_mean", "conv.weight"]);
        assert_eq!(report.restarted, vec!["conv.weight.momentum"]);
        assert_eq!(report.dropped, vec![("act.prelu.slope".to_string(), 1)]);
        assert_eq!(report.fresh, vec!["new.bias"]);
        assert_eq!(report.dropped_values(), 1);

        let (store, report) = carry_into(&phase1.initial, &phase2, true, (1, 2)).unwrap();
        assert_eq!(values(&store, "conv.weight.momentum"), vec![2.0; 4]);
        assert!(report.restarted.is_empty());
    }

    #[test]
    fn a_tensor_that_changes_shape_is_refused() {
        let phase1 = model(&[("w", 4, TensorKind::Trained, 1.0)]);
        let phase2 = model(&[("w", 5, TensorKind::Trained, 1.0)]);
        let error = carry_into(&phase1.initial, &phase2, false, (1, 2)).unwrap_err();
        assert!(
            matches!(&error, TrainError::CarryShape { name, .. } if name == "w"),
            "{error:?}"
        );
        assert!(error.to_string().contains("[4]"), "{error}");
    }
}
