//! Checkpoints: a directory per save (`<run>/checkpoints/epoch-0012/`) holding
//! `weights.safetensors` (parameters and BatchNorm statistics), `optimizer.safetensors`
//! (momentum buffers) and `manifest.json` (epoch, phase, step, RNG state, config and program
//! hashes, coopc version, and the size and SHA-256 of each tensor file).
//!
//! Invariant: a checkpoint exists only once its manifest does, and the manifest is written
//! last. Every file is written to a temporary name in the same directory, flushed to disk and
//! renamed into place, so a crash leaves either the previous complete checkpoint or a
//! directory without a manifest (which [`latest`] and [`load`] do not accept); and a tensor
//! file that does not match its manifest's size and hash is refused. Values round-trip
//! bit for bit (little-endian `f32`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rng::RngState;

/// The manifest layout version this code writes and reads.
pub const FORMAT: u32 = 1;
/// File name of the parameter tensors.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// File name of the optimizer state tensors.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File name of the manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// An `f32` tensor: its shape and its values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions; their product is `values.len()`.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Vec<f32>,
}

/// Tensors by name (sorted, so files are written in a stable order).
pub type TensorMap = BTreeMap<String, Tensor>;

/// Size and content hash of one tensor file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's name in the checkpoint directory.
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// What a checkpoint says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// The version of coopc that wrote it.
    pub coopc_version: String,
    /// The experiment's name.
    pub experiment: String,
    /// Epochs completed, counted globally from 1 across phases.
    pub epoch: u32,
    /// The phase the last completed epoch belonged to.
    pub phase: u8,
    /// That epoch's number within its phase.
    pub phase_epoch: u32,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// The state of the trainer's random-number generator after that epoch.
    pub rng: RngState,
    /// [`crate::experiment::Experiment::config_hash`] of the run.
    pub config_hash: String,
    /// A hash of the compiled program being trained (its phase's).
    pub program_hash: String,
    /// The tensor files and their hashes.
    pub files: Vec<FileRecord>,
}

/// A whole checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Its manifest (`files` is filled in by [`save`]).
    pub manifest: Manifest,
    /// Parameters and BatchNorm statistics by name.
    pub weights: TensorMap,
    /// Optimizer state (momentum buffers) by name.
    pub optimizer: TensorMap,
}

/// What a run expects of a checkpoint it resumes from.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The run's configuration hash.
    pub config_hash: String,
    /// The hash of the program the checkpoint's phase trains.
    pub program_hash: String,
    /// Each parameter's name and shape.
    pub weights: BTreeMap<String, Vec<usize>>,
    /// Each optimizer state tensor's name and shape.
    pub optimizer: BTreeMap<String, Vec<usize>>,
}

/// An error while writing, reading or matching a checkpoint.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CheckpointError {
    /// The file system refused an operation.
    #[error("{path}: {source}")]
    #[diagnostic(code(coopc::checkpoint::io))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A directory has no manifest: it is not (or not yet) a checkpoint.
    #[error("{dir} is not a complete checkpoint: it has no {MANIFEST_FILE}")]
    #[diagnostic(
        code(coopc::checkpoint::incomplete),
        help("a save was interrupted before its manifest was written; use an earlier checkpoint")
    )]
    Incomplete {
        /// The directory.
        dir: PathBuf,
    },
    /// The manifest is not valid JSON of the expected layout.
    #[error("{path}: not a coopc checkpoint manifest: {message}")]
    #[diagnostic(code(coopc::checkpoint::manifest))]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor file differs from what the manifest recorded, or is malformed.
    #[error("{path}: {message}")]
    #[diagnostic(code(coopc::checkpoint::corrupt))]
    Corrupt {
        /// The tensor file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The checkpoint was made by another configuration, program or model.
    #[error("{dir} does not match this run:\n  {}", differences.join("\n  "))]
    #[diagnostic(
        code(coopc::checkpoint::mismatch),
        help("resume with the experiment, overrides and model the run was started with")
    )]
    Mismatch {
        /// The checkpoint directory.
        dir: PathBuf,
        /// One line per difference.
        differences: Vec<String>,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, renamed over `path`, and the directory flushed so the rename itself is durable.
/// Readers see the old content or the new, never a mixture.
///
/// # Errors
///
/// The first file-system error; the caller names `path` in its report.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Flushes a directory's entries (renames, removals) to disk.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The directory name of the checkpoint after global epoch `epoch`.
pub fn dir_name(epoch: u32) -> String {
    format!("epoch-{epoch:04}")
}

/// Serialises tensors as safetensors (`F32`, little-endian).
fn encode(tensors: &TensorMap, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let bytes: Vec<(&String, Vec<u8>, &Tensor)> = tensors
        .iter()
        .map(|(name, tensor)| {
            let raw = tensor
                .values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            (name, raw, tensor)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, raw, tensor) in &bytes {
        let view = TensorView::new(Dtype::F32, tensor.shape.clone(), raw)
            .map_err(|error| corrupt(format!("tensor `{name}`: {error}")))?;
        views.push((name.as_str(), view));
    }
    safetensors::tensor::serialize(views, &None).map_err(|error| corrupt(error.to_string()))
}

/// Reads safetensors bytes back into tensors.
fn decode(bytes: &[u8], path: &Path) -> Result<TensorMap, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let file = SafeTensors::deserialize(bytes).map_err(|error| corrupt(error.to_string()))?;
    let mut tensors = TensorMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect();
        tensors.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(tensors)
}

/// Writes `checkpoint` into `dir` (created if needed) and returns the manifest as written.
/// An earlier checkpoint in the same directory stops counting the moment this one starts:
/// its manifest is removed first.
///
/// # Errors
///
/// [`CheckpointError::Io`] for file-system failures, [`CheckpointError::Corrupt`] for a
/// tensor whose values do not fill its shape.
pub fn save(dir: &Path, checkpoint: &Checkpoint) -> Result<Manifest, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => sync_dir(dir)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error(&manifest_path)(error)),
    }

    let mut manifest = checkpoint.manifest.clone();
    manifest.format = FORMAT;
    manifest.files.clear();
    for (name, tensors) in [
        (WEIGHTS_FILE, &checkpoint.weights),
        (OPTIMIZER_FILE, &checkpoint.optimizer),
    ] {
        let path = dir.join(name);
        let bytes = encode(tensors, &path)?;
        write_atomic(&path, &bytes).map_err(io_error(&path))?;
        let record = FileRecord {
            name: name.to_string(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        manifest.files.push(record);
    }

    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|error| CheckpointError::BadManifest {
            path: manifest_path.clone(),
            message: error.to_string(),
        })?;
    write_atomic(&manifest_path, &json).map_err(io_error(&manifest_path))?;
    Ok(manifest)
}

/// Reads a checkpoint's manifest alone.
///
/// # Errors
///
/// [`CheckpointError::Incomplete`] without a manifest, [`CheckpointError::BadManifest`] for
/// one that does not parse or has another format version.
pub fn read_manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::Incomplete {
                dir: dir.to_path_buf(),
            });
        }
        Err(error) => return Err(io_error(&path)(error)),
    };
    let bad = |message: String| CheckpointError::BadManifest {
        path: path.clone(),
        message,
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|error| bad(error.to_string()))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "format {} (this coopc reads {FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Reads and checks a whole checkpoint: the manifest, then each tensor file against the size
/// and hash the manifest recorded.
///
/// # Errors
///
/// As [`read_manifest`], plus [`CheckpointError::Corrupt`] for a tensor file that is missing
/// from the manifest, differs from it, or does not parse.
pub fn load(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let manifest = read_manifest(dir)?;
    let mut maps = Vec::with_capacity(2);
    for name in [WEIGHTS_FILE, OPTIMIZER_FILE] {
        let path = dir.join(name);
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.clone(),
            message,
        };
        let record = manifest.files.iter().find(|record| record.name == name);
        let record = record.ok_or_else(|| corrupt("not listed in the manifest".to_string()))?;
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        if bytes.len() as u64 != record.bytes || sha256_hex(&bytes) != record.sha256 {
            let message = format!(
                "{} bytes with another content than the {} bytes the manifest recorded",
                bytes.len(),
                record.bytes
            );
            return Err(corrupt(message));
        }
        maps.push(decode(&bytes, &path)?);
    }
    let optimizer = maps.pop().unwrap_or_default();
    let weights = maps.pop().unwrap_or_default();
    Ok(Checkpoint {
        manifest,
        weights,
        optimizer,
    })
}

/// Lists what differs between `found` tensors and `expected` shapes, under `what`.
fn tensor_differences(
    what: &str,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &TensorMap,
    differences: &mut Vec<String>,
) {
    let missing: Vec<&str> = expected
        .keys()
        .filter(|name| !found.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        differences.push(format!(
            "{what} missing from the checkpoint: {}",
            missing.join(", ")
        ));
    }
    let extra: Vec<&str> = found
        .keys()
        .filter(|name| !expected.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        differences.push(format!(
            "{what} the model does not have: {}",
            extra.join(", ")
        ));
    }
    for (name, shape) in expected {
        if let Some(tensor) = found.get(name).filter(|tensor| &tensor.shape != shape) {
            let found_shape = &tensor.shape;
            differences.push(format!(
                "{what} `{name}`: shape {found_shape:?}, expected {shape:?}"
            ));
        }
    }
}

impl Checkpoint {
    /// Checks that this checkpoint belongs to the run described by `expected`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Mismatch`] listing every difference: configuration hash, program
    /// hash, missing or extra parameters and optimizer tensors, shapes.
    pub fn check(&self, dir: &Path, expected: &Expected) -> Result<(), CheckpointError> {
        let mut differences = Vec::new();
        let manifest = &self.manifest;
        if manifest.config_hash != expected.config_hash {
            let (found, wanted) = (&manifest.config_hash, &expected.config_hash);
            differences.push(format!(
                "configuration hash {found}, this run's is {wanted}"
            ));
        }
        if manifest.program_hash != expected.program_hash {
            let (found, wanted) = (&manifest.program_hash, &expected.program_hash);
            differences.push(format!("program hash {found}, this run's is {wanted}"));
        }
        tensor_differences(
            "parameters",
            &expected.weights,
            &self.weights,
            &mut differences,
        );
        tensor_differences(
            "optimizer tensors",
            &expected.optimizer,
            &self.optimizer,
            &mut differences,
        );
        if differences.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Mismatch {
                dir: dir.to_path_buf(),
                differences,
            })
        }
    }
}

/// The complete checkpoint with the highest epoch under `checkpoints` (a run's
/// `checkpoints/` directory), if any. Directories without a manifest are skipped.
///
/// # Errors
///
/// [`CheckpointError::Io`] when the directory cannot be listed, or a manifest's error.
pub fn latest(checkpoints: &Path) -> Result<Option<(PathBuf, Manifest)>, CheckpointError> {
    let entries = match std::fs::read_dir(checkpoints) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(checkpoints)(error)),
    };
    let mut best: Option<(PathBuf, Manifest)> = None;
    for entry in entries {
        let path = entry.map_err(io_error(checkpoints))?.path();
        if !path.is_dir() || !path.join(MANIFEST_FILE).is_file() {
            continue;
        }
        let manifest = read_manifest(&path)?;
        if best
            .as_ref()
            .is_none_or(|(_, current)| manifest.epoch > current.epoch)
        {
            best = Some((path, manifest));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], values: Vec<f32>) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            values,
        }
    }

    fn sample() -> Checkpoint {
        // Values whose bits are easy to lose: a NaN payload, −0, infinities, a subnormal.
        let awkward = vec![
            f32::from_bits(0x7fc0_1234),
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(1),
            1.0 / 3.0,
        ];
        let mut weights = TensorMap::new();
        weights.insert("conv1.weight".into(), tensor(&[2, 3], awkward));
        weights.insert(
            "bn1.running_mean".into(),
            tensor(&[4], vec![0.5, -1.5, 2.25, 1e-30]),
        );
        weights.insert("scale".into(), tensor(&[], vec![7.0]));
        weights.insert("empty".into(), tensor(&[0, 3], vec![]));
        let mut optimizer = TensorMap::new();
        optimizer.insert(
            "conv1.weight.momentum".into(),
            tensor(&[2, 3], vec![0.1; 6]),
        );
        let manifest = Manifest {
            format: FORMAT,
            coopc_version: "0.1.0".into(),
            experiment: "demo".into(),
            epoch: 3,
            phase: 2,
            phase_epoch: 1,
            step: 2811,
            rng: crate::rng::Rng::seed_from(4).state(),
            config_hash: "c".repeat(64),
            program_hash: "p".repeat(64),
            files: Vec::new(),
        };
        Checkpoint {
            manifest,
            weights,
            optimizer,
        }
    }

    fn bits(map: &TensorMap) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        map.iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    t.shape.clone(),
                    t.values.iter().map(|v| v.to_bits()).collect(),
                )
            })
            .collect()
    }

    fn expected_for(checkpoint: &Checkpoint) -> Expected {
        let shapes = |map: &TensorMap| {
            map.iter()
                .map(|(name, t)| (name.clone(), t.shape.clone()))
                .collect()
        };
        Expected {
            config_hash: checkpoint.manifest.config_hash.clone(),
            program_hash: checkpoint.manifest.program_hash.clone(),
            weights: shapes(&checkpoint.weights),
            optimizer: shapes(&checkpoint.optimizer),
        }
    }

    #[test]
    fn round_trip_is_bitwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(dir_name(3));
        let original = sample();
        let written = save(&path, &original).unwrap();
        assert_eq!(written.files.len(), 2);

        let loaded = load(&path).unwrap();
        assert_eq!(bits(&loaded.weights), bits(&original.weights));
        assert_eq!(bits(&loaded.optimizer), bits(&original.optimizer));
        assert_eq!(loaded.manifest, written);
        assert_eq!(loaded.manifest.rng, original.manifest.rng);
        loaded.check(&path, &expected_for(&original)).unwrap();
    }

    #[test]
    fn a_save_leaves_no_temporary_files_and_the_manifest_is_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(dir_name(1));
        save(&path, &sample()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![MANIFEST_FILE, OPTIMIZER_FILE, WEIGHTS_FILE]);
        let modified = |name: &str| {
            std::fs::metadata(path.join(name))
                .unwrap()
                .modified()
                .unwrap()
        };
        assert!(modified(MANIFEST_FILE) >= modified(WEIGHTS_FILE));
        assert!(modified(MANIFEST_FILE) >= modified(OPTIMIZER_FILE));
    }

    #[test]
    fn an_interrupted_save_is_never_taken_for_a_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        save(&root.path().join(dir_name(1)), &sample()).unwrap();

        // A crash during the save of epoch 2: tensors (and a stray temporary) but no manifest.
        let torn = root.path().join(dir_name(2));
        std::fs::create_dir(&torn).unwrap();
        std::fs::write(torn.join(WEIGHTS_FILE), b"partial").unwrap();
        std::fs::write(torn.join(".manifest.json.tmp-1"), b"{").unwrap();
        assert!(matches!(
            load(&torn),
            Err(CheckpointError::Incomplete { .. })
        ));
        let (found, manifest) = latest(root.path()).unwrap().unwrap();
        assert_eq!((found, manifest.epoch), (root.path().join(dir_name(1)), 3));

        // Re-saving over an existing checkpoint drops its manifest before touching tensors.
        let mut later = sample();
        later.manifest.epoch = 9;
        save(&torn, &later).unwrap();
        assert_eq!(latest(root.path()).unwrap().unwrap().1.epoch, 9);
        assert!(latest(&root.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn a_tensor_file_that_differs_from_its_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(dir_name(3));
        save(&path, &sample()).unwrap();
        let weights = path.join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&weights, &bytes).unwrap();
        let error = load(&path).unwrap_err();
        assert!(
            matches!(error, CheckpointError::Corrupt { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(WEIGHTS_FILE), "{error}");
    }

    #[test]
    fn mismatches_are_refused_naming_every_difference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(dir_name(3));
        save(&path, &sample()).unwrap();
        let loaded = load(&path).unwrap();

        let mut expected = expected_for(&loaded);
        expected.config_hash = "other-config".into();
        expected.program_hash = "other-program".into();
        expected.weights.remove("scale");
        expected.weights.insert("fc.bias".into(), vec![10]);
        expected.weights.insert("conv1.weight".into(), vec![3, 2]);
        let error = loaded.check(&path, &expected).unwrap_err();
        let CheckpointError::Mismatch { differences, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(differences.len(), 5, "{differences:#?}");
        let message = error.to_string();
        for needle in [
            "configuration hash",
            "program hash",
            "missing from the checkpoint: fc.bias",
            "does not have: scale",
            "`conv1.weight`: shape [2, 3], expected [3, 2]",
        ] {
            assert!(message.contains(needle), "{needle} in {message}");
        }
    }

    #[test]
    fn manifests_of_another_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(dir_name(3));
        save(&path, &sample()).unwrap();
        let manifest_path = path.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        std::fs::write(
            &manifest_path,
            text.replace("\"format\": 1", "\"format\": 99"),
        )
        .unwrap();
        let error = read_manifest(&path).unwrap_err();
        assert!(error.to_string().contains("format 99"), "{error}");
        std::fs::write(&manifest_path, "not json").unwrap();
        assert!(matches!(
            read_manifest(&path),
            Err(CheckpointError::BadManifest { .. })
        ));
    }
}
