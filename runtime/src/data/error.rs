//! What can be wrong with a data set on disk or with how it is split.
//!
//! Invariant: every variant that concerns a file names that file, and says what was expected
//! and what was found, so a user can fix the file without reading the code. Readers return
//! these errors; they never panic on file contents and never return fewer samples than the
//! headers promise.

use std::path::PathBuf;

/// An error while locating, reading, checking or splitting a data set.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DataError {
    /// The operating system refused to open or read a file.
    #[error("cannot read {path}: {source}")]
    #[diagnostic(code(coopc::data::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// None of the usual file names for a part of a data set exists in the directory.
    #[error("no {what} file in {dir} (looked for: {})", tried.join(", "))]
    #[diagnostic(
        code(coopc::data::not_found),
        help("point `dataset.path` at the directory holding the files as distributed")
    )]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for ("training images", "test batch").
        what: String,
        /// The file names tried.
        tried: Vec<String>,
    },

    /// A gzip stream is corrupt or ends early.
    #[error("{path}: the gzip data is corrupt or truncated: {source}")]
    #[diagnostic(code(coopc::data::gzip))]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        source: std::io::Error,
    },

    /// The first four bytes of an IDX file are not the expected magic number.
    #[error("{path}: magic number {found:#010x}, expected {expected:#010x} ({meaning})")]
    #[diagnostic(code(coopc::data::bad_magic))]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What an IDX file of this kind starts with.
        expected: u32,
        /// What this one starts with.
        found: u32,
        /// What the expected number stands for ("unsigned bytes, 3 dimensions").
        meaning: &'static str,
    },

    /// A file is shorter than its header (or the record layout) says it must be.
    #[error("{path}: truncated: {expected} bytes needed for {what}, the file has {found}")]
    #[diagnostic(code(coopc::data::truncated))]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What the bytes were needed for ("the header", "60000 images of 28x28").
        what: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },

    /// A file is longer than its header says, so it is not the file it claims to be.
    #[error("{path}: {found} bytes, but the header describes exactly {expected} ({what})")]
    #[diagnostic(code(coopc::data::trailing_bytes))]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// What the header describes.
        what: String,
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes present.
        found: usize,
    },

    /// An image file and its label file disagree on how many samples there are.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    #[diagnostic(
        code(coopc::data::count_mismatch),
        help("the two files must come from the same split (train with train, t10k with t10k)")
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Its image count.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Its label count.
        label_count: usize,
    },

    /// A record-structured file's length is not a whole number of records.
    #[error(
        "{path}: {length} bytes is not a whole number of {record}-byte records \
         ({full} full records and {rest} bytes over)",
        full = length / record,
        rest = length % record
    )]
    #[diagnostic(code(coopc::data::record_length))]
    RecordLength {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        length: usize,
        /// The record size in bytes.
        record: usize,
    },

    /// A file holds no samples at all.
    #[error("{path}: holds no samples")]
    #[diagnostic(code(coopc::data::empty))]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// A label is not below the number of classes.
    #[error("{path}: sample {index} has label {label}, but there are only {classes} classes")]
    #[diagnostic(code(coopc::data::label_range))]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The sample's index in the file.
        index: usize,
        /// Its label.
        label: u32,
        /// The number of classes.
        classes: usize,
    },

    /// Two files of one split hold images of different sizes.
    #[error("{path}: images are {found:?}, but {first} holds {expected:?}")]
    #[diagnostic(code(coopc::data::shape_mismatch))]
    ShapeMismatch {
        /// The file that differs.
        path: PathBuf,
        /// The first file of the split.
        first: PathBuf,
        /// Image shape `[C, H, W]` of the first file.
        expected: [usize; 3],
        /// Image shape of this file.
        found: [usize; 3],
    },

    /// A fraction (subset, validation) is outside its range.
    #[error("{what} must be {range}, got {value}")]
    #[diagnostic(code(coopc::data::fraction))]
    BadFraction {
        /// Which fraction.
        what: &'static str,
        /// The allowed range, in words.
        range: &'static str,
        /// The value given.
        value: f64,
    },

    /// A split leaves no samples for training.
    #[error("{what} leaves no training samples ({available} available)")]
    #[diagnostic(code(coopc::data::empty_split))]
    EmptySplit {
        /// What produced the split.
        what: String,
        /// How many samples there were before it.
        available: usize,
    },

    /// Coarse labels were asked of a data set that has none.
    #[error("coarse labels exist only for CIFAR-100, not for {kind}")]
    #[diagnostic(code(coopc::data::coarse_labels))]
    NoCoarseLabels {
        /// The data set kind.
        kind: String,
    },

    /// A batch size of zero was asked for.
    #[error("the batch size must be at least 1")]
    #[diagnostic(code(coopc::data::batch_size))]
    ZeroBatchSize,

    /// The normalisation constants do not have one entry per image channel.
    #[error("{name} has {channels}-channel images but {constants} normalisation constants")]
    #[diagnostic(code(coopc::data::channels))]
    ChannelMismatch {
        /// The data set.
        name: String,
        /// Channels per image.
        channels: usize,
        /// Means (and deviations) given.
        constants: usize,
    },

    /// A data set kind the schema knows but no reader implements yet.
    #[error("reading {kind} data is not supported yet")]
    #[diagnostic(code(coopc::data::unsupported), help("{help}"))]
    Unsupported {
        /// The kind.
        kind: String,
        /// What to do instead.
        help: String,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
