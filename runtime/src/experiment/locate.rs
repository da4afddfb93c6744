//! Finding where a key path (`phase1.schedule.step.every`) is written in an experiment file,
//! so that problems found after parsing (bad values, contradictions) still point at a line.
//!
//! serde_yaml's value tree has no positions, so this reads the text itself: block mappings by
//! indentation, and `{ key: … }` flow mappings by searching the rest of the parent's line.
//! It understands the YAML that experiment files use, not all of YAML; when it cannot find a
//! key it answers `None` and the report names the key without underlining it.
//!
//! Invariant: an answer is always a byte range of the source that holds the last key found
//! on the path (the deepest that could be found), never a made-up position.

/// A byte range `[start, start + len)` of the source.
pub type ByteRange = (usize, usize);

/// One non-blank, non-comment line: where it starts, its indentation, its text.
struct Line<'a> {
    start: usize,
    indent: usize,
    text: &'a str,
}

fn lines(source: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in source.split_inclusive('\n') {
        let text = raw.trim_end_matches(['\n', '\r']);
        let trimmed = text.trim_start();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push(Line {
                start,
                indent: text.len() - trimmed.len(),
                text,
            });
        }
        start += raw.len();
    }
    out
}

/// Where `key:` appears as a key in `text` at or after `from` (a block key at the start, or
/// a flow key after `{`, `,` or whitespace), as a byte offset into `text`.
fn find_key(text: &str, key: &str, from: usize, block_only: bool) -> Option<usize> {
    let pattern = format!("{key}:");
    let mut search = from;
    while let Some(found) = text.get(search..)?.find(&pattern) {
        let at = search + found;
        let before = text[..at].trim_end_matches(' ');
        let after = text[at + pattern.len()..].chars().next();
        let key_ends = after.is_none_or(|next| next == ' ' || next == '}' || next == ',');
        let block_start = before.is_empty() || before.trim_start() == "-";
        let flow_start = before.ends_with('{') || before.ends_with(',');
        if key_ends && (block_start || (!block_only && flow_start)) {
            return Some(at);
        }
        search = at + pattern.len();
    }
    None
}

/// The byte range of the deepest key of `path` that can be found in `source`.
pub fn locate(source: &str, path: &[&str]) -> Option<ByteRange> {
    let lines = lines(source);
    // The block being searched: lines[first..end], keys deeper than `parent_indent`.
    let (mut first, mut end) = (0, lines.len());
    let mut parent_indent: Option<usize> = None;
    // Within one line, once a flow mapping has been entered: (line, offset after parent key).
    let mut inline: Option<(usize, usize)> = None;
    let mut found: Option<ByteRange> = None;

    for key in path {
        let hit = match inline {
            Some((line, from)) => find_key(lines[line].text, key, from, false).map(|at| (line, at)),
            None => (first..end).find_map(|index| {
                let line = &lines[index];
                let deeper = parent_indent.is_none_or(|indent| line.indent > indent);
                let is_key = deeper && find_key(line.text, key, line.indent, true).is_some();
                is_key.then(|| {
                    (
                        index,
                        find_key(line.text, key, line.indent, true).unwrap_or(0),
                    )
                })
            }),
        };
        let Some((line_index, at)) = hit else { break };
        let line = &lines[line_index];
        found = Some((line.start + at, key.len()));

        // Narrow to what lies under this key: the rest of its line when a value follows on
        // it, else the following lines indented deeper.
        let after_key = at + key.len() + 1;
        if line.text[after_key..].trim().is_empty() {
            let block_indent = line.indent;
            first = line_index + 1;
            end = (first..lines.len())
                .find(|&i| lines[i].indent <= block_indent)
                .unwrap_or(end);
            parent_indent = Some(block_indent);
            inline = None;
        } else {
            inline = Some((line_index, after_key));
        }
    }
    found
}

/// The 1-based line and column of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
# comment: not a key
model:
  file: models/lenet.coop
optimizer:
  lr: 0.1
  momentum: 0.9
phase1:
  epochs: 2
  schedule: {step: {every: 10, factor: 0.2}}
phase2:
  epochs: 8
  schedule:
    multistep:
      milestones: [3, 6]
      factor: 0.1
";

    fn text_at(path: &[&str]) -> Option<(String, (usize, usize))> {
        locate(SOURCE, path).map(|(start, len)| {
            (
                SOURCE[start..start + len].to_string(),
                line_column(SOURCE, start),
            )
        })
    }

    #[test]
    fn block_keys_are_found_under_their_parent() {
        assert_eq!(text_at(&["optimizer", "lr"]), Some(("lr".into(), (5, 3))));
        assert_eq!(
            text_at(&["phase2", "epochs"]),
            Some(("epochs".into(), (11, 3)))
        );
        let milestones = text_at(&["phase2", "schedule", "multistep", "milestones"]);
        assert_eq!(milestones, Some(("milestones".into(), (14, 7))));
    }

    #[test]
    fn flow_keys_are_found_on_their_parent_line() {
        let every = text_at(&["phase1", "schedule", "step", "every"]);
        assert_eq!(every, Some(("every".into(), (9, 21))));
        let factor = text_at(&["phase1", "schedule", "step", "factor"]).unwrap();
        assert_eq!(factor.1, (9, 32));
    }

    #[test]
    fn missing_keys_fall_back_to_the_deepest_parent_found() {
        assert_eq!(
            text_at(&["optimizer", "nesterov"]),
            Some(("optimizer".into(), (4, 1)))
        );
        assert_eq!(text_at(&["dataset", "path"]), None);
        // `epochs` exists, but not under `model`.
        assert_eq!(text_at(&["model", "epochs"]).unwrap().0, "model");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a\nbc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
    }
}
