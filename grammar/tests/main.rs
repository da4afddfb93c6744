//! Integration tests of the `grammar` crate, one binary: sample sources parse to the expected
//! AST, every syntax error renders a clear report, and no input makes the parser panic.

mod errors;
mod no_panic;
mod print;
mod samples;
mod sources;

/// `Debug` of an AST with every `Span { .. }` blanked, to compare trees up to spans.
pub fn without_spans(tree: &impl std::fmt::Debug) -> String {
    let text = format!("{tree:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        let tail = &rest[at..];
        rest = &tail[tail.find('}').map_or(tail.len(), |end| end + 1)..];
    }
    out.push_str(rest);
    out
}
