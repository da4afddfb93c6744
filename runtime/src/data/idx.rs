//! The IDX format of MNIST and Fashion-MNIST: images (magic 0x00000803, then count, rows and
//! columns as big-endian u32, then the pixels) and labels (magic 0x00000801, then count, then
//! one byte per label); each file gzipped or raw.
//!
//! Invariant: a file is accepted only when its magic is right and its length is exactly the
//! header plus the product of its dimensions, and a pair only when both files hold the same
//! count; otherwise the error names the file and the mismatch.

use std::path::Path;

use super::source::{find_file, read_maybe_gzip};
use super::{DataError, Dataset, Split};

/// Magic of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST and Fashion-MNIST both have ten classes.
const CLASSES: usize = 10;

/// The header and body of one IDX file.
struct IdxFile<'a> {
    dims: Vec<usize>,
    body: &'a [u8],
}

/// Checks the magic and the exact length, and splits the header from the body.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    meaning: &'static str,
) -> Result<IdxFile<'a>, DataError> {
    let dim_count = (magic & 0xff) as usize;
    let header_len = 4 + 4 * dim_count;
    let truncated = |what: String, expected| DataError::Truncated {
        path: path.to_path_buf(),
        what,
        expected,
        found: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(truncated("the magic number".into(), 4));
    }
    let found = read_u32(bytes, 0);
    if found != magic {
        let path = path.to_path_buf();
        return Err(DataError::BadMagic {
            path,
            expected: magic,
            found,
            meaning,
        });
    }
    if bytes.len() < header_len {
        return Err(truncated("the header".into(), header_len));
    }

    let dims: Vec<usize> = (0..dim_count)
        .map(|i| read_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let body_len = dims
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim));
    let what = format!(
        "{} entries of shape {:?}",
        dims.first().unwrap_or(&0),
        &dims[1..]
    );
    let expected = body_len
        .and_then(|len| len.checked_add(header_len))
        .unwrap_or(usize::MAX);
    if bytes.len() < expected {
        return Err(truncated(what, expected));
    }
    if bytes.len() > expected {
        let path = path.to_path_buf();
        return Err(DataError::TrailingBytes {
            path,
            what,
            expected,
            found: bytes.len(),
        });
    }
    Ok(IdxFile {
        dims,
        body: &bytes[header_len..],
    })
}

/// A big-endian u32 at `offset` (the caller has checked the length).
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(word)
}

/// Reads an IDX image file: `(count, rows, columns, pixels)`.
///
/// # Errors
///
/// Unreadable or corrupt gzip files, a wrong magic number, a truncated file or bytes beyond
/// the described images.
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let file = parse(
        path,
        &bytes,
        IMAGES_MAGIC,
        "unsigned bytes, 3 dimensions: images",
    )?;
    let [count, rows, columns] = [file.dims[0], file.dims[1], file.dims[2]];
    Ok((count, rows, columns, file.body.to_vec()))
}

/// Reads an IDX label file: one byte per sample.
///
/// # Errors
///
/// As [`read_images`].
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let file = parse(
        path,
        &bytes,
        LABELS_MAGIC,
        "unsigned bytes, 1 dimension: labels",
    )?;
    Ok(file.body.to_vec())
}

/// Reads an image file and its label file into one data set of `[1, rows, columns]` images.
///
/// # Errors
///
/// Anything [`read_images`] reports, plus [`DataError::CountMismatch`] when the two files
/// disagree, [`DataError::Empty`] when they hold nothing and
/// [`DataError::LabelOutOfRange`] for a label of 10 or more.
pub fn load_pair(images_path: &Path, labels_path: &Path, name: &str) -> Result<Dataset, DataError> {
    let (image_count, rows, columns, pixels) = read_images(images_path)?;
    let raw_labels = read_labels(labels_path)?;
    if image_count != raw_labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            image_count,
            labels: labels_path.to_path_buf(),
            label_count: raw_labels.len(),
        });
    }
    if image_count == 0 {
        return Err(DataError::Empty {
            path: images_path.to_path_buf(),
        });
    }
    if let Some(index) = raw_labels
        .iter()
        .position(|&label| usize::from(label) >= CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            index,
            label: u32::from(raw_labels[index]),
            classes: CLASSES,
        });
    }
    let labels = raw_labels.into_iter().map(u16::from).collect();
    Ok(Dataset::from_parts(
        name,
        pixels,
        labels,
        [1, rows, columns],
        CLASSES,
    ))
}

/// Loads one split from a directory holding the four files as distributed
/// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-…`; each maybe `.gz`).
///
/// # Errors
///
/// [`DataError::NotFound`] when a file is missing, else as [`load_pair`].
pub fn load_dir(dir: &Path, split: Split, name: &str) -> Result<Dataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    // Some mirrors spell the second separator with a dot (`train-images.idx3-ubyte`).
    let image_names = [
        format!("{prefix}-images-idx3-ubyte"),
        format!("{prefix}-images.idx3-ubyte"),
    ];
    let label_names = [
        format!("{prefix}-labels-idx1-ubyte"),
        format!("{prefix}-labels.idx1-ubyte"),
    ];
    let image_refs: Vec<&str> = image_names.iter().map(String::as_str).collect();
    let label_refs: Vec<&str> = label_names.iter().map(String::as_str).collect();
    let images = find_file(dir, &image_refs, &format!("{prefix} images"))?;
    let labels = find_file(dir, &label_refs, &format!("{prefix} labels"))?;
    load_pair(&images, &labels, &format!("{name} {}", split.name()))
}

/// Writers of IDX files for tests (here and in other modules).
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;

    /// An IDX image file: header plus `pixels`.
    pub fn images(count: u32, rows: u32, columns: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = super::IMAGES_MAGIC.to_be_bytes().to_vec();
        for dim in [count, rows, columns] {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    /// An IDX label file.
    pub fn labels(labels: &[u8]) -> Vec<u8> {
        let mut bytes = super::LABELS_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        bytes.extend_from_slice(labels);
        bytes
    }

    /// `bytes` gzipped.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Pixels of `count` images of `rows x columns` where image `i` is filled with `i`.
    pub fn constant_images(count: u8, rows: usize, columns: usize) -> Vec<u8> {
        (0..count)
            .flat_map(|i| std::iter::repeat_n(i, rows * columns))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_raw_and_gzipped_pairs_identically() {
        let dir = tempfile::tempdir().unwrap();
        let image_bytes = images(3, 2, 2, &constant_images(3, 2, 2));
        let label_bytes = labels(&[4, 0, 9]);
        let raw_images = write(dir.path(), "i", &image_bytes);
        let raw_labels = write(dir.path(), "l", &label_bytes);
        let gz_images = write(dir.path(), "i.gz", &gzip(&image_bytes));
        let gz_labels = write(dir.path(), "l.gz", &gzip(&label_bytes));

        let raw = load_pair(&raw_images, &raw_labels, "raw").unwrap();
        let zipped = load_pair(&gz_images, &gz_labels, "gz").unwrap();
        assert_eq!(raw.images, zipped.images);
        assert_eq!(raw.labels, vec![4, 0, 9]);
        assert_eq!(raw.shape, [1, 2, 2]);
        assert_eq!(raw.image(1), &[1, 1, 1, 1]);
        assert_eq!(raw.image(2), &[2, 2, 2, 2]);
        assert_eq!(raw.classes, 10);
    }

    #[test]
    fn wrong_magic_is_reported_with_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        // A label file given where an image file belongs.
        let path = write(dir.path(), "swapped", &labels(&[1, 2]));
        let error = read_images(&path).unwrap_err();
        let DataError::BadMagic {
            expected, found, ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!((*expected, *found), (IMAGES_MAGIC, LABELS_MAGIC));
        let message = error.to_string();
        assert!(
            message.contains("swapped") && message.contains("0x00000803"),
            "{message}"
        );
    }

    #[test]
    fn truncated_header_and_body_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let full = images(2, 3, 3, &[5; 18]);

        let short_body = write(dir.path(), "body", &full[..full.len() - 1]);
        let error = read_images(&short_body).unwrap_err();
        let DataError::Truncated {
            expected, found, ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!((expected, found), (16 + 18, 16 + 17));

        let short_header = write(dir.path(), "header", &full[..10]);
        let error = read_images(&short_header).unwrap_err();
        assert!(error.to_string().contains("the header"), "{error}");

        let tiny = write(dir.path(), "tiny", &full[..2]);
        assert!(matches!(
            read_images(&tiny),
            Err(DataError::Truncated { .. })
        ));
    }

    #[test]
    fn bytes_beyond_the_header_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = labels(&[1, 2, 3]);
        bytes.push(0);
        let path = write(dir.path(), "long", &bytes);
        let error = read_labels(&path).unwrap_err();
        assert!(matches!(
            error,
            DataError::TrailingBytes {
                expected: 11,
                found: 12,
                ..
            }
        ));
    }

    #[test]
    fn mismatched_counts_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let image_path = write(dir.path(), "imgs", &images(3, 1, 1, &[0, 1, 2]));
        let label_path = write(dir.path(), "labs", &labels(&[0, 1]));
        let error = load_pair(&image_path, &label_path, "x").unwrap_err();
        let message = error.to_string();
        assert!(matches!(
            error,
            DataError::CountMismatch {
                image_count: 3,
                label_count: 2,
                ..
            }
        ));
        assert!(
            message.contains("imgs") && message.contains("labs"),
            "{message}"
        );
    }

    #[test]
    fn out_of_range_labels_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image_path = write(dir.path(), "imgs", &images(2, 1, 1, &[0, 1]));
        let label_path = write(dir.path(), "labs", &labels(&[3, 10]));
        let error = load_pair(&image_path, &label_path, "x").unwrap_err();
        assert!(matches!(
            error,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                ..
            }
        ));

        let empty_images = write(dir.path(), "e_imgs", &images(0, 28, 28, &[]));
        let empty_labels = write(dir.path(), "e_labs", &labels(&[]));
        let error = load_pair(&empty_images, &empty_labels, "x").unwrap_err();
        assert!(matches!(error, DataError::Empty { .. }));
    }

    #[test]
    fn load_dir_finds_gzipped_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let train_images = gzip(&images(2, 2, 2, &constant_images(2, 2, 2)));
        write(dir.path(), "train-images-idx3-ubyte.gz", &train_images);
        write(dir.path(), "train-labels-idx1-ubyte", &labels(&[1, 2]));
        let train = load_dir(dir.path(), Split::Train, "fashion-mnist").unwrap();
        assert_eq!(train.len(), 2);
        assert_eq!(train.name, "fashion-mnist train");

        let error = load_dir(dir.path(), Split::Test, "fashion-mnist").unwrap_err();
        assert!(
            error.to_string().contains("t10k-images-idx3-ubyte.gz"),
            "{error}"
        );
    }

    /// Loads the Fashion-MNIST directory layout. It reads the real files of Debian's
    /// `dataset-fashion-mnist` package when they are installed (and then also checks the
    /// published counts and pixel mean); elsewhere it reads a small synthetic copy of the same
    /// layout (gzipped files, balanced classes), so it never passes without reading files.
    #[test]
    fn fashion_mnist_layout_loads_real_files_when_installed_else_synthetic() {
        let installed = Path::new("/usr/share/datasets/fashion-mnist");
        let synthetic = tempfile::tempdir().unwrap();
        let real = installed.join("train-images-idx3-ubyte.gz").is_file();
        let (dir, train_count, test_count) = if real {
            (installed.to_path_buf(), 60000, 10000)
        } else {
            for (prefix, count) in [("train", 60u8), ("t10k", 20)] {
                let pixels = constant_images(count, 28, 28);
                let image_bytes = gzip(&images(u32::from(count), 28, 28, &pixels));
                let label_bytes: Vec<u8> = (0..count).map(|i| i % 10).collect();
                write(
                    synthetic.path(),
                    &format!("{prefix}-images-idx3-ubyte.gz"),
                    &image_bytes,
                );
                let label_file = format!("{prefix}-labels-idx1-ubyte.gz");
                write(synthetic.path(), &label_file, &gzip(&labels(&label_bytes)));
            }
            (synthetic.path().to_path_buf(), 60, 20)
        };

        let train = load_dir(&dir, Split::Train, "fashion-mnist").unwrap();
        let test = load_dir(&dir, Split::Test, "fashion-mnist").unwrap();
        assert_eq!((train.len(), test.len()), (train_count, test_count));
        assert_eq!((train.shape, test.shape), ([1, 28, 28], [1, 28, 28]));
        // Fashion-MNIST is balanced: a tenth of the training images in each class.
        let mut per_class = [0usize; 10];
        train
            .labels
            .iter()
            .for_each(|&label| per_class[usize::from(label)] += 1);
        assert_eq!(per_class, [train_count / 10; 10]);
        if real {
            let sum: f64 = train.images.iter().map(|&pixel| f64::from(pixel)).sum();
            let mean = sum / (train.images.len() as f64 * 255.0);
            assert!((mean - 0.2860).abs() < 0.001, "mean {mean}");
        }
    }
}
