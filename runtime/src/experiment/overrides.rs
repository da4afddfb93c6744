//! `--set key.path=value` overrides, applied to the YAML value tree before it is read into
//! the schema, so an override behaves exactly as if the file had said it.
//!
//! The value is parsed as YAML (`0.05` is a number, `true` a boolean, `[relu, elu]` a list,
//! `null` removes an optional key's value); missing mappings on the path are created. Whether
//! the key exists in the schema is decided when the tree is read (unknown keys are errors
//! there), and such an error is reported against the override that introduced the key.
//!
//! Invariant: applying an override changes exactly the node at its path (and creates only
//! the mappings leading to it).

use serde_yaml::{Mapping, Value};

use super::ConfigError;

/// One parsed `--set` override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The override as given (`optimizer.lr=0.05`).
    pub assignment: String,
    /// The key path, split at dots (`["optimizer", "lr"]`).
    pub path: Vec<String>,
    /// The value, parsed as YAML.
    pub value: Value,
}

impl Override {
    /// Parses `key.path=value`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Override`] without `=`, with an empty key segment, or with a value that
    /// is not YAML.
    pub fn parse(assignment: &str) -> Result<Override, ConfigError> {
        let problem = |problem: String| ConfigError::Override {
            assignment: assignment.to_string(),
            problem,
        };
        let Some((key, text)) = assignment.split_once('=') else {
            return Err(problem("no `=` between the key and the value".to_string()));
        };
        let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(problem(format!("`{key}` has an empty key segment")));
        }
        let value: Value = serde_yaml::from_str(text)
            .map_err(|error| problem(format!("the value is not YAML: {error}")))?;
        Ok(Override {
            assignment: assignment.to_string(),
            path,
            value,
        })
    }

    /// The dotted key (`optimizer.lr`).
    pub fn key(&self) -> String {
        self.path.join(".")
    }

    /// Sets the value at the path in `root`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Override`] when the path runs through a value that is not a mapping
    /// (a number, a string), or indexes past the end of a list.
    pub fn apply(&self, root: &mut Value) -> Result<(), ConfigError> {
        let mut node = root;
        for (depth, segment) in self.path.iter().enumerate() {
            let last = depth + 1 == self.path.len();
            node = self.step(node, segment, depth)?;
            if last {
                *node = self.value.clone();
            }
        }
        Ok(())
    }

    /// The child `segment` of `node`, created (as an empty mapping) when missing.
    fn step<'a>(
        &self,
        node: &'a mut Value,
        segment: &str,
        depth: usize,
    ) -> Result<&'a mut Value, ConfigError> {
        let parent = self.path[..depth].join(".");
        let fail = |problem: String| ConfigError::Override {
            assignment: self.assignment.clone(),
            problem,
        };
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        match node {
            Value::Mapping(mapping) => {
                let key = Value::String(segment.to_string());
                Ok(mapping.entry(key).or_insert(Value::Null))
            }
            Value::Sequence(items) => {
                let length = items.len();
                let index: usize = segment.parse().map_err(|_| {
                    fail(format!("`{parent}` is a list; `{segment}` is not an index"))
                })?;
                items.get_mut(index).ok_or_else(|| {
                    fail(format!(
                        "`{parent}` has {length} items; there is no item {index}"
                    ))
                })
            }
            other => {
                let kind = kind_of(other);
                let shown = if parent.is_empty() {
                    "the document"
                } else {
                    parent.as_str()
                };
                Err(fail(format!(
                    "`{shown}` is {kind}, so it has no key `{segment}`"
                )))
            }
        }
    }
}

/// A phrase for a YAML node's kind.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Value {
        serde_yaml::from_str("optimizer: {lr: 0.1}\nmix: {activations: [relu, elu]}\nseed: 3")
            .unwrap()
    }

    fn apply(assignment: &str) -> Result<Value, ConfigError> {
        let mut root = tree();
        Override::parse(assignment)?.apply(&mut root)?;
        Ok(root)
    }

    #[test]
    fn values_are_parsed_as_yaml() {
        let root = apply("optimizer.lr=0.05").unwrap();
        assert_eq!(root["optimizer"]["lr"], Value::from(0.05));
        let root = apply("dataset.path=/elsewhere").unwrap();
        assert_eq!(root["dataset"]["path"], Value::from("/elsewhere"));
        let root = apply("mix.activations=[prelu, softplus]").unwrap();
        assert_eq!(root["mix"]["activations"][1], Value::from("softplus"));
        let root = apply("optimizer.nesterov=true").unwrap();
        assert_eq!(root["optimizer"]["nesterov"], Value::from(true));
    }

    #[test]
    fn list_items_are_addressed_by_index() {
        let root = apply("mix.activations.1=prelu").unwrap();
        assert_eq!(root["mix"]["activations"][1], Value::from("prelu"));
        let error = apply("mix.activations.5=prelu").unwrap_err();
        assert!(error.to_string().contains("has 2 items"), "{error}");
        let error = apply("mix.activations.first=prelu").unwrap_err();
        assert!(error.to_string().contains("is not an index"), "{error}");
    }

    #[test]
    fn paths_through_scalars_and_malformed_overrides_are_refused() {
        let error = apply("seed.value=1").unwrap_err();
        assert!(error.to_string().contains("`seed` is a number"), "{error}");
        assert!(apply("optimizer.lr")
            .unwrap_err()
            .to_string()
            .contains("no `=`"));
        assert!(apply("optimizer..lr=1")
            .unwrap_err()
            .to_string()
            .contains("empty key"));
        assert!(apply("optimizer.lr=[1")
            .unwrap_err()
            .to_string()
            .contains("not YAML"));
    }

    #[test]
    fn the_key_is_the_dotted_path() {
        let parsed = Override::parse("phase1.schedule.step.every=5").unwrap();
        assert_eq!(parsed.key(), "phase1.schedule.step.every");
        assert_eq!(parsed.value, Value::from(5));
    }
}
