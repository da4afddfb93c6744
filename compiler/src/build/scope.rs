//! Naming scopes: where the hierarchical names of layers and parameters come from.
//!
//! A scope is the model's root (path ``), a block instance (`stage2`, `stage2.basic3`) or
//! the `k`-th application of a labelled repeat (`layer.0`). Within a scope each layer gets its
//! label, or else its callee's name and the next free number for that callee (`conv1`,
//! `conv2`, `batchnorm1`, `basic1`). Invariant: a name is used at most once per scope, so the
//! full paths, and the parameter names `<path>.weight` built from them, are unique.

use std::collections::HashMap;

use grammar::Span;

use crate::error::BuildError;

/// One naming scope. See the module documentation.
#[derive(Debug, Default)]
pub struct Scope {
    path: String,
    used: HashMap<String, Span>,
    counters: HashMap<String, usize>,
}

impl Scope {
    /// A scope at `path` (empty for the model's root).
    pub fn new(path: String) -> Self {
        Scope {
            path,
            used: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    /// The full path of `name` in this scope.
    pub fn join(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The next automatic name for a call of `callee`: `callee1`, `callee2`, ..., skipping
    /// names already taken by labels. Returns the full path.
    pub fn auto(&mut self, callee: &str, span: Span) -> String {
        let counter = self.counters.entry(callee.to_string()).or_insert(0);
        loop {
            *counter += 1;
            let name = format!("{callee}{counter}");
            if !self.used.contains_key(&name) {
                self.used.insert(name.clone(), span);
                return self.join(&name);
            }
        }
    }

    /// Takes `label` as a name in this scope, and returns its full path.
    ///
    /// # Errors
    /// [`BuildError::DuplicateName`] when the scope already has a layer of that name.
    pub fn label(&mut self, label: &str, span: Span) -> Result<String, BuildError> {
        if let Some(&previous) = self.used.get(label) {
            let name = label.to_string();
            return Err(BuildError::DuplicateName {
                what: "layer name",
                name,
                span,
                previous,
            });
        }
        self.used.insert(label.to_string(), span);
        Ok(self.join(label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_names_count_per_callee_and_skip_labels() {
        let mut scope = Scope::new("stage1".into());
        assert_eq!(
            scope.label("conv2", Span::new(0, 1)).ok(),
            Some("stage1.conv2".into())
        );
        assert_eq!(scope.auto("conv", Span::new(1, 2)), "stage1.conv1");
        assert_eq!(scope.auto("conv", Span::new(2, 3)), "stage1.conv3");
        assert_eq!(
            scope.auto("batchnorm", Span::new(3, 4)),
            "stage1.batchnorm1"
        );
        let error = scope.label("conv1", Span::new(5, 6)).unwrap_err();
        let BuildError::DuplicateName { previous, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!(previous, Span::new(1, 2));
        assert_eq!(Scope::new(String::new()).join("fc"), "fc");
    }
}
