//! Diagnostics: every file in `cases/err/` must fail, and its rendered report (file, line,
//! column, underlined span, what was expected) is snapshotted.
//!
//! A case's first line is a comment naming the stage that fails and what is wrong; an optional
//! second line `# flags: ...` gives command-line options (`--beta`, `--activations`,
//! `--target`, `--set`, `--allow-unnormalized`).

use std::path::Path;

use compiler::error::CompileError;
use compiler::passes::coop::CoopOptions;
use compiler::passes::lower::Target;
use compiler::pipeline::{compile_source, CompileOptions, Override};

use crate::support::source;

/// The options a case's `# flags:` line gives, or the error they give.
fn options_from_flags(flags: &[&str]) -> Result<CompileOptions, CompileError> {
    let mut options = CompileOptions {
        verify_each: true,
        ..CompileOptions::default()
    };
    let value = |name: &str| {
        flags
            .iter()
            .position(|flag| *flag == name)
            .and_then(|index| flags.get(index + 1))
            .copied()
    };
    let allow = flags.contains(&"--allow-unnormalized");
    options.coop = CoopOptions::from_flags(value("--activations"), value("--beta"), allow, false)
        .map_err(CompileError::Option)?;
    if let Some(target) = value("--target") {
        options.lower.target = Target::from_name(target).expect("cases use known targets");
    }
    for (index, flag) in flags.iter().enumerate() {
        if *flag == "--set" {
            let text = flags.get(index + 1).expect("--set has a value");
            options
                .overrides
                .push(Override::parse(text).map_err(CompileError::Option)?);
        }
    }
    Ok(options)
}

/// The rendered report of the case at `path`; panics when it compiles.
fn report(path: &Path) -> String {
    let source = source(path);
    let flags: Vec<&str> = source
        .text
        .lines()
        .nth(1)
        .and_then(|line| line.strip_prefix("# flags:"))
        .map(|flags| flags.split_whitespace().collect())
        .unwrap_or_default();
    let result = options_from_flags(&flags).and_then(|options| compile_source(&source, &options));
    match result {
        Ok(_) => panic!("{} compiled, but it is an error case", path.display()),
        Err(error) => {
            assert!(
                !error.is_internal(),
                "{}: internal error\n{}",
                path.display(),
                error.render()
            );
            error.render()
        }
    }
}

#[test]
fn every_error_case_renders_a_located_report() {
    insta::glob!("cases/err", "*.coop", |path| {
        let text = report(path);
        assert!(
            text.contains("╭─["),
            "{}: no source location in\n{text}",
            path.display()
        );
        insta::assert_snapshot!(text);
    });
}

#[test]
fn the_error_cases_cover_at_least_fifteen_kinds() {
    let mut codes = std::collections::BTreeSet::new();
    for entry in
        std::fs::read_dir(crate::support::root().join("tests/cases/err")).expect("cases/err")
    {
        let path = entry.expect("entry").path();
        for line in report(&path).lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("parse::")
                || trimmed.starts_with("build::")
                || trimmed.starts_with("options::")
            {
                codes.insert(trimmed.to_string());
            }
        }
    }
    assert!(
        codes.len() >= 15,
        "only {} kinds of error: {codes:?}",
        codes.len()
    );
}

#[test]
fn all_errors_of_a_phase_are_reported() {
    let path = crate::support::root().join("tests/cases/err/several_mistakes.coop");
    let source = source(&path);
    let Err(CompileError::Build(errors)) = compile_source(&source, &CompileOptions::default())
    else {
        panic!("several_mistakes.coop must fail to build");
    };
    assert_eq!(errors.len(), 3, "{errors:?}");
}
