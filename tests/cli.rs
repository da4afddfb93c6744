//! The `coopc` binary: the summary, `--emit`, options, standard input and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::root;

fn coopc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coopc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("coopc runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn compile_prints_parameters_per_phase_and_macs() {
    let output = coopc(&["compile", "models/resnet56.coop"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("baseline                 853,018"), "{text}");
    assert!(
        text.contains("phase 1 (coop)           853,073   55 mixed sites"),
        "{text}"
    );
    assert!(text.contains("phase 2 (lower)          853,018"), "{text}");
    assert!(text.contains("phase 1 - phase 2             55"), "{text}");
    assert!(
        text.contains("multiply-accumulates per image: 125,485,696"),
        "{text}"
    );
    assert!(text.contains("stage3.basic9.conv2"), "{text}");
}

#[test]
fn emit_prints_the_same_text_the_snapshots_pin() {
    let path = root().join("models/lenet.coop");
    let compiled =
        compiler::pipeline::compile_source(&crate::support::source(&path), &Default::default())
            .expect("lenet compiles");
    let output = coopc(&["compile", "models/lenet.coop", "--emit", "coop"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        compiler::ir::print::print_graph(&compiled.coop)
    );
    let output = coopc(&["compile", "models/lenet.coop", "--emit", "ast"]);
    assert_eq!(stdout(&output), compiled.file.to_string());
}

#[test]
fn options_reach_the_passes() {
    let args = [
        "compile",
        "models/lenet.coop",
        "--emit",
        "coop",
        "--activations",
        "relu,elu",
        "--beta",
        "0.75,0.25",
    ];
    let text = stdout(&coopc(&args));
    assert!(text.contains("weights=[0.75,0.25]"), "{text}");
    assert!(!text.contains("prelu"), "{text}");
    let text = stdout(&coopc(&[
        "compile",
        "models/lenet.coop",
        "--emit",
        "lowered",
        "--target",
        "elu",
    ]));
    assert!(text.contains("= elu(%3) alpha=1"), "{text}");
    let text = stdout(&coopc(&[
        "compile",
        "models/lenet.coop",
        "--emit",
        "ir",
        "--set",
        "classes=100",
    ]));
    assert!(text.contains("f32[N,100]"), "{text}");
}

#[test]
fn print_after_all_shows_every_stage() {
    let text = stdout(&coopc(&[
        "compile",
        "models/lenet.coop",
        "--print-after-all",
    ]));
    for stage in [
        "// after ir",
        "// after coop",
        "// after lowered",
        "parameters (trained)",
    ] {
        assert!(text.contains(stage), "{stage} missing in\n{text}");
    }
}

#[test]
fn dash_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coopc"))
        .args(["compile", "-", "--emit", "ir"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coopc runs");
    let text = "model m { input i: [4]\n output o = i |> dense(2) }\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("written");
    let output = child.wait_with_output().expect("coopc ends");
    assert!(output.status.success());
    assert!(stdout(&output).contains("dense(%0, %1, %2) bias=true : f32[N,2]  @dense1"));
}

#[test]
fn user_errors_exit_with_one_and_a_located_report() {
    let output = coopc(&["compile", "tests/cases/err/shape_mismatch_add.coop"]);
    assert_eq!(output.status.code(), Some(1));
    let report = stderr(&output);
    assert!(report.contains("shape_mismatch_add.coop:"), "{report}");
    assert!(
        report.contains("f32[N,32,16,16] and f32[N,16,32,32]"),
        "{report}"
    );
    assert!(stdout(&output).is_empty());

    let output = coopc(&["compile", "models/lenet.coop", "--beta", "0.5,0.5"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("2 β weights for 4 activations"),
        "{}",
        stderr(&output)
    );

    let output = coopc(&["compile", "no/such/file.coop"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read `no/such/file.coop`"));
}

#[test]
fn emit_mlir_prints_a_verified_module_with_source_locations() {
    for phase in ["1", "2"] {
        let output = coopc(&[
            "compile",
            "models/lenet.coop",
            "--emit",
            "mlir",
            "--phase",
            phase,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains("func.func @"), "{text}");
        assert!(text.contains("llvm.emit_c_interface"), "{text}");
        // Kernels point back at the model's lines (the first convolution is on line 5).
        assert!(text.contains("loc(\"models/lenet.coop\":5:"), "{text}");
    }
}

#[test]
fn emit_train_and_schedule_show_backward_and_optimizer() {
    let train = stdout(&coopc(&["compile", "models/lenet.coop", "--emit", "train"]));
    assert!(train.contains("conv2d_weight_grad"), "{train}");
    assert!(train.contains("sgd_update"), "{train}");
    let phase1 = stdout(&coopc(&[
        "compile",
        "models/lenet.coop",
        "--emit",
        "train",
        "--phase",
        "1",
    ]));
    assert!(phase1.contains("mix"), "{phase1}");
    let schedule = stdout(&coopc(&[
        "compile",
        "models/lenet.coop",
        "--emit",
        "schedule",
    ]));
    assert!(schedule.contains("// entry train_step"), "{schedule}");
    assert!(schedule.contains("// entry eval_step"), "{schedule}");
}
