//! Parse errors of `.coop` sources, as miette diagnostics.
//!
//! Every variant holds the data of what went wrong (span, what was expected and found), plus
//! the source itself, so that a rendered report names the file, line and column and underlines
//! the text. The wording of each variant lives in its attributes here and nowhere else.

use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource};
use thiserror::Error;

use crate::span::Span;

/// The source as miette shows it: the file's name and text, shared so errors stay small.
pub type Source = Arc<NamedSource<String>>;

/// Why a `.coop` source could not be turned into an AST.
#[derive(Debug, Error, Diagnostic)]
pub enum ParseError {
    /// The text does not follow the grammar at `span`.
    #[error("unexpected {found}: expected {}", or_list(.expected))]
    #[diagnostic(code(parse::syntax))]
    Syntax {
        /// The file.
        #[source_code]
        src: Source,
        /// The unexpected token (empty at the end of the file).
        #[label(primary, "expected {} here", or_list(.expected))]
        span: Span,
        /// What would have been accepted, in user words (e.g. "an expression", "`)`").
        expected: Vec<String>,
        /// What was there instead, in user words (e.g. "`:`", "end of line").
        found: String,
        /// The bracket still open at the error, when the expected words include its closer.
        #[label("opened here and not closed")]
        unclosed: Option<Span>,
        /// A hint for a common mistake, when one applies.
        #[help]
        hint: Option<String>,
    },

    /// A `/*` comment that is never closed.
    #[error("unterminated block comment")]
    #[diagnostic(code(parse::unterminated_comment), help("close the comment with `*/`"))]
    UnterminatedComment {
        /// The file.
        #[source_code]
        src: Source,
        /// The `/*` that opens it.
        #[label("this comment is never closed")]
        span: Span,
    },

    /// A string literal with no closing quote on its line.
    #[error("unterminated string literal")]
    #[diagnostic(
        code(parse::unterminated_string),
        help("close the string with `\"` on the same line; strings cannot span lines")
    )]
    UnterminatedString {
        /// The file.
        #[source_code]
        src: Source,
        /// From the opening quote to the end of the line.
        #[label("this string is never closed")]
        span: Span,
    },

    /// A backslash escape other than `\"`, `\\`, `\n`, `\t`.
    #[error("unknown escape `{escape}` in string")]
    #[diagnostic(
        code(parse::invalid_escape),
        help("the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`")
    )]
    InvalidEscape {
        /// The file.
        #[source_code]
        src: Source,
        /// The escape.
        #[label("unknown escape")]
        span: Span,
        /// Its text, backslash included.
        escape: String,
    },

    /// Brackets or an expression nested deeper than the parser accepts.
    #[error("nesting too deep: more than {limit} levels")]
    #[diagnostic(
        code(parse::nesting_too_deep),
        help("split the expression into assignments to named variables")
    )]
    NestingTooDeep {
        /// The file.
        #[source_code]
        src: Source,
        /// Where the excess level starts.
        #[label("nesting exceeds {limit} levels here")]
        span: Span,
        /// The limit.
        limit: usize,
    },

    /// A number literal that does not fit its type.
    #[error("number `{text}` is too large")]
    #[diagnostic(
        code(parse::number_too_large),
        help("integers must fit in 64 bits and floats must be finite")
    )]
    NumberTooLarge {
        /// The file.
        #[source_code]
        src: Source,
        /// The literal.
        #[label("out of range")]
        span: Span,
        /// Its text.
        text: String,
    },

    /// Digits glued to letters, as in `2fast`: neither a number nor a name.
    #[error("`{text}` is neither a number nor a name")]
    #[diagnostic(
        code(parse::invalid_name),
        help("names start with a letter or `_`, followed by letters, digits or `_`")
    )]
    InvalidName {
        /// The file.
        #[source_code]
        src: Source,
        /// The token.
        #[label("not a valid name")]
        span: Span,
        /// Its text.
        text: String,
    },

    /// A file with no `model` or `block`.
    #[error("no model or block in this file")]
    #[diagnostic(
        code(parse::no_items),
        help("a .coop file defines at least one `model NAME(...) {{ ... }}`")
    )]
    NoItems {
        /// The file.
        #[source_code]
        src: Source,
        /// The end of the file.
        #[label("the file ends here")]
        span: Span,
    },

    /// A statement that has no place in the body it is in.
    #[error("{statement} is not allowed in a {item}")]
    #[diagnostic(code(parse::misplaced_statement))]
    MisplacedStatement {
        /// The file.
        #[source_code]
        src: Source,
        /// The statement.
        #[label("not allowed here")]
        span: Span,
        /// What it is, e.g. "an `input` statement".
        statement: &'static str,
        /// "model" or "block".
        item: &'static str,
        /// What to write instead.
        #[help]
        hint: &'static str,
    },

    /// A block whose body does not end with the expression it returns.
    #[error("block `{block}` does not end with a result expression")]
    #[diagnostic(
        code(parse::missing_block_result),
        help("end the block with a bare expression, e.g. `relu(y + x)`: its value is the result")
    )]
    MissingBlockResult {
        /// The file.
        #[source_code]
        src: Source,
        /// The block's closing brace.
        #[label("expected a result expression before this")]
        span: Span,
        /// Its name.
        block: String,
    },

    /// The parse tree had a shape this parser does not expect: a bug in coopc.
    #[error("internal parser error: {detail}")]
    #[diagnostic(
        code(parse::internal),
        help("this is a bug in coopc; please report it together with this input")
    )]
    Internal {
        /// The file.
        #[source_code]
        src: Source,
        /// Where the surprise happened.
        #[label("while parsing this")]
        span: Span,
        /// What was surprising.
        detail: String,
    },

    /// A source longer than spans can address.
    #[error("source file `{name}` is too large ({bytes} bytes; at most {limit})")]
    #[diagnostic(code(parse::file_too_large))]
    FileTooLarge {
        /// The file's name.
        name: String,
        /// Its size.
        bytes: usize,
        /// The largest size accepted.
        limit: usize,
    },
}

impl ParseError {
    /// The primary span of the error, or `None` for an error about the whole file.
    pub fn span(&self) -> Option<Span> {
        match self {
            ParseError::Syntax { span, .. }
            | ParseError::UnterminatedComment { span, .. }
            | ParseError::UnterminatedString { span, .. }
            | ParseError::InvalidEscape { span, .. }
            | ParseError::NestingTooDeep { span, .. }
            | ParseError::NumberTooLarge { span, .. }
            | ParseError::InvalidName { span, .. }
            | ParseError::NoItems { span, .. }
            | ParseError::MisplacedStatement { span, .. }
            | ParseError::MissingBlockResult { span, .. }
            | ParseError::Internal { span, .. } => Some(*span),
            ParseError::FileTooLarge { .. } => None,
        }
    }
}

/// "a", "a or b", "a, b or c".
fn or_list(words: &[String]) -> String {
    match words {
        [] => "something else".to_string(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Renders any diagnostic as miette's graphical report, without colour, 100 columns wide.
///
/// This is the form error snapshots store: it shows the file name, line and column, the
/// underlined span with its label, and the help, so one snapshot checks wording and place.
pub fn render_report(diagnostic: &dyn Diagnostic) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    match handler.render_report(&mut out, diagnostic) {
        Ok(()) => out,
        // Writing into a String cannot fail; keep the message if miette ever does.
        Err(_) => diagnostic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_list_joins_the_last_word_with_or() {
        let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(or_list(&words(&["a"])), "a");
        assert_eq!(or_list(&words(&["a", "b"])), "a or b");
        assert_eq!(or_list(&words(&["a", "b", "c"])), "a, b or c");
    }

    #[test]
    fn parse_error_stays_small() {
        // Results carrying it travel up the recursive parser; keep them cheap to move.
        assert!(
            std::mem::size_of::<ParseError>() <= 112,
            "{}",
            std::mem::size_of::<ParseError>()
        );
    }

    #[test]
    fn render_report_shows_file_line_column_and_label() {
        let error = ParseError::UnterminatedComment {
            src: Arc::new(NamedSource::new("m.coop", "x\n/* y".to_string())),
            span: Span::new(2, 4),
        };
        let report = render_report(&error);
        assert!(report.contains("[m.coop:2:1]"), "{report}");
        assert!(report.contains("this comment is never closed"), "{report}");
    }
}
