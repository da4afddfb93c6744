//! Helpers shared by the integration tests: the model files and compiling them.

use std::path::{Path, PathBuf};

use compiler::error::CompileError;
use compiler::pipeline::{compile_source, CompileOptions, Compiled, Override};
use grammar::SourceFile;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `models/*.coop`, sorted by name.
pub fn model_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .expect("models/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "coop"))
        .collect();
    paths.sort();
    paths
}

/// The source of `path`, named by its file name (so reports do not depend on the checkout).
pub fn source(path: &Path) -> SourceFile {
    let text = std::fs::read_to_string(path).expect("model file is readable");
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    SourceFile::new(name, text)
}

/// Options with `--set` overrides and the defaults otherwise.
pub fn options_with(overrides: &[&str]) -> CompileOptions {
    let overrides = overrides
        .iter()
        .map(|text| Override::parse(text).expect("valid --set"))
        .collect();
    CompileOptions {
        overrides,
        verify_each: true,
        ..CompileOptions::default()
    }
}

/// Compiles `models/<name>.coop` with `--set` overrides.
pub fn compile_model(name: &str, overrides: &[&str]) -> Result<Compiled, CompileError> {
    let path = root().join("models").join(format!("{name}.coop"));
    compile_source(&source(&path), &options_with(overrides))
}
