//! Choosing which training images an experiment uses: a reproducible subset (the paper's
//! 25% experiment of Table 7) and a held-out validation split.
//!
//! Both choices are stratified: each class keeps `round(fraction · count)` of its images
//! (at least one for a non-empty class in a subset), picked by a shuffle seeded with the
//! experiment seed and the class, so class balance is kept and the choice depends only on
//! the seed, the labels and the fraction. Invariant: returned index lists are sorted,
//! disjoint, and drawn from the indices given.

use super::DataError;
use crate::rng::Stream;

/// The training images an experiment trains on, and those it holds out for validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrainSplit {
    /// Indices into the training split used for training, ascending.
    pub train: Vec<u32>,
    /// Indices held out for validation, ascending (empty without a validation split).
    pub validation: Vec<u32>,
}

/// The given indices grouped by label, each group in the given order.
fn by_class(labels: &[u16], classes: usize, indices: &[u32]) -> Vec<Vec<u32>> {
    let mut groups = vec![Vec::new(); classes];
    for &index in indices {
        groups[usize::from(labels[index as usize])].push(index);
    }
    groups
}

/// How many of `count` images a `fraction` keeps.
fn kept(count: usize, fraction: f64, at_least_one: bool) -> usize {
    let rounded = (fraction * count as f64).round() as usize;
    let floor = usize::from(at_least_one && count > 0 && fraction > 0.0);
    rounded.clamp(floor, count)
}

/// `Ok` when `valid` holds and `value` is finite, else a [`DataError::BadFraction`].
fn check_fraction(
    what: &'static str,
    value: f64,
    valid: bool,
    range: &'static str,
) -> Result<(), DataError> {
    if valid && value.is_finite() {
        Ok(())
    } else {
        Err(DataError::BadFraction { what, range, value })
    }
}

/// A stratified, reproducible subset of `fraction` of all `labels.len()` images.
///
/// # Errors
///
/// [`DataError::BadFraction`] unless `0 < fraction <= 1`.
pub fn select_subset(
    labels: &[u16],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<Vec<u32>, DataError> {
    check_fraction(
        "the subset fraction",
        fraction,
        fraction > 0.0 && fraction <= 1.0,
        "in (0, 1]",
    )?;
    let all: Vec<u32> = (0..labels.len() as u32).collect();
    if fraction == 1.0 {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for (class, mut group) in by_class(labels, classes, &all).into_iter().enumerate() {
        let keep = kept(group.len(), fraction, true);
        Stream::Subset
            .rng(seed, &[class as u64])
            .shuffle(&mut group);
        chosen.extend_from_slice(&group[..keep]);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// Holds out a stratified `fraction` of `indices` for validation.
///
/// # Errors
///
/// [`DataError::BadFraction`] unless `0 <= fraction < 1`, and [`DataError::EmptySplit`] when
/// nothing would be left to train on.
pub fn split_validation(
    labels: &[u16],
    classes: usize,
    indices: &[u32],
    fraction: f64,
    seed: u64,
) -> Result<TrainSplit, DataError> {
    let valid = (0.0..1.0).contains(&fraction);
    check_fraction("the validation fraction", fraction, valid, "in [0, 1)")?;
    let mut split = TrainSplit::default();
    for (class, mut group) in by_class(labels, classes, indices).into_iter().enumerate() {
        let hold = kept(group.len(), fraction, false);
        Stream::Validation
            .rng(seed, &[class as u64])
            .shuffle(&mut group);
        split.validation.extend_from_slice(&group[..hold]);
        split.train.extend_from_slice(&group[hold..]);
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    if split.train.is_empty() {
        let what = format!("a validation fraction of {fraction}");
        return Err(DataError::EmptySplit {
            what,
            available: indices.len(),
        });
    }
    Ok(split)
}

/// The subset, then the validation split of it: what an experiment's `dataset.subset` and
/// `dataset.validation` select from a training split with these labels.
///
/// # Errors
///
/// As [`select_subset`] and [`split_validation`].
pub fn train_split(
    labels: &[u16],
    classes: usize,
    subset: f64,
    validation: f64,
    seed: u64,
) -> Result<TrainSplit, DataError> {
    let chosen = select_subset(labels, classes, subset, seed)?;
    split_validation(labels, classes, &chosen, validation, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1000 labels, class `i % 4` (250 per class).
    fn labels() -> Vec<u16> {
        (0..1000).map(|i| (i % 4) as u16).collect()
    }

    fn class_counts(labels: &[u16], indices: &[u32]) -> [usize; 4] {
        let mut counts = [0; 4];
        indices
            .iter()
            .for_each(|&index| counts[usize::from(labels[index as usize])] += 1);
        counts
    }

    #[test]
    fn subset_is_reproducible_stratified_and_seed_dependent() {
        let labels = labels();
        let first = select_subset(&labels, 4, 0.25, 7).unwrap();
        assert_eq!(first, select_subset(&labels, 4, 0.25, 7).unwrap());
        assert_ne!(first, select_subset(&labels, 4, 0.25, 8).unwrap());
        assert_eq!(class_counts(&labels, &first), [63, 63, 63, 63]);
        assert!(first.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(select_subset(&labels, 4, 1.0, 7).unwrap().len(), 1000);
    }

    #[test]
    fn subset_fractions_outside_zero_to_one_are_refused() {
        for fraction in [0.0, -0.1, 1.5, f64::NAN] {
            let error = select_subset(&labels(), 4, fraction, 1).unwrap_err();
            assert!(matches!(error, DataError::BadFraction { .. }), "{fraction}");
        }
    }

    #[test]
    fn validation_is_disjoint_stratified_and_covers_the_input() {
        let labels = labels();
        let split = train_split(&labels, 4, 0.5, 0.2, 3).unwrap();
        assert_eq!(class_counts(&labels, &split.validation), [25, 25, 25, 25]);
        assert_eq!(class_counts(&labels, &split.train), [100, 100, 100, 100]);
        let mut all: Vec<u32> = split
            .train
            .iter()
            .chain(&split.validation)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, select_subset(&labels, 4, 0.5, 3).unwrap());

        let none = split_validation(&labels, 4, &[0, 1, 2], 0.0, 3).unwrap();
        assert_eq!((none.train, none.validation), (vec![0, 1, 2], vec![]));
    }

    #[test]
    fn validation_that_takes_everything_is_refused() {
        let labels = labels();
        // One image per class: 0.9 of one rounds to one, so nothing is left for training.
        let error = split_validation(&labels, 4, &[0, 1, 2, 3], 0.9, 1).unwrap_err();
        assert!(
            matches!(error, DataError::EmptySplit { available: 4, .. }),
            "{error:?}"
        );
        assert!(split_validation(&labels, 4, &[0], 1.0, 1).is_err());
    }
}
