//! Parameter counts of the shipped models against the reference figures (trained parameters
//! only: BatchNorm running statistics are not parameters in these figures).

use compiler::summary::{summarize, trained_params};

use crate::support::{compile_model, model_paths, options_with, source};

/// Trained parameters of the baseline of `models/<name>.coop`.
fn baseline_params(name: &str, overrides: &[&str]) -> usize {
    let compiled =
        compile_model(name, overrides).unwrap_or_else(|error| panic!("{}", error.render()));
    trained_params(&compiled.baseline)
}

#[test]
fn cifar_resnets_with_option_a_match_the_paper() {
    assert_eq!(baseline_params("resnet20", &[]), 269_722);
    assert_eq!(baseline_params("resnet56", &[]), 853_018);
    assert_eq!(baseline_params("resnet110", &[]), 1_727_962);
}

#[test]
fn cifar_resnets_with_option_b_projections() {
    assert_eq!(baseline_params("resnet20", &["shortcut_kind=b"]), 272_474);
    assert_eq!(baseline_params("resnet56", &["shortcut_kind=b"]), 855_770);
}

#[test]
fn vgg16_bn_for_cifar() {
    assert_eq!(baseline_params("vgg16", &[]), 14_728_266);
}

#[test]
fn imagenet_models_match_torchvision() {
    assert_eq!(baseline_params("resnet18", &[]), 11_689_512);
    assert_eq!(baseline_params("alexnet", &[]), 61_100_840);
}

#[test]
fn classes_override_changes_only_the_classifier() {
    // 64·100 + 100 instead of 64·10 + 10.
    assert_eq!(
        baseline_params("resnet56", &["classes=100"]),
        853_018 - 650 + 6_500
    );
}

#[test]
fn phase_two_count_equals_the_baseline_and_phase_one_adds_one_slope_per_site() {
    for path in model_paths() {
        let compiled = compiler::pipeline::compile_source(&source(&path), &options_with(&[]))
            .unwrap_or_else(|error| panic!("{}: {}", path.display(), error.render()));
        let summary = summarize(&compiled);
        assert_eq!(
            summary.phase2_params,
            summary.baseline_params,
            "{}",
            path.display()
        );
        assert_eq!(
            summary.phase1_params - summary.phase2_params,
            summary.mix_sites,
            "{}",
            path.display()
        );
        assert_eq!(
            summary.phase2_macs,
            summary.baseline_macs,
            "{}",
            path.display()
        );
        assert_eq!(compiled.lower_stats.params_removed.len(), summary.mix_sites);
    }
}

#[test]
fn resnet56_multiply_accumulates() {
    let compiled =
        compile_model("resnet56", &[]).unwrap_or_else(|error| panic!("{}", error.render()));
    // 125.49 M: the figure usually quoted for ResNet-56 on 32x32 inputs.
    assert_eq!(compiler::summary::macs(&compiled.baseline), 125_485_696);
}
