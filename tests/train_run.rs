//! `coopc train` end to end on synthetic Fashion-MNIST files: the run directory it leaves, a
//! run killed after its first checkpoint and resumed (bitwise the uninterrupted run), the
//! refusal of a resume under another configuration or model, and the stop on divergence.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runtime::checkpoint;
use runtime::experiment;

use crate::train_support::*;

#[test]
fn training_leaves_metrics_checkpoints_plan_and_resolved_config() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 160, 40);
    let text = experiment_text(TINY_MODEL, work.path(), "mix", 2, "");
    let file = write_experiment(work.path(), "mix.yaml", &text);
    let run = work.path().join("run");
    let output = coopc(&["train", arg(&file), "--out", arg(&run)]);
    assert!(output.status.success(), "{}", stderr(&output));

    // One metrics line per epoch, phase 1 then phase 2, with the schedule's rates.
    let records = timeless_metrics(&run);
    let phases: Vec<(u32, u8, f64)> = records.iter().map(|r| (r.epoch, r.phase, r.lr)).collect();
    assert_eq!(phases, vec![(1, 1, 0.05), (2, 2, 0.05), (3, 2, 0.05)]);
    for record in &records {
        assert!(
            record.train_loss.is_finite() && record.test_acc.is_some(),
            "{record:?}"
        );
    }
    let raw = runtime::metrics::read(&run.join("metrics.jsonl")).unwrap();
    assert!(
        raw.iter().all(|r| r.seconds > 0.0 && r.images_per_s > 0.0),
        "{raw:?}"
    );
    // The bright block gives the class away: the tiny network learns it.
    assert!(records[2].test_acc.unwrap() > 0.5, "{records:?}");

    // The resolved configuration reads back to the same experiment; the plan is stored.
    let resolved = experiment::load(&run.join("config.yaml"), &[]).unwrap();
    let original = experiment::load(&file, &[]).unwrap();
    assert_eq!(resolved.config_hash(), original.config_hash());
    let plan = std::fs::read_to_string(run.join("plan.txt")).unwrap();
    assert_eq!(plan, original.plan().render());

    // Epoch checkpoints are replaced by newer ones; phase ends stay.
    let mut saved: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    assert_eq!(saved, vec!["epoch-0001", "epoch-0003"]);
    let last = checkpoint::load(&run.join("checkpoints/epoch-0003")).unwrap();
    assert_eq!((last.manifest.phase, last.manifest.epoch), (2, 3));
    assert_eq!(last.manifest.config_hash, original.config_hash());
    assert!(
        last.weights.contains_key("batchnorm1.running_mean"),
        "{:?}",
        last.weights.keys()
    );

    // The output names the run and its result; the carry is reported on stderr.
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        out.starts_with(arg(&run)) && out.contains("test accuracy"),
        "{out}"
    );
    assert!(
        err.contains("phase 1 -> 2") && err.contains("dropped"),
        "{err}"
    );
    assert!(err.contains("epoch 3/3 (phase 2, lr 0.05)"), "{err}");
}

#[test]
fn a_run_killed_midway_resumes_to_bitwise_the_uninterrupted_run() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 800, 40);
    let text = experiment_text(LENET, work.path(), "mix", 3, "");
    let file = write_experiment(work.path(), "mix.yaml", &text);

    let whole = work.path().join("whole");
    let output = coopc(&["train", arg(&file), "--out", arg(&whole)]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Kill the second run once epoch 2's metrics line exists: it is then saving epoch 2 or
    // training epoch 3, with epoch 4 still to come.
    let killed = work.path().join("killed");
    let mut child = coopc_command(&["train", arg(&file), "--out", arg(&killed)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let lines =
        || std::fs::read_to_string(killed.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
    while lines() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it was killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines() < 4, "killed before the end");

    let output = coopc(&["train", "--resume", arg(&killed)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("resuming after epoch"),
        "{}",
        stderr(&output)
    );
    assert_eq!(timeless_metrics(&killed), timeless_metrics(&whole));
    assert!(
        checkpoint_bytes(&killed, 4) == checkpoint_bytes(&whole, 4),
        "weights differ"
    );
}

#[test]
fn a_resume_under_another_configuration_or_model_is_refused() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 64, 16);
    let model = work.path().join("model.coop");
    let source = std::fs::read_to_string(crate::support::root().join(TINY_MODEL)).unwrap();
    std::fs::write(&model, &source).unwrap();
    let text = experiment_text(TINY_MODEL, work.path(), "baseline", 1, "").replace(
        &crate::support::root()
            .join(TINY_MODEL)
            .display()
            .to_string(),
        arg(&model),
    );
    let file = write_experiment(work.path(), "base.yaml", &text);
    let run = work.path().join("run");
    assert!(coopc(&["train", arg(&file), "--out", arg(&run)])
        .status
        .success());

    // Another learning rate: the differing key is named, and nothing is trained.
    let output = coopc(&[
        "train",
        arg(&file),
        "--set",
        "optimizer.lr=0.2",
        "--resume",
        arg(&run),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("optimizer.lr: the run has 0.05, this command 0.2"),
        "{message}"
    );

    // Another model under the same file name: the program and the tensors differ.
    std::fs::write(&model, source.replace("conv(6,", "conv(7,")).unwrap();
    let output = coopc(&["train", "--resume", arg(&run)]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("program hash"), "{message}");
    assert!(
        message.contains("`conv1.weight`: shape [6, 1, 5, 5], expected [7, 1, 5, 5]"),
        "{message}"
    );

    // A new run into a directory that holds one is refused too.
    let output = coopc(&["train", arg(&file), "--out", arg(&run)]);
    assert!(
        stderr(&output).contains("already holds a run"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_huge_learning_rate_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let work = tempfile::tempdir().unwrap();
    write_fashion_mnist(work.path(), 64, 16);
    let text = experiment_text(TINY_MODEL, work.path(), "mix", 2, "");
    let file = write_experiment(work.path(), "mix.yaml", &text);
    let run = work.path().join("run");
    let output = coopc(&[
        "train",
        arg(&file),
        "--set",
        "phase2.lr=1e30",
        "--out",
        arg(&run),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("training diverged"), "{message}");
    assert!(
        message.contains("of epoch 2 (phase 2, lr 1e30)"),
        "{message}"
    );
    assert!(message.contains("epoch-0001"), "{message}");
    let kept = checkpoint::load(&run.join("checkpoints/epoch-0001")).unwrap();
    assert_eq!(kept.manifest.phase, 1);
    assert_eq!(
        timeless_metrics(&run).len(),
        1,
        "no line for the diverged epoch"
    );
    assert!(!Path::new(&run.join("checkpoints/epoch-0002")).exists());
}
