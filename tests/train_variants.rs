//! The variants of the procedure as `coopc train` runs them: phase 2 of the mix variant has
//! exactly the baseline's tensors, the never-lowered and two-phase-baseline variants keep one
//! program across the boundary, `coopc eval` reproduces a run's final numbers with the
//! baseline's parameters, and `--dry-run` prints the plan.

use std::path::{Path, PathBuf};

use runtime::checkpoint;
use runtime::experiment;

use crate::train_support::*;

/// Trains `variant` (one phase-1 epoch when it has a phase 1, one phase-2 epoch) on the data
/// in `work` and returns the run directory.
fn train_variant(work: &Path, variant: &str) -> PathBuf {
    let text = experiment_text(TINY_MODEL, work, variant, 1, "");
    let file = write_experiment(work, &format!("{variant}.yaml"), &text);
    let run = work.join(variant);
    let output = coopc(&["train", arg(&file), "--out", arg(&run)]);
    assert!(output.status.success(), "{variant}: {}", stderr(&output));
    run
}

fn program_hash(run: &Path, epoch: u32) -> String {
    let dir = run.join("checkpoints").join(checkpoint::dir_name(epoch));
    checkpoint::read_manifest(&dir).unwrap().program_hash
}

#[test]
fn phase_two_of_mix_has_exactly_the_baseline_tensors() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 64, 32);
    let baseline = train_variant(work.path(), "baseline");
    let mix = train_variant(work.path(), "mix");

    let phase1 = weight_shapes(&mix, 1);
    assert!(
        phase1.contains(&("relu1.mix.prelu.slope".to_string(), vec![1])),
        "{phase1:?}"
    );
    assert_eq!(weight_shapes(&mix, 2), weight_shapes(&baseline, 1));
    assert_eq!(program_hash(&mix, 2), program_hash(&baseline, 1));

    // `coopc eval` finds the newest checkpoint, says the parameters are the baseline's and
    // reproduces the run's last test accuracy.
    let output = coopc(&["eval", arg(&mix)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("2338 parameters in 6 tensors: the same names and shapes as the baseline"),
        "{text}"
    );
    let last = timeless_metrics(&mix).pop().unwrap();
    let expected = format!("test accuracy {:.2}%", 100.0 * last.test_acc.unwrap());
    assert!(text.contains(&expected), "{expected} in {text}");

    // The phase-1 checkpoint is not the baseline's network, and `--data` reads elsewhere.
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(work.path().join(name), elsewhere.join(name)).unwrap();
    }
    let phase1_dir = mix.join("checkpoints/epoch-0001");
    let output = coopc(&["eval", arg(&phase1_dir), "--data", arg(&elsewhere)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("2339 parameters")
            && text.contains("not in the baseline: relu1.mix.prelu.slope"),
        "{text}"
    );
    assert!(text.contains("(") && text.contains("/32)"), "{text}");
}

#[test]
fn mixture_and_baseline_tpt_keep_one_program_and_wnla_has_no_activation_parameters() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 48, 16);
    let baseline = train_variant(work.path(), "baseline");

    let mixture = train_variant(work.path(), "mixture");
    assert_eq!(program_hash(&mixture, 1), program_hash(&mixture, 2));
    assert_eq!(weight_shapes(&mixture, 2), weight_shapes(&mixture, 1));
    assert!(weight_shapes(&mixture, 2)
        .iter()
        .any(|(name, _)| name.contains("prelu.slope")));

    let tpt = train_variant(work.path(), "baseline-tpt");
    assert_eq!(program_hash(&tpt, 1), program_hash(&tpt, 2));
    assert_eq!(program_hash(&tpt, 2), program_hash(&baseline, 1));
    let lrs: Vec<(u8, f64)> = timeless_metrics(&tpt)
        .iter()
        .map(|r| (r.phase, r.lr))
        .collect();
    assert_eq!(
        lrs,
        vec![(1, 0.05), (2, 0.05)],
        "the schedule restarts in phase 2"
    );

    let wnla = train_variant(work.path(), "wnla");
    assert_eq!(weight_shapes(&wnla, 1), weight_shapes(&baseline, 1));
    assert_ne!(program_hash(&wnla, 1), program_hash(&baseline, 1));
}

#[test]
fn dry_run_prints_the_plan_and_trains_nothing() {
    let path = "experiments/fashion-mnist-lenet-mix-relu.yaml";
    let output = coopc(&["train", path, "--dry-run", "--set", "phase2.epochs=12"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let root = crate::support::root();
    let overrides = ["phase2.epochs=12".to_string()];
    let plan = experiment::load(&root.join(path), &overrides)
        .unwrap()
        .plan();
    assert_eq!(stdout(&output), plan.render());
    assert!(
        stdout(&output).contains("epochs 3-14 (12 epochs)"),
        "{}",
        stdout(&output)
    );
}
