//! Experiment files: YAML describing one training run ([`schema`]), read with `--set`
//! overrides ([`overrides`]), checked, and turned into a [`Plan`] ([`plan`]).
//!
//! Reading goes: text → YAML value tree (syntax errors located by serde_yaml) → overrides
//! applied to the tree → the tree read into [`Experiment`] (unknown keys and wrong types are
//! errors; without overrides the text itself is read, so serde_yaml gives the exact position)
//! → [`Experiment::issues`] (value ranges, contradictions; located by [`locate`]).
//!
//! Invariant: [`load`] and [`parse`] return only experiments without issues, with `name`
//! filled in; [`Experiment::to_yaml`] of a result reads back to an equal experiment.

pub mod datasets;
mod error;
pub mod locate;
pub mod overrides;
pub mod plan;
pub mod schema;

use std::path::Path;

use miette::{NamedSource, SourceSpan};
use serde_yaml::Value;
use sha2::{Digest, Sha256};

pub use datasets::{BatchSource, RunData};
pub use error::{ConfigError, IssueReport, SchemaError};
pub use overrides::Override;
pub use plan::{EpochPlan, PhaseActivation, PhasePlan, PhaseStart, Plan};
pub use schema::{
    ActivationName, DatasetConfig, Experiment, Issue, MixConfig, ModelConfig, ModelParam,
    OptimizerConfig, OptimizerKind, Phase1Config, Phase2Config, Variant,
};

/// Reads the experiment file at `path` and applies `overrides` (each `key.path=value`).
///
/// # Errors
///
/// [`ConfigError::Read`] when the file cannot be read; otherwise as [`parse`].
pub fn load(path: &Path, overrides: &[String]) -> Result<Experiment, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let overrides = overrides
        .iter()
        .map(|assignment| Override::parse(assignment))
        .collect::<Result<Vec<_>, _>>()?;
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned());
    let mut experiment = parse(&source, &path.display().to_string(), &overrides)?;
    if experiment.name.is_empty() {
        experiment.name = stem.unwrap_or_else(|| "experiment".to_string());
    }
    Ok(experiment)
}

/// Reads an experiment from `source` (named `file` in messages), applying `overrides`.
/// An absent `name` becomes `file`'s stem.
///
/// # Errors
///
/// [`ConfigError::Schema`] for malformed YAML, unknown keys and mistyped values (with
/// `file:line:column`), [`ConfigError::Override`] for an override that does not fit, and
/// [`ConfigError::Invalid`] listing every value that breaks a rule.
pub fn parse(source: &str, file: &str, overrides: &[Override]) -> Result<Experiment, ConfigError> {
    let context = Context { source, file };
    let mut tree: Value = serde_yaml::from_str(source).map_err(|error| context.schema(&error))?;
    for assignment in overrides {
        assignment.apply(&mut tree)?;
    }

    let mut experiment = if overrides.is_empty() {
        from_text(source).map_err(|(_, error)| context.schema(&error))?
    } else {
        from_tree(tree).map_err(|(path, error)| context.merged_error(&path, &error, overrides))?
    };

    let issues = experiment.issues();
    if !issues.is_empty() {
        let issues = issues
            .iter()
            .map(|issue| context.issue(issue, overrides))
            .collect();
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            issues,
        });
    }
    if experiment.name.is_empty() {
        let stem = Path::new(file)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
        experiment.name = stem.unwrap_or_else(|| "experiment".to_string());
    }
    Ok(experiment)
}

/// A deserialisation error with the key path where it happened (`.` for the top).
type PathError = (String, serde_yaml::Error);

fn from_text(source: &str) -> Result<Experiment, PathError> {
    let deserializer = serde_yaml::Deserializer::from_str(source);
    serde_path_to_error::deserialize(deserializer)
        .map_err(|error| (error.path().to_string(), error.into_inner()))
}

fn from_tree(tree: Value) -> Result<Experiment, PathError> {
    serde_path_to_error::deserialize(tree)
        .map_err(|error| (error.path().to_string(), error.into_inner()))
}

/// The key segments of a serde_path_to_error path (`mix.activations[1]` → `mix`,
/// `activations`, `1`).
fn segments(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|segment| !segment.is_empty())
        .map(str::to_string)
        .collect()
}

/// The file being read, for locating and wording errors.
struct Context<'a> {
    source: &'a str,
    file: &'a str,
}

impl Context<'_> {
    fn named_source(&self) -> NamedSource<String> {
        NamedSource::new(self.file, self.source.to_string())
    }

    /// A [`ConfigError::Schema`] at byte `offset` (`len` bytes underlined).
    fn schema_at(&self, offset: usize, len: usize, message: String) -> ConfigError {
        let (line, column) = locate::line_column(self.source, offset);
        let help = message
            .contains("unknown field")
            .then(|| "keys are case-sensitive; docs/experiments.md lists every key".to_string());
        ConfigError::Schema(Box::new(SchemaError {
            file: self.file.to_string(),
            line,
            column,
            message,
            source_code: self.named_source(),
            span: SourceSpan::from((offset, len.max(1))),
            help,
        }))
    }

    /// A located error from serde_yaml reading the text.
    fn schema(&self, error: &serde_yaml::Error) -> ConfigError {
        let text = error.to_string();
        let Some(location) = error.location() else {
            return self.schema_at(0, 1, text);
        };
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
        let rest = &self.source[location.index().min(self.source.len())..];
        let len = rest
            .find(|c: char| c.is_whitespace() || c == ':' || c == ',')
            .unwrap_or(1);
        self.schema_at(location.index(), len, message)
    }

    /// An error from reading the overridden tree: blamed on the override that introduced
    /// the key when there is one, else located in the file.
    fn merged_error(
        &self,
        path: &str,
        error: &serde_yaml::Error,
        overrides: &[Override],
    ) -> ConfigError {
        let message = error.to_string();
        let path_segments = segments(path);
        let blamed = overrides.iter().find(|assignment| {
            let key = &assignment.path;
            let below = key.starts_with(&path_segments);
            let names_next = key.get(path_segments.len()).is_some_and(|next| {
                key.len() > path_segments.len() && message.contains(&format!("`{next}`"))
            });
            let same = key.len() == path_segments.len();
            (below && (same || names_next)) || path_segments.starts_with(key)
        });
        if let Some(assignment) = blamed {
            let problem = format!("{message} (at `{path}`)");
            return ConfigError::Override {
                assignment: assignment.assignment.clone(),
                problem,
            };
        }
        // Not an override's doing: read the file alone for serde_yaml's exact position.
        if let Err((file_path, file_error)) = from_text(self.source) {
            if file_path == path {
                return self.schema(&file_error);
            }
        }
        let (offset, len) =
            locate::locate(self.source, &borrowed(&path_segments)).unwrap_or((0, 1));
        self.schema_at(offset, len, format!("{path}: {message}"))
    }

    /// The report of one broken rule.
    fn issue(&self, issue: &Issue, overrides: &[Override]) -> IssueReport {
        let key_segments = segments(&issue.key);
        let overridden = overrides
            .iter()
            .find(|assignment| key_segments.starts_with(&assignment.path));
        let (place, span) = match overridden {
            Some(assignment) => (
                format!("{} (from --set {})", self.file, assignment.assignment),
                None,
            ),
            None => match locate::locate(self.source, &borrowed(&key_segments)) {
                Some((offset, len)) => {
                    let (line, column) = locate::line_column(self.source, offset);
                    let span = SourceSpan::from((offset, len));
                    (format!("{}:{line}:{column}", self.file), Some(span))
                }
                None => (self.file.to_string(), None),
            },
        };
        IssueReport {
            place,
            key: issue.key.clone(),
            message: issue.message.clone(),
            source_code: self.named_source(),
            span,
        }
    }
}

fn borrowed(segments: &[String]) -> Vec<&str> {
    segments.iter().map(String::as_str).collect()
}

impl Experiment {
    /// The resolved experiment as YAML, every default written out (what a run directory
    /// keeps as `config.yaml`).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self)
            .expect("invariant: experiments hold only strings, numbers, lists and mappings")
    }

    /// The plan of the run.
    pub fn plan(&self) -> Plan {
        Plan::new(self)
    }

    /// A SHA-256 (hex) of everything that decides what the run computes: the whole
    /// experiment except `name`, `description`, `dataset.path` and `checkpoint_every`, which
    /// name or place the run or only decide how often it is saved. A checkpoint records it;
    /// resuming under a different hash is refused.
    pub fn config_hash(&self) -> String {
        let mut hashed = self.clone();
        hashed.name.clear();
        hashed.description = None;
        hashed.dataset.path = std::path::PathBuf::new();
        hashed.checkpoint_every = 0;
        // Struct fields serialise in declaration order and maps are sorted: canonical text.
        let canonical = serde_json::to_string(&hashed)
            .expect("invariant: experiments hold only strings, numbers, lists and mappings");
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests;
