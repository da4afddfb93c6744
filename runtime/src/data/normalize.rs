//! Per-channel normalisation, `x = (pixel / 255 − mean_c) / std_c`, with the constants used
//! throughout the literature for each data set (all on the 0–1 scale, computed over the
//! training split):
//!
//! | data set | mean | std |
//! | --- | --- | --- |
//! | MNIST | 0.1307 | 0.3081 |
//! | Fashion-MNIST | 0.2860 | 0.3530 |
//! | CIFAR-10 | 0.4914, 0.4822, 0.4465 | 0.2470, 0.2435, 0.2616 |
//! | CIFAR-100 | 0.5071, 0.4865, 0.4409 | 0.2673, 0.2564, 0.2762 |
//! | ImageNet | 0.485, 0.456, 0.406 | 0.229, 0.224, 0.225 |
//!
//! The CIFAR standard deviations are those of the pixels themselves (what
//! `train.data.std(axis=(0,1,2)) / 255` gives), not the 0.2023/0.1994/0.2010 that circulate
//! in some training scripts (those are averages of per-image deviations).
//!
//! Invariant: a pixel value maps to the same `f32` however it is reached (the table is
//! computed once, in `f32`, by the formula above), so augmented and plain batches agree on
//! every pixel they share.

use super::DatasetKind;

/// Mean and standard deviation per channel, on the 0–1 scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The constants of the table above for `kind`.
    pub fn for_kind(kind: DatasetKind) -> Normalization {
        let (mean, std): (&[f32], &[f32]) = match kind {
            DatasetKind::Mnist => (&[0.1307], &[0.3081]),
            DatasetKind::FashionMnist => (&[0.2860], &[0.3530]),
            DatasetKind::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            DatasetKind::Cifar100 => (&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
            DatasetKind::Imagenet => (&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]),
        };
        Normalization {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    /// No normalisation beyond scaling to 0–1: mean 0, deviation 1 for `channels` channels.
    pub fn unit(channels: usize) -> Normalization {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The 256 normalised values of each channel, indexed by the raw byte.
    pub fn table(&self) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&mean, &std)| {
                let mut table = [0.0f32; 256];
                for (byte, slot) in table.iter_mut().enumerate() {
                    *slot = (byte as f32 / 255.0 - mean) / std;
                }
                table
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_applies_the_formula_per_channel() {
        let table = Normalization::for_kind(DatasetKind::Cifar10).table();
        assert_eq!(table.len(), 3);
        assert!((table[0][0] - (-0.4914 / 0.2470)).abs() < 1e-6);
        assert!((table[2][255] - (1.0 - 0.4465) / 0.2616).abs() < 1e-6);
        let unit = Normalization::unit(1).table();
        assert_eq!((unit[0][0], unit[0][255]), (0.0, 1.0));
    }

    #[test]
    fn every_kind_has_one_constant_per_channel() {
        for (kind, channels) in [
            (DatasetKind::Mnist, 1),
            (DatasetKind::FashionMnist, 1),
            (DatasetKind::Cifar10, 3),
            (DatasetKind::Cifar100, 3),
            (DatasetKind::Imagenet, 3),
        ] {
            let normalization = Normalization::for_kind(kind);
            assert_eq!(
                (normalization.mean.len(), normalization.std.len()),
                (channels, channels)
            );
        }
    }
}
