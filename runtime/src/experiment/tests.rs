//! Tests of reading experiments: error positions, overrides, round trips, hashing, and every
//! shipped file in `experiments/` (each loads, and its plan's learning rates are the ones its
//! YAML describes, recomputed here independently from the raw YAML tree).

use super::*;
use crate::schedule_lr::Schedule;

const BASE: &str = "\
name: demo
model:
  file: models/lenet.coop
dataset:
  kind: fashion-mnist
  path: /data
batch_size: 64
optimizer:
  lr: 0.05
  momentum: 0.9
variant: mix
phase1:
  epochs: 2
phase2:
  epochs: 8
  schedule: {step: {every: 3, factor: 0.5}}
";

fn parse_text(text: &str, overrides: &[&str]) -> Result<Experiment, ConfigError> {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|text| Override::parse(text).unwrap())
        .collect();
    parse(text, "demo.yaml", &overrides)
}

/// The report as miette draws it without colour (what a terminal shows, minus escapes).
fn rendered(error: &ConfigError) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let mut out = String::new();
    handler.render_report(&mut out, error).unwrap();
    out
}

#[test]
fn the_base_experiment_reads_and_plans() {
    let experiment = parse_text(BASE, &[]).unwrap();
    assert_eq!(experiment.name, "demo");
    let plan = experiment.plan();
    assert_eq!(plan.total_epochs(), 10);
    let rates: Vec<f64> = plan.epochs().map(|epoch| epoch.lr).collect();
    assert_eq!(
        rates,
        vec![0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125]
    );
}

#[test]
fn unknown_key_error_shows_file_line_and_column() {
    let text = BASE.replace("  momentum: 0.9", "  momentun: 0.9");
    let error = parse_text(&text, &[]).unwrap_err();
    let ConfigError::Schema(schema) = &error else {
        panic!("{error:?}")
    };
    assert_eq!((schema.line, schema.column), (10, 3));
    let message = error.to_string();
    assert!(
        message.starts_with("demo.yaml:10:3: optimizer: unknown field `momentun`"),
        "{message}"
    );
    let drawn = rendered(&error);
    assert!(
        drawn.contains("momentun: 0.9") && drawn.contains("here"),
        "{drawn}"
    );
}

#[test]
fn wrong_types_and_bad_names_are_located() {
    let text = BASE.replace("batch_size: 64", "batch_size: sixty-four");
    let error = parse_text(&text, &[]).unwrap_err();
    assert!(error.to_string().starts_with("demo.yaml:7:"), "{error}");

    let text = BASE.replace("variant: mix", "variant: mixed");
    let error = parse_text(&text, &[]).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("demo.yaml:11:10:") && message.contains("mixed"),
        "{message}"
    );

    let text = BASE.replace("kind: fashion-mnist", "kind: svhn");
    assert!(parse_text(&text, &[])
        .unwrap_err()
        .to_string()
        .starts_with("demo.yaml:5:"));
}

#[test]
fn yaml_syntax_errors_are_located() {
    let text = BASE.replace("  epochs: 2", "  epochs: [2");
    let error = parse_text(&text, &[]).unwrap_err();
    assert!(matches!(error, ConfigError::Schema(_)), "{error:?}");
    assert!(error.to_string().starts_with("demo.yaml:"), "{error}");
}

#[test]
fn bad_values_are_all_reported_at_their_keys() {
    let text = BASE
        .replace("momentum: 0.9", "momentum: 1.5")
        .replace("every: 3", "every: 0");
    let error = parse_text(&text, &[]).unwrap_err();
    let ConfigError::Invalid { issues, .. } = &error else {
        panic!("{error:?}")
    };
    let places: Vec<(&str, &str)> = issues
        .iter()
        .map(|issue| (issue.key.as_str(), issue.place.as_str()))
        .collect();
    assert_eq!(
        places,
        vec![
            ("optimizer.momentum", "demo.yaml:10:3"),
            ("phase2.schedule.step.every", "demo.yaml:16:21")
        ]
    );
    assert_eq!(error.to_string(), "demo.yaml: 2 problems in the experiment");
    let drawn = rendered(&error);
    assert!(
        drawn.contains("must be in [0, 1), got 1.5") && drawn.contains("set here"),
        "{drawn}"
    );
}

#[test]
fn overrides_change_values_before_reading() {
    let experiment = parse_text(BASE, &["optimizer.lr=0.01", "dataset.path=/elsewhere"]).unwrap();
    assert_eq!(experiment.optimizer.lr, 0.01);
    assert_eq!(
        experiment.dataset.path,
        std::path::PathBuf::from("/elsewhere")
    );
    let switched = parse_text(BASE, &["variant=baseline", "target=prelu"]).unwrap();
    assert_eq!(switched.plan().phases.len(), 1);
    assert_eq!(switched.target(), ActivationName::Prelu);
    let schedule = parse_text(BASE, &["phase2.schedule=cosine"]).unwrap();
    assert_eq!(schedule.phase2.schedule, Schedule::Cosine);
}

#[test]
fn null_removes_an_optional_value_and_flow_mappings_replace_schedules() {
    let text = BASE.replace("variant: mix", "variant: mix\ntarget: relu");
    assert!(
        parse_text(&text, &["variant=mixture"]).is_err(),
        "mixture refuses a target"
    );
    let mixture = parse_text(&text, &["variant=mixture", "target=null"]).unwrap();
    assert_eq!(mixture.target, None);
    let stepped = parse_text(BASE, &["phase1.schedule={step: {every: 1, factor: 0.5}}"]).unwrap();
    assert_eq!(
        stepped.phase1.schedule,
        Schedule::Step {
            every: 1,
            factor: 0.5
        }
    );
}

#[test]
fn overrides_can_supply_keys_the_file_lacks() {
    let text = BASE.replace("  path: /data\n", "");
    assert!(parse_text(&text, &[]).is_err());
    let experiment = parse_text(&text, &["dataset.path=/supplied"]).unwrap();
    assert_eq!(
        experiment.dataset.path,
        std::path::PathBuf::from("/supplied")
    );
}

#[test]
fn unknown_or_mistyped_override_keys_name_the_override() {
    let error = parse_text(BASE, &["optimizer.lrr=0.1"]).unwrap_err();
    let ConfigError::Override {
        assignment,
        problem,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(assignment, "optimizer.lrr=0.1");
    assert!(problem.contains("unknown field `lrr`"), "{problem}");

    let error = parse_text(BASE, &["batch_size=many"]).unwrap_err();
    assert!(
        error.to_string().starts_with("--set batch_size=many:"),
        "{error}"
    );

    let error = parse_text(BASE, &["optimizer.momentum=2"]).unwrap_err();
    let ConfigError::Invalid { issues, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        issues[0].place,
        "demo.yaml (from --set optimizer.momentum=2)"
    );
}

#[test]
fn a_file_error_is_still_located_when_overrides_are_given() {
    let text = BASE.replace("  momentum: 0.9", "  momentun: 0.9");
    let error = parse_text(&text, &["optimizer.lr=0.01"]).unwrap_err();
    assert!(error.to_string().starts_with("demo.yaml:10:3:"), "{error}");
}

#[test]
fn resolved_yaml_reads_back_equal() {
    let experiment = parse_text(BASE, &["optimizer.nesterov=true"]).unwrap();
    let yaml = experiment.to_yaml();
    assert!(
        yaml.contains("crop_padding: 4"),
        "defaults are written out:\n{yaml}"
    );
    let again = parse_text(&yaml, &[]).unwrap();
    assert_eq!(again, experiment);
}

#[test]
fn config_hash_ignores_names_places_and_checkpoint_frequency_only() {
    let base = parse_text(BASE, &[]).unwrap().config_hash();
    assert_eq!(base.len(), 64);
    let same = [
        "name=other",
        "dataset.path=/moved",
        "checkpoint_every=5",
        "description=x",
    ];
    for assignment in same {
        assert_eq!(
            parse_text(BASE, &[assignment]).unwrap().config_hash(),
            base,
            "{assignment}"
        );
    }
    for assignment in [
        "optimizer.lr=0.01",
        "seed=2",
        "eval_every=2",
        "dataset.augment=true",
    ] {
        assert_ne!(
            parse_text(BASE, &[assignment]).unwrap().config_hash(),
            base,
            "{assignment}"
        );
    }
}

#[test]
fn load_names_the_experiment_after_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my-run.yaml");
    std::fs::write(&path, BASE.replace("name: demo\n", "")).unwrap();
    assert_eq!(load(&path, &[]).unwrap().name, "my-run");
    let error = load(&dir.path().join("absent.yaml"), &[]).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    let error = load(&path, &["no-equals".to_string()]).unwrap_err();
    assert!(matches!(error, ConfigError::Override { .. }));
}

// ---- The shipped experiment files ---------------------------------------------------------

fn experiments_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments")
}

fn shipped() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(experiments_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    paths.sort();
    paths
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

/// The rates of a phase recomputed from the raw YAML schedule the way PyTorch's chainable
/// schedulers step: multiply at each boundary, closed form only for cosine.
fn simulated_rates(schedule: &Value, base: f64, epochs: u32) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut lr = base;
    for epoch in 0..epochs {
        if let Some(step) = schedule.get("step") {
            let every = number(&step["every"]) as u32;
            if epoch > 0 && epoch % every == 0 {
                lr *= number(&step["factor"]);
            }
        } else if let Some(multistep) = schedule.get("multistep") {
            let milestones = multistep["milestones"].as_sequence().unwrap();
            if milestones
                .iter()
                .any(|milestone| number(milestone) as u32 == epoch)
            {
                lr *= number(&multistep["factor"]);
            }
        } else if schedule.as_str() == Some("cosine") {
            let progress = f64::from(epoch) / f64::from(epochs);
            lr = base * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0;
        } else {
            assert!(
                schedule.is_null() || schedule.as_str() == Some("constant"),
                "{schedule:?}"
            );
        }
        rates.push(lr);
    }
    rates
}

fn assert_rates_match(file: &str, phase: &str, planned: &[f64], expected: &[f64]) {
    assert_eq!(planned.len(), expected.len(), "{file} {phase}: epoch count");
    for (epoch, (planned, expected)) in planned.iter().zip(expected).enumerate() {
        let close = (planned - expected).abs() <= 1e-12 * expected.abs();
        assert!(
            close,
            "{file} {phase} epoch {epoch}: plan {planned}, schedule {expected}"
        );
    }
}

#[test]
fn every_shipped_experiment_loads_and_plans_its_configured_rates() {
    let paths = shipped();
    assert!(
        paths.len() >= 40,
        "expected the paper's recipes, found {} files",
        paths.len()
    );
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let experiment = load(&path, &[]).unwrap_or_else(|error| panic!("{file}: {error}"));
        let raw: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let plan = experiment.plan();
        let optimizer_lr = number(&raw["optimizer"]["lr"]);

        // Phase 2: the configured epochs, base rate and schedule.
        let phase2 = plan.phases.last().unwrap();
        let epochs2 = number(&raw["phase2"]["epochs"]) as u32;
        let base2 = raw["phase2"].get("lr").map_or(optimizer_lr, number);
        let expected = simulated_rates(&raw["phase2"]["schedule"], base2, epochs2);
        assert_rates_match(&file, "phase 2", &phase2.lrs, &expected);

        // Phase 1, for the variants that have one: its length and its own schedule.
        let variant = raw["variant"].as_str().unwrap();
        let has_phase1 = matches!(variant, "baseline-tpt" | "mix" | "mixture");
        assert_eq!(plan.phases.len(), 1 + usize::from(has_phase1), "{file}");
        if has_phase1 {
            let section = &raw["phase1"];
            let epochs1 = match section.get("epochs") {
                Some(epochs) => number(epochs) as u32,
                None => {
                    let fraction = section.get("fraction").map_or(0.2, number);
                    ((fraction * f64::from(epochs2)).round() as u32).max(1)
                }
            };
            let base1 = section.get("lr").map_or(optimizer_lr, number);
            let expected = simulated_rates(&section["schedule"], base1, epochs1);
            assert_rates_match(&file, "phase 1", &plan.phases[0].lrs, &expected);
        }
        let global: Vec<u32> = plan.epochs().map(|epoch| epoch.epoch).collect();
        assert_eq!(
            global,
            (1..=plan.total_epochs()).collect::<Vec<_>>(),
            "{file}"
        );
    }
}

#[test]
fn shipped_experiments_name_known_models_and_their_own_file_name() {
    let models = [
        "lenet",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "vgg16",
    ];
    let imagenet_models = ["alexnet", "resnet18"];
    for path in shipped() {
        let experiment = load(&path, &[]).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            experiment.name, stem,
            "the name: key should match the file name"
        );
        let model_file = experiment.model.file.to_string_lossy().into_owned();
        let model = model_file
            .strip_prefix("models/")
            .and_then(|rest| rest.strip_suffix(".coop"));
        let model = model.unwrap_or_else(|| panic!("{stem}: model file {model_file}"));
        assert!(
            models.contains(&model) || imagenet_models.contains(&model),
            "{stem}: {model}"
        );
        assert!(stem.contains(model), "{stem} should name its model {model}");
        assert!(
            stem.starts_with(experiment.dataset.kind.name()),
            "{stem}: dataset kind"
        );
        let classes = match experiment.dataset.kind {
            crate::data::DatasetKind::Cifar100 => 100,
            crate::data::DatasetKind::Imagenet => 1000,
            _ => 10,
        };
        assert_eq!(
            experiment.model.params.get("classes"),
            Some(&ModelParam::Int(classes)),
            "{stem}"
        );
    }
}

#[test]
fn cifar_recipes_follow_the_paper() {
    for path in shipped() {
        let experiment = load(&path, &[]).unwrap();
        let kind = experiment.dataset.kind;
        if !matches!(
            kind,
            crate::data::DatasetKind::Cifar10 | crate::data::DatasetKind::Cifar100
        ) {
            continue;
        }
        let name = &experiment.name;
        assert_eq!(experiment.batch_size, 64, "{name}");
        assert_eq!(
            (experiment.optimizer.lr, experiment.optimizer.momentum),
            (0.1, 0.9),
            "{name}"
        );
        assert_eq!(experiment.optimizer.weight_decay, 1e-4, "{name}");
        assert!(experiment.dataset.augment, "{name}");
        let plan = experiment.plan();
        let phase2 = plan.phases.last().unwrap();
        assert_eq!(phase2.epochs, 300, "{name}");
        assert_eq!(
            phase2.schedule,
            Schedule::Step {
                every: 50,
                factor: 0.2
            },
            "{name}"
        );
        if plan.phases.len() == 2 {
            assert_eq!(
                plan.phases[0].schedule,
                Schedule::Step {
                    every: 10,
                    factor: 0.2
                },
                "{name}"
            );
            let expected = if name.contains("phase1-") {
                None
            } else {
                Some(60)
            };
            if let Some(epochs) = expected {
                assert_eq!(plan.phases[0].epochs, epochs, "{name}");
            }
        }
    }
}
