//! `coopc bench`: the JSON records it prints (fields, positive finite figures, one per
//! configuration) and the per-kernel profile.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::root;

fn coopc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coopc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("coopc runs")
}

/// The JSON records of a successful run, one per stdout line.
fn records(args: &[&str]) -> Vec<Value> {
    let output = coopc(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

fn positive(record: &Value, field: &str) -> f64 {
    let value = record[field]
        .as_f64()
        .unwrap_or_else(|| panic!("`{field}` is a number in {record}"));
    assert!(value.is_finite() && value > 0.0, "`{field}` = {value}");
    value
}

const QUICK: [&str; 8] = [
    "--batch",
    "8",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--repeats",
    "1",
];

#[test]
fn bench_json_has_one_record_per_phase_with_positive_figures() {
    let mut args = vec!["bench", "models/lenet.coop", "--json"];
    args.extend(QUICK);
    let records = records(&args);
    assert_eq!(records.len(), 2, "{records:?}");
    for (record, phase) in records.iter().zip([1, 2]) {
        assert_eq!(record["model"], "lenet");
        assert_eq!(record["phase"], phase);
        assert_eq!(record["batch"], 8);
        for field in [
            "train_images_per_s",
            "infer_images_per_s",
            "peak_rss_bytes",
            "compile_seconds",
            "jit_seconds",
            "train_ms_per_step",
            "train_gflops",
            "infer_gflops",
        ] {
            positive(record, field);
        }
        let parts: f64 = [
            "front_seconds",
            "autodiff_seconds",
            "codegen_seconds",
            "jit_seconds",
        ]
        .iter()
        .map(|field| record[field].as_f64().expect("a number"))
        .sum();
        assert!((parts - positive(record, "compile_seconds")).abs() < 1e-9);
        assert!(positive(record, "peak_rss_bytes") > 1e6, "{record}");
        // PyTorch's flops.py counts the same 1,252,800 for its LeNet.
        assert_eq!(record["fwd_macs_per_image"], 1_252_800);
        let loss = record["train_loss_last"]
            .as_f64()
            .expect("the training loss");
        assert!(loss.is_finite() && loss > 0.0, "{record}");
        assert!(record.get("profile").is_none());
    }
}

#[test]
fn bench_infer_only_leaves_the_training_figures_empty() {
    let mut args = vec!["bench", "models/lenet.coop", "--json", "--phase", "2"];
    args.extend(["--mode", "infer"]);
    args.extend(QUICK);
    let records = records(&args);
    assert_eq!(records.len(), 1);
    assert!(records[0]["train_images_per_s"].is_null(), "{}", records[0]);
    positive(&records[0], "infer_images_per_s");
}

#[test]
fn bench_profile_times_every_kernel_of_the_step() {
    let mut args = vec!["bench", "models/lenet.coop", "--json", "--phase", "2"];
    args.extend(["--mode", "train", "--profile"]);
    args.extend(QUICK);
    let records = records(&args);
    let record = &records[0];
    positive(record, "train_images_per_s");
    let profiles = record["profile"].as_array().expect("a profile per entry");
    assert_eq!(profiles.len(), 1);
    let profile = &profiles[0];
    assert_eq!(profile["entry"], "train_step");
    let kernels = profile["kernels"].as_array().expect("kernels");
    assert_eq!(
        kernels.len() as u64,
        record["train_kernels"].as_u64().unwrap()
    );
    let shares: f64 = kernels
        .iter()
        .map(|kernel| kernel["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "shares sum to {shares}");
    let step = positive(profile, "step_seconds");
    let summed: f64 = kernels
        .iter()
        .map(|kernel| kernel["seconds"].as_f64().unwrap())
        .sum();
    assert!((summed - step).abs() <= 1e-9 * step.max(1.0));
    let kinds: Vec<&str> = profile["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["label"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"contraction"), "{kinds:?}");
}
