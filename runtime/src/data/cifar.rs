//! The CIFAR binary formats. CIFAR-10: records of 3073 bytes (a label byte, then 1024 red,
//! 1024 green and 1024 blue bytes, each plane row-major 32x32) in `data_batch_1.bin` …
//! `data_batch_5.bin` and `test_batch.bin`. CIFAR-100: records of 3074 bytes (a coarse label
//! byte, a fine label byte, then the same pixels) in `train.bin` and `test.bin`.
//!
//! Invariant: a record's planes land in channels 0, 1, 2 in file order (so images are CHW as
//! stored), the record count comes from the file length, which must be a whole number of
//! records, and every label is checked against the class count.

use std::path::{Path, PathBuf};

use super::source::{find_file, read_maybe_gzip, resolve_folder};
use super::{DataError, Dataset, Split};

/// Shape of every CIFAR image: `[channels, height, width]`.
pub const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
/// Pixel bytes per record.
const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to train on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the default, and what the paper reports).
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// How one variant of the format lays out a record.
struct Layout {
    /// Label bytes before the pixels.
    label_bytes: usize,
    /// Which of those bytes is the label used.
    label_offset: usize,
    /// Number of classes of that label.
    classes: usize,
}

impl Layout {
    fn record(&self) -> usize {
        self.label_bytes + PIXELS
    }
}

/// Parses one file's records, appending pixels and labels.
fn parse_file(
    path: &Path,
    layout: &Layout,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let record = layout.record();
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() % record != 0 {
        let path = path.to_path_buf();
        return Err(DataError::RecordLength {
            path,
            length: bytes.len(),
            record,
        });
    }

    pixels.reserve(bytes.len() / record * PIXELS);
    for (index, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[layout.label_offset];
        if usize::from(label) >= layout.classes {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index,
                label: u32::from(label),
                classes: layout.classes,
            });
        }
        labels.push(u16::from(label));
        pixels.extend_from_slice(&chunk[layout.label_bytes..]);
    }
    Ok(())
}

/// Reads CIFAR files in the given layout, in order, into one data set.
fn load_files(paths: &[PathBuf], layout: &Layout, name: &str) -> Result<Dataset, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        parse_file(path, layout, &mut pixels, &mut labels)?;
    }
    Ok(Dataset::from_parts(
        name,
        pixels,
        labels,
        IMAGE_SHAPE,
        layout.classes,
    ))
}

/// Reads CIFAR-10 files (each a whole number of 3073-byte records), in order.
///
/// # Errors
///
/// Unreadable files, a length that is not a multiple of 3073, an empty file, or a label of
/// 10 or more; each error names the file.
pub fn load_cifar10_files(paths: &[PathBuf], name: &str) -> Result<Dataset, DataError> {
    let layout = Layout {
        label_bytes: 1,
        label_offset: 0,
        classes: 10,
    };
    load_files(paths, &layout, name)
}

/// Reads CIFAR-100 files (each a whole number of 3074-byte records), in order, keeping the
/// fine or the coarse label.
///
/// # Errors
///
/// As [`load_cifar10_files`], with 3074-byte records and 100 fine or 20 coarse classes.
pub fn load_cifar100_files(
    paths: &[PathBuf],
    which: Cifar100Labels,
    name: &str,
) -> Result<Dataset, DataError> {
    let layout = match which {
        Cifar100Labels::Coarse => Layout {
            label_bytes: 2,
            label_offset: 0,
            classes: 20,
        },
        Cifar100Labels::Fine => Layout {
            label_bytes: 2,
            label_offset: 1,
            classes: 100,
        },
    };
    load_files(paths, &layout, name)
}

/// Loads a CIFAR-10 split from `dir` or from `dir/cifar-10-batches-bin`: the training split
/// is all five `data_batch_N.bin` files (each must exist), the test split `test_batch.bin`.
///
/// # Errors
///
/// [`DataError::NotFound`] for a missing file, else as [`load_cifar10_files`].
pub fn load_cifar10_dir(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let dir = resolve_folder(dir, "test_batch.bin", "cifar-10-batches-bin");
    let paths = match split {
        Split::Train => (1..=5)
            .map(|n| {
                let file = format!("data_batch_{n}.bin");
                find_file(&dir, &[&file], &format!("training batch {n}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Split::Test => vec![find_file(&dir, &["test_batch.bin"], "test batch")?],
    };
    load_cifar10_files(&paths, &format!("cifar10 {}", split.name()))
}

/// Loads a CIFAR-100 split from `dir` or from `dir/cifar-100-binary` (`train.bin`,
/// `test.bin`).
///
/// # Errors
///
/// [`DataError::NotFound`] for a missing file, else as [`load_cifar100_files`].
pub fn load_cifar100_dir(
    dir: &Path,
    split: Split,
    which: Cifar100Labels,
) -> Result<Dataset, DataError> {
    let dir = resolve_folder(dir, "test.bin", "cifar-100-binary");
    let file = format!("{}.bin", split.name());
    let path = find_file(&dir, &[&file], &format!("{} split", split.name()))?;
    load_cifar100_files(&[path], which, &format!("cifar100 {}", split.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record: the label bytes, then planes filled with `red`, `green`, `blue`.
    fn record(label_bytes: &[u8], red: u8, green: u8, blue: u8) -> Vec<u8> {
        let mut bytes = label_bytes.to_vec();
        for value in [red, green, blue] {
            bytes.extend(std::iter::repeat_n(value, 1024));
        }
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn red_green_blue_planes_load_into_channels_0_1_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "b.bin", &record(&[7], 1, 2, 3));
        let data = load_cifar10_files(&[path], "t").unwrap();
        assert_eq!(data.shape, [3, 32, 32]);
        assert_eq!(data.labels, vec![7]);
        let image = data.image(0);
        for (channel, expected) in [(0, 1u8), (1, 2), (2, 3)] {
            let plane = &image[channel * 1024..(channel + 1) * 1024];
            assert!(
                plane.iter().all(|&value| value == expected),
                "channel {channel}"
            );
        }
    }

    #[test]
    fn a_pixel_keeps_its_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(&[0], 0, 0, 0);
        // Green plane, row 5, column 9.
        bytes[1 + 1024 + 5 * 32 + 9] = 200;
        let path = write(dir.path(), "b.bin", &bytes);
        let data = load_cifar10_files(&[path], "t").unwrap();
        assert_eq!(data.image(0)[1024 + 5 * 32 + 9], 200);
        assert_eq!(data.image(0).iter().filter(|&&value| value != 0).count(), 1);
    }

    #[test]
    fn record_count_follows_file_length_and_partial_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(&[1], 9, 9, 9);
        bytes.extend(record(&[2], 8, 8, 8));
        let path = write(dir.path(), "two.bin", &bytes);
        assert_eq!(load_cifar10_files(&[path], "t").unwrap().len(), 2);

        bytes.pop();
        let path = write(dir.path(), "cut.bin", &bytes);
        let error = load_cifar10_files(&[path], "t").unwrap_err();
        assert!(matches!(
            error,
            DataError::RecordLength {
                length: 6145,
                record: 3073,
                ..
            }
        ));
        assert!(error.to_string().contains("cut.bin"), "{error}");

        let path = write(dir.path(), "empty.bin", &[]);
        assert!(matches!(
            load_cifar10_files(&[path], "t"),
            Err(DataError::Empty { .. })
        ));
    }

    #[test]
    fn cifar10_labels_above_nine_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "b.bin", &record(&[10], 0, 0, 0));
        let error = load_cifar10_files(&[path], "t").unwrap_err();
        assert!(matches!(
            error,
            DataError::LabelOutOfRange {
                label: 10,
                classes: 10,
                ..
            }
        ));
    }

    #[test]
    fn cifar100_gives_fine_labels_by_default_and_coarse_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(&[3, 42], 1, 2, 3);
        bytes.extend(record(&[19, 99], 4, 5, 6));
        let path = write(dir.path(), "train.bin", &bytes);

        let fine = load_cifar100_files(std::slice::from_ref(&path), Cifar100Labels::default(), "t")
            .unwrap();
        assert_eq!((fine.labels.clone(), fine.classes), (vec![42, 99], 100));
        assert_eq!(fine.image(1)[0], 4);
        assert_eq!(fine.image(1)[2048], 6);
        let coarse = load_cifar100_files(&[path], Cifar100Labels::Coarse, "t").unwrap();
        assert_eq!((coarse.labels, coarse.classes), (vec![3, 19], 20));

        // A CIFAR-10 record is one byte short of a CIFAR-100 one.
        let path = write(dir.path(), "wrong.bin", &record(&[1], 0, 0, 0));
        let error = load_cifar100_files(&[path], Cifar100Labels::Fine, "t").unwrap_err();
        assert!(matches!(
            error,
            DataError::RecordLength { record: 3074, .. }
        ));
    }

    #[test]
    fn cifar10_training_split_needs_all_five_batches() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&dir).unwrap();
        write(&dir, "test_batch.bin", &record(&[0], 0, 0, 0));
        for n in 1..=4 {
            write(&dir, &format!("data_batch_{n}.bin"), &record(&[n], n, n, n));
        }
        let error = load_cifar10_dir(root.path(), Split::Train).unwrap_err();
        assert!(error.to_string().contains("data_batch_5.bin"), "{error}");

        write(&dir, "data_batch_5.bin", &record(&[5], 5, 5, 5));
        let train = load_cifar10_dir(root.path(), Split::Train).unwrap();
        assert_eq!(train.labels, vec![1, 2, 3, 4, 5]);
        assert_eq!(load_cifar10_dir(&dir, Split::Test).unwrap().len(), 1);
    }

    #[test]
    fn cifar100_dir_reads_train_and_test() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar-100-binary");
        std::fs::create_dir(&dir).unwrap();
        write(&dir, "train.bin", &record(&[1, 11], 0, 0, 0));
        write(&dir, "test.bin", &record(&[2, 22], 0, 0, 0));
        let test = load_cifar100_dir(root.path(), Split::Test, Cifar100Labels::Fine).unwrap();
        assert_eq!(test.labels, vec![22]);
        assert_eq!(test.name, "cifar100 test");
    }
}
