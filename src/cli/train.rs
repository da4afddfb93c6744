//! `coopc train`: reads an experiment (with `--set` overrides), prints its plan (`--dry-run`)
//! or compiles every phase's network, prepares the run directory and trains, resuming from
//! the latest checkpoint with `--resume`.
//!
//! The run directory holds `config.yaml` (the resolved experiment, every default written
//! out), `plan.txt` (what `--dry-run` prints), `metrics.jsonl` and `checkpoints/`.
//! Invariant: a run directory belongs to one configuration: starting a run in a directory
//! that already holds one is refused, and a resume whose configuration differs from the
//! stored one is refused, naming every key that differs.

pub mod programs;
pub mod progress;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use runtime::checkpoint::write_atomic;
use runtime::experiment::{self, Experiment};
use runtime::train::{self, Outcome, RunSpec, Summary, TrainError};

use super::Failure;
use programs::phase_models;
use progress::Progress;

/// File name of the resolved experiment in a run directory.
pub const CONFIG_FILE: &str = "config.yaml";
/// File name of the rendered plan in a run directory.
pub const PLAN_FILE: &str = "plan.txt";
/// Folder under which runs go by default.
pub const RUNS_DIR: &str = "runs";

/// Flags of `coopc train`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The experiment file (YAML). With `--resume` it may be left out: the run's own
    /// config.yaml is used.
    pub experiment: Option<PathBuf>,
    /// Override a key of the experiment, e.g. `--set optimizer.lr=0.05` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The run directory (default: a new folder under runs/ named after the experiment and
    /// the time).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Print the plan (phases, epochs, learning rate of every epoch) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep every checkpoint (by default an epoch checkpoint goes once a newer one is
    /// written; phase-end checkpoints always stay).
    #[arg(long)]
    pub keep_checkpoints: bool,
}

/// Runs `coopc train`.
///
/// # Errors
///
/// A bad experiment, a run directory that cannot be used, a model that does not compile,
/// unreadable data, a checkpoint that does not belong to the run, or divergence.
#[expect(
    clippy::print_stdout,
    reason = "the plan and the result are the command's output"
)]
pub fn run(args: &Args) -> Result<(), Failure> {
    let experiment = resolve_experiment(args)?;
    let plan = experiment.plan();
    if args.dry_run {
        print!("{}", plan.render());
        return Ok(());
    }
    // Data and models first: a run that cannot start leaves no directory behind that would
    // block the corrected command.
    let data = experiment.load_data().map_err(Failure::user)?;
    let models = phase_models(&experiment, &plan)?;

    let dir = match &args.resume {
        Some(dir) => dir.clone(),
        None => prepare_dir(args.out.as_deref(), &experiment)?,
    };
    write_run_file(
        &dir.join(CONFIG_FILE),
        &experiment.to_yaml(),
        args.resume.is_some(),
    )?;
    write_run_file(&dir.join(PLAN_FILE), &plan.render(), false)?;
    let mut spec = RunSpec::new(&plan, models, dir.clone());
    spec.seed = experiment.seed;
    spec.config_hash = experiment.config_hash();
    spec.coopc_version = env!("CARGO_PKG_VERSION").to_string();
    spec.keep_all_checkpoints = args.keep_checkpoints;
    spec.resume = args.resume.is_some();

    let mut progress = Progress::new(plan.total_epochs());
    match train::train(&spec, &data, &mut progress).map_err(train_failure)? {
        Outcome::Finished(summary) => {
            println!("{}", dir.display());
            println!("{}", result_line(&summary, &spec));
        }
        Outcome::Stopped { epoch } => {
            println!("stopped in epoch {epoch}; --resume {}", dir.display())
        }
    }
    Ok(())
}

/// The experiment: the file given (or the resumed run's config.yaml) with the overrides;
/// for a resume, checked against the stored configuration.
fn resolve_experiment(args: &Args) -> Result<Experiment, Failure> {
    let stored_path = args.resume.as_ref().map(|dir| dir.join(CONFIG_FILE));
    let path = match (&args.experiment, &stored_path) {
        (Some(path), _) => path.clone(),
        (None, Some(stored)) => stored.clone(),
        (None, None) => return Err(Failure::user(RunDirError::NoExperiment)),
    };
    let experiment = experiment::load(&path, &args.set).map_err(Failure::user)?;
    let Some(stored_path) = stored_path else {
        return Ok(experiment);
    };
    if !stored_path.is_file() {
        return Err(Failure::user(RunDirError::NotARun {
            dir: parent_of(&stored_path),
        }));
    }
    let stored = experiment::load(&stored_path, &[]).map_err(Failure::user)?;
    if stored.config_hash() != experiment.config_hash() {
        let differences = config_differences(&stored, &experiment);
        let dir = parent_of(&stored_path);
        return Err(Failure::user(RunDirError::ConfigChanged {
            dir,
            differences,
        }));
    }
    Ok(experiment)
}

/// Every key whose value differs between the stored and the given configuration, as
/// `key: run has A, this command has B`, leaving out the keys the hash ignores.
pub fn config_differences(stored: &Experiment, given: &Experiment) -> Vec<String> {
    let flatten = |experiment: &Experiment| {
        let value = serde_yaml::to_value(experiment).unwrap_or(serde_yaml::Value::Null);
        let mut keys = std::collections::BTreeMap::new();
        flatten_into(&value, String::new(), &mut keys);
        keys
    };
    let (old, new) = (flatten(stored), flatten(given));
    let ignored = ["name", "description", "dataset.path", "checkpoint_every"];
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !ignored.contains(&key.as_str()) && old.get(*key) != new.get(*key))
        .map(|key| {
            let show = |map: &std::collections::BTreeMap<String, String>| {
                map.get(key)
                    .cloned()
                    .unwrap_or_else(|| "nothing".to_string())
            };
            format!(
                "{key}: the run has {}, this command {}",
                show(&old),
                show(&new)
            )
        })
        .collect()
}

fn flatten_into(
    value: &serde_yaml::Value,
    prefix: String,
    keys: &mut std::collections::BTreeMap<String, String>,
) {
    match value {
        serde_yaml::Value::Mapping(mapping) => {
            for (key, inner) in mapping {
                let key = key
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{key:?}"));
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(inner, path, keys);
            }
        }
        serde_yaml::Value::Tagged(tagged) => flatten_into(&tagged.value, prefix, keys),
        other => {
            let text = serde_yaml::to_string(other).unwrap_or_default();
            keys.insert(prefix, text.trim().replace('\n', " "));
        }
    }
}

/// The directory of a new run: `out`, or `runs/<name>-<UTC time>`; created, and refused when
/// it already holds a run.
fn prepare_dir(out: Option<&Path>, experiment: &Experiment) -> Result<PathBuf, Failure> {
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => {
            let stamp = utc_stamp(SystemTime::now());
            let base = Path::new(RUNS_DIR).join(format!("{}-{stamp}", experiment.name));
            let mut dir = base.clone();
            let mut counter = 2;
            while dir.exists() {
                dir = PathBuf::from(format!("{}-{counter}", base.display()));
                counter += 1;
            }
            dir
        }
    };
    let taken = [train::METRICS_FILE, train::CHECKPOINTS_DIR, CONFIG_FILE]
        .iter()
        .any(|name| dir.join(name).exists());
    if taken {
        return Err(Failure::user(RunDirError::Taken { dir }));
    }
    std::fs::create_dir_all(&dir).map_err(|source| io_failure(&dir, source))?;
    Ok(dir)
}

/// Writes a file of the run directory atomically (`keep`: leave an existing one as it is).
fn write_run_file(path: &Path, text: &str, keep: bool) -> Result<(), Failure> {
    if keep && path.exists() {
        return Ok(());
    }
    write_atomic(path, text.as_bytes()).map_err(|source| io_failure(path, source))
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_stamp(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}{month:02}{day:02}-{hour:02}{minute:02}{second:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The final line: test result, epochs, parameters.
fn result_line(summary: &Summary, spec: &RunSpec) -> String {
    let parameters = spec
        .phases
        .last()
        .map_or(0, |phase| phase.model.parameter_count());
    let epochs = summary.last_epoch;
    match summary.test {
        Some(test) => format!(
            "test accuracy {:.2}% ({}/{}), loss {:.4} after epoch {epochs}; \
             {parameters} parameters",
            100.0 * test.accuracy,
            test.correct,
            test.images,
            test.loss
        ),
        None => format!("the run was already complete at epoch {epochs}; {parameters} parameters"),
    }
}

/// A training error as a failure: the target and model inconsistencies are coopc's bugs.
fn train_failure(error: TrainError) -> Failure {
    match error {
        TrainError::Target { .. } | TrainError::BadModel { .. } => Failure::internal(error),
        other => Failure::user(other),
    }
}

fn io_failure(path: &Path, source: std::io::Error) -> Failure {
    Failure::user(RunDirError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Problems with the run directory or the experiment of a resume.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunDirError {
    /// Neither an experiment nor a run to resume.
    #[error("no experiment file given")]
    #[diagnostic(
        code(coopc::train::no_experiment),
        help("coopc train EXPERIMENT.yaml, or coopc train --resume RUN_DIR")
    )]
    NoExperiment,
    /// The directory already holds a run.
    #[error("{dir} already holds a run")]
    #[diagnostic(
        code(coopc::train::taken),
        help("continue it with --resume, or choose another --out")
    )]
    Taken {
        /// The directory.
        dir: PathBuf,
    },
    /// `--resume` names a directory without a run.
    #[error("{dir} is not a run directory (it has no {CONFIG_FILE})")]
    #[diagnostic(code(coopc::train::not_a_run))]
    NotARun {
        /// The directory.
        dir: PathBuf,
    },
    /// The configuration of a resume differs from the run's.
    #[error("{dir} was started with another configuration:\n  {}", differences.join("\n  "))]
    #[diagnostic(
        code(coopc::train::config_changed),
        help("resume with the experiment and --set overrides the run was started with")
    )]
    ConfigChanged {
        /// The run.
        dir: PathBuf,
        /// One line per differing key.
        differences: Vec<String>,
    },
    /// A file of the run cannot be written.
    #[error("{path}: {source}")]
    #[diagnostic(code(coopc::train::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        let at = |seconds| utc_stamp(UNIX_EPOCH + std::time::Duration::from_secs(seconds));
        assert_eq!(at(0), "19700101-000000");
        assert_eq!(at(951_782_400), "20000229-000000");
        assert_eq!(at(1_700_000_000), "20231114-221320");
    }
}
