//! Helpers of the trainer's integration tests: synthetic Fashion-MNIST files in the exact IDX
//! format, small experiment files, running the built `coopc` binary, and reading a run
//! directory back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runtime::checkpoint;
use runtime::metrics::{self, EpochMetrics};

use crate::support::root;

/// The trainer's small test model (BatchNorm, one activation site).
pub const TINY_MODEL: &str = "tests/cases/train/tiny_bn.coop";
/// The paper's LeNet-like network.
pub const LENET: &str = "models/lenet.coop";

/// Writes `train-*` and `t10k-*` IDX files of 28x28 images into `dir`: image `i` has label
/// `i % 10`, a bright 6x6 block at a position given by its label, and pseudo-random dim
/// noise elsewhere, so a small network learns it within an epoch or two.
pub fn write_fashion_mnist(dir: &Path, train: u32, test: u32) {
    for (prefix, count, salt) in [("train", train, 1u32), ("t10k", test, 2)] {
        let mut images = idx_header(0x0803, &[count, 28, 28]);
        let mut labels = idx_header(0x0801, &[count]);
        let mut state = 0x2545_F491u32 ^ salt;
        for index in 0..count {
            let label = (index % 10) as u8;
            let (top, left) = (
                2 + 9 * usize::from(label / 3),
                2 + 9 * usize::from(label % 3),
            );
            for row in 0..28 {
                for column in 0..28 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 26) as u8;
                    let inside =
                        (top..top + 6).contains(&row) && (left..left + 6).contains(&column);
                    images.push(if inside { 192 + noise } else { noise });
                }
            }
            labels.push(label);
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

fn idx_header(magic: u32, sizes: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for size in sizes {
        bytes.extend_from_slice(&size.to_be_bytes());
    }
    bytes
}

/// A small experiment on the data in `data`: `variant`, one phase-1 epoch (when the variant
/// has a phase 1), `phase2_epochs`, batch 16, plus `extra` YAML lines.
pub fn experiment_text(
    model: &str,
    data: &Path,
    variant: &str,
    phase2_epochs: u32,
    extra: &str,
) -> String {
    let model = root().join(model);
    format!(
        "name: test-run\nmodel: {{file: {}}}\n\
         dataset: {{kind: fashion-mnist, path: {}}}\n\
         batch_size: 16\nseed: 3\n\
         optimizer: {{lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}\n\
         variant: {variant}\nphase1: {{epochs: 1}}\n\
         phase2: {{epochs: {phase2_epochs}, schedule: {{step: {{every: 2, factor: 0.5}}}}}}\n\
         checkpoint_every: 1\n{extra}",
        model.display(),
        data.display()
    )
}

/// Writes an experiment file into `dir` and returns its path.
pub fn write_experiment(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The `coopc` binary with `args`, run from the repository root.
pub fn coopc_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coopc"));
    command.args(args).current_dir(root());
    command
}

/// Runs `coopc` to completion.
pub fn coopc(args: &[&str]) -> Output {
    coopc_command(args).output().expect("coopc runs")
}

/// A path as an argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The run's metrics, with the timing fields (which differ between runs) zeroed.
pub fn timeless_metrics(run: &Path) -> Vec<EpochMetrics> {
    let mut records = metrics::read(&run.join("metrics.jsonl")).unwrap();
    for record in &mut records {
        (record.seconds, record.images_per_s) = (0.0, 0.0);
    }
    records
}

/// The bytes of both tensor files of the checkpoint after `epoch`.
pub fn checkpoint_bytes(run: &Path, epoch: u32) -> (Vec<u8>, Vec<u8>) {
    let dir = run.join("checkpoints").join(checkpoint::dir_name(epoch));
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    (
        read(checkpoint::WEIGHTS_FILE),
        read(checkpoint::OPTIMIZER_FILE),
    )
}

/// Names and shapes of the tensors of a checkpoint's weights file.
pub fn weight_shapes(run: &Path, epoch: u32) -> Vec<(String, Vec<usize>)> {
    let dir = run.join("checkpoints").join(checkpoint::dir_name(epoch));
    let loaded = checkpoint::load(&dir).unwrap();
    loaded
        .weights
        .into_iter()
        .map(|(name, tensor)| (name, tensor.shape))
        .collect()
}
