//! The run's metrics log, `metrics.jsonl`: one JSON object per line, one line per epoch
//! (epoch, phase, lr, train loss and accuracy, test loss and accuracy, seconds, images/s).
//!
//! Invariant: the file is a single series with strictly increasing epochs, even across
//! resumes: [`MetricsLog::resume`] keeps exactly the lines up to the checkpoint's epoch
//! (dropping later ones, and a last line torn by a crash) before appending again; every
//! line is flushed as it is written. Non-finite numbers (a diverged loss) are written as
//! `null` and read back as NaN, since JSON has no NaN.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checkpoint::write_atomic;

/// The metrics of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochMetrics {
    /// Global epoch number, from 1.
    pub epoch: u32,
    /// Its phase, 1 or 2.
    pub phase: u8,
    /// The learning rate used.
    pub lr: f64,
    /// Mean training loss over the epoch's batches, weighted by batch size.
    #[serde(with = "finite_or_null")]
    pub train_loss: f64,
    /// Fraction of training images classified correctly during the epoch.
    #[serde(with = "finite_or_null")]
    pub train_acc: f64,
    /// Test loss, when the epoch was evaluated.
    #[serde(default, with = "optional_finite")]
    pub test_loss: Option<f64>,
    /// Test accuracy, when the epoch was evaluated.
    #[serde(default, with = "optional_finite")]
    pub test_acc: Option<f64>,
    /// Validation loss, when the run holds out a validation split.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_finite"
    )]
    pub validation_loss: Option<f64>,
    /// Validation accuracy, when the run holds out a validation split.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_finite"
    )]
    pub validation_acc: Option<f64>,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// An error with the metrics file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MetricsError {
    /// The file system refused an operation.
    #[error("{path}: {source}")]
    #[diagnostic(code(coopc::metrics::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line (other than a torn last one) is not an epoch record.
    #[error("{path}:{line}: not a metrics record: {message}")]
    #[diagnostic(code(coopc::metrics::line))]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Epochs do not increase one by one.
    #[error("{path}: epoch {found} follows epoch {previous}; the series must increase by one")]
    #[diagnostic(code(coopc::metrics::order))]
    OutOfOrder {
        /// The file.
        path: PathBuf,
        /// The last epoch before.
        previous: u32,
        /// The epoch that does not follow it.
        found: u32,
    },
    /// The log ends before the epoch a resume starts after.
    #[error("{path} ends at epoch {last}, but the run resumes after epoch {resume}")]
    #[diagnostic(
        code(coopc::metrics::gap),
        help(
            "the metrics of the missing epochs are lost; start the run again to get a full series"
        )
    )]
    Gap {
        /// The file.
        path: PathBuf,
        /// Its last complete epoch (0 when empty).
        last: u32,
        /// The epoch resumed after.
        resume: u32,
    },
    /// A record could not be turned into JSON.
    #[error("cannot encode the metrics of epoch {epoch}: {message}")]
    #[diagnostic(code(coopc::metrics::encode))]
    Encode {
        /// The epoch.
        epoch: u32,
        /// What serde_json said.
        message: String,
    },
}

/// An open metrics log, appending one flushed line per epoch.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    last_epoch: u32,
}

impl MetricsLog {
    /// Starts a new log at `path`, replacing any file there.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Io`] when the file cannot be created.
    pub fn create(path: &Path) -> Result<MetricsLog, MetricsError> {
        let file = File::create(path).map_err(io_error(path))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            last_epoch: 0,
        })
    }

    /// Reopens the log of a run resumed after epoch `epoch`: lines of later epochs (written
    /// after that checkpoint) are removed, then appending continues.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Gap`] when the log holds fewer epochs than that, and any error of
    /// [`read`].
    pub fn resume(path: &Path, epoch: u32) -> Result<MetricsLog, MetricsError> {
        let records = read(path)?;
        let kept: Vec<&EpochMetrics> = records
            .iter()
            .filter(|record| record.epoch <= epoch)
            .collect();
        let last = kept.last().map_or(0, |record| record.epoch);
        if last != epoch {
            return Err(MetricsError::Gap {
                path: path.to_path_buf(),
                last,
                resume: epoch,
            });
        }

        let mut text = String::new();
        for record in kept {
            text.push_str(&encode(record)?);
            text.push('\n');
        }
        write_atomic(path, text.as_bytes()).map_err(io_error(path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            last_epoch: epoch,
        })
    }

    /// Appends one epoch's line and flushes it.
    ///
    /// # Errors
    ///
    /// [`MetricsError::OutOfOrder`] unless the epoch follows the last one by one, and
    /// [`MetricsError::Io`] when the write fails.
    pub fn append(&mut self, record: &EpochMetrics) -> Result<(), MetricsError> {
        if record.epoch != self.last_epoch + 1 {
            let (path, previous, found) = (self.path.clone(), self.last_epoch, record.epoch);
            return Err(MetricsError::OutOfOrder {
                path,
                previous,
                found,
            });
        }
        let mut line = encode(record)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_error(&self.path))?;
        self.file.flush().map_err(io_error(&self.path))?;
        self.last_epoch = record.epoch;
        Ok(())
    }

    /// The last epoch in the log (0 when empty).
    pub fn last_epoch(&self) -> u32 {
        self.last_epoch
    }
}

/// Reads every complete record of a metrics file. A last line without its newline (a write
/// cut short by a crash) is ignored.
///
/// # Errors
///
/// [`MetricsError::Io`], [`MetricsError::BadLine`] for a line that does not parse, and
/// [`MetricsError::OutOfOrder`] when epochs do not increase one by one from 1.
pub fn read(path: &Path) -> Result<Vec<EpochMetrics>, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut records: Vec<EpochMetrics> = Vec::new();
    for (index, line) in complete.lines().enumerate() {
        let record: EpochMetrics =
            serde_json::from_str(line).map_err(|error| MetricsError::BadLine {
                path: path.to_path_buf(),
                line: index + 1,
                message: error.to_string(),
            })?;
        let previous = records.last().map_or(0, |last| last.epoch);
        if record.epoch != previous + 1 {
            let path = path.to_path_buf();
            return Err(MetricsError::OutOfOrder {
                path,
                previous,
                found: record.epoch,
            });
        }
        records.push(record);
    }
    Ok(records)
}

fn encode(record: &EpochMetrics) -> Result<String, MetricsError> {
    serde_json::to_string(record).map_err(|error| MetricsError::Encode {
        epoch: record.epoch,
        message: error.to_string(),
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MetricsError + '_ {
    move |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `f64` fields written as `null` when not finite, and `null` read back as NaN.
mod finite_or_null {
    use super::*;

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// Optional `f64` fields: `None` and non-finite values are both written as `null`; `null`
/// reads back as `None`.
mod optional_finite {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(number) if number.is_finite() => serializer.serialize_f64(*number),
            _ => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            phase: if epoch <= 2 { 1 } else { 2 },
            lr: 0.05,
            train_loss: 1.0 / f64::from(epoch),
            train_acc: 0.5,
            test_loss: Some(0.75),
            test_acc: Some(0.875),
            validation_loss: None,
            validation_acc: None,
            seconds: 12.5,
            images_per_s: 4800.0,
        }
    }

    #[test]
    fn lines_are_written_one_per_epoch_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for epoch in 1..=3 {
            log.append(&record(epoch)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.starts_with("{\"epoch\":1,\"phase\":1,\"lr\":0.05,\"train_loss\":1.0,"),
            "{text}"
        );
        assert!(
            !text.contains("validation"),
            "absent validation keys are left out"
        );
        assert_eq!(read(&path).unwrap(), vec![record(1), record(2), record(3)]);
    }

    #[test]
    fn epochs_must_follow_one_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::create(&dir.path().join("m.jsonl")).unwrap();
        log.append(&record(1)).unwrap();
        let error = log.append(&record(3)).unwrap_err();
        assert!(matches!(
            error,
            MetricsError::OutOfOrder {
                previous: 1,
                found: 3,
                ..
            }
        ));
        assert!(matches!(
            log.append(&record(1)),
            Err(MetricsError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn resume_drops_later_epochs_and_a_torn_line_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for epoch in 1..=5 {
            log.append(&record(epoch)).unwrap();
        }
        drop(log);
        // A crash in the middle of writing epoch 6's line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"epoch\":6,\"pha").unwrap();
        drop(file);

        let mut log = MetricsLog::resume(&path, 3).unwrap();
        assert_eq!(log.last_epoch(), 3);
        log.append(&record(4)).unwrap();
        let epochs: Vec<u32> = read(&path).unwrap().iter().map(|r| r.epoch).collect();
        assert_eq!(epochs, vec![1, 2, 3, 4]);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
    }

    #[test]
    fn resume_past_the_end_of_the_log_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        log.append(&record(1)).unwrap();
        let error = MetricsLog::resume(&path, 4).unwrap_err();
        assert!(
            matches!(
                error,
                MetricsError::Gap {
                    last: 1,
                    resume: 4,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(MetricsLog::resume(&path, 0).unwrap().last_epoch(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn diverged_losses_are_written_as_null() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut diverged = record(1);
        diverged.train_loss = f64::NAN;
        diverged.test_loss = Some(f64::INFINITY);
        let mut log = MetricsLog::create(&path).unwrap();
        log.append(&diverged).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"train_loss\":null") && text.contains("\"test_loss\":null"),
            "{text}"
        );
        let back = read(&path).unwrap();
        assert!(back[0].train_loss.is_nan());
        assert_eq!(back[0].test_loss, None);
    }

    #[test]
    fn a_corrupt_middle_line_names_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let good = serde_json::to_string(&record(1)).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n")).unwrap();
        let error = read(&path).unwrap_err();
        assert!(
            matches!(error, MetricsError::BadLine { line: 2, .. }),
            "{error:?}"
        );
    }
}
