//! What can be wrong with an experiment file or a `--set` override, as miette reports that
//! name the file, the line and the column, and underline the place.
//!
//! Invariant: every error that comes from the file's text carries `file:line:column` in its
//! message (so it reads well even without miette's graphical output) and, when the place is
//! known, a labelled span into the file; errors caused by an override name the override.

use std::path::PathBuf;

use miette::{NamedSource, SourceSpan};

/// An error while reading, overriding, parsing or checking an experiment.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read experiment file {path}: {source}")]
    #[diagnostic(code(coopc::experiment::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// The YAML is malformed, a key is unknown, or a value has the wrong type.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Schema(Box<SchemaError>),

    /// A `--set` override is malformed, or its value does not fit the schema.
    #[error("--set {assignment}: {problem}")]
    #[diagnostic(
        code(coopc::experiment::set),
        help("write `--set key.path=value`: a key of the experiment schema, a YAML value")
    )]
    Override {
        /// The override as given.
        assignment: String,
        /// What is wrong with it.
        problem: String,
    },

    /// Values parse but break the schema's rules (ranges, contradictions).
    #[error("{file}: {} problem{} in the experiment", issues.len(), plural(issues.len()))]
    #[diagnostic(code(coopc::experiment::invalid))]
    Invalid {
        /// The file's name as given.
        file: String,
        /// One report per problem.
        #[related]
        issues: Vec<IssueReport>,
    },
}

/// A YAML or schema error at a known place in the file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(coopc::experiment::schema))]
pub struct SchemaError {
    /// The file's name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What serde_yaml said, without its own position suffix.
    pub message: String,
    /// The file's text.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// Where.
    #[label("here")]
    pub span: SourceSpan,
    /// What to do, when there is something specific to say.
    #[help]
    pub help: Option<String>,
}

/// One broken rule, located in the file when the key is written there.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{place}: `{key}` {message}")]
#[diagnostic(code(coopc::experiment::value))]
pub struct IssueReport {
    /// `file:line:column`, or `file (from --set key=value)` for an overridden key, or just
    /// the file when the key is not written in it.
    pub place: String,
    /// The dotted key.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The file's text.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// The key's place in the file, when found.
    #[label("set here")]
    pub span: Option<SourceSpan>,
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}
