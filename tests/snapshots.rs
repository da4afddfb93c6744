//! Stage snapshots: the printed form of every stage (AST, IR, after `coop`, after `lower`) of
//! every model in `models/`, and of the focused cases that must compile (`cases/ok/`).
//!
//! Review changes with `cargo insta review`; CI runs with `INSTA_UPDATE=no`.

use compiler::ir::print::print_graph;
use compiler::passes::lower::{LowerOptions, Target};
use compiler::pipeline::compile_source;

use crate::support::{options_with, source};

#[test]
fn every_stage_of_every_model() {
    insta::glob!("../models", "*.coop", |path| {
        let compiled = compile_source(&source(path), &options_with(&[]))
            .unwrap_or_else(|error| panic!("{}", error.render()));
        insta::assert_snapshot!("ast", compiled.file.to_string());
        insta::assert_snapshot!("ir", print_graph(&compiled.baseline));
        insta::assert_snapshot!("coop", print_graph(&compiled.coop));
        insta::assert_snapshot!("lowered", print_graph(&compiled.lowered));
    });
}

#[test]
fn focused_cases_that_compile() {
    insta::glob!("cases/ok", "*.coop", |path| {
        let compiled = compile_source(&source(path), &options_with(&[]))
            .unwrap_or_else(|error| panic!("{}", error.render()));
        insta::assert_snapshot!(print_graph(&compiled.baseline));
    });
}

#[test]
fn option_b_and_a_prelu_target() {
    let path = crate::support::root().join("models/resnet20.coop");
    let option_b = compile_source(&source(&path), &options_with(&["shortcut_kind=b"]))
        .unwrap_or_else(|error| panic!("{}", error.render()));
    insta::assert_snapshot!("resnet20_option_b_ir", print_graph(&option_b.baseline));

    let path = crate::support::root().join("models/lenet.coop");
    let mut options = options_with(&[]);
    options.lower = LowerOptions {
        target: Target::Activation(compiler::ir::Activation::Prelu),
        prelu_per_channel: false,
    };
    let prelu = compile_source(&source(&path), &options)
        .unwrap_or_else(|error| panic!("{}", error.render()));
    insta::assert_snapshot!("lenet_lowered_to_prelu", print_graph(&prelu.lowered));
}
