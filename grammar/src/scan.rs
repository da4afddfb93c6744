//! Checks made on the raw text before the pest grammar runs.
//!
//! pest cannot say "this comment never ends": a block comment without `*/` simply fails to
//! match, and the error lands somewhere unhelpful. So this pass walks the text once, with the
//! same lexical rules as `coop.pest` (line comments, block comments, single-line strings with
//! backslash escapes), and reports unterminated comments and strings, and brackets nested
//! deeper than [`MAX_NESTING`] (which would otherwise exhaust the parser's stack). Invariant:
//! a text that passes here has only closed comments and strings, so the grammar may assume it.

use crate::span::Span;

/// The deepest nesting of `(`, `[` and `{` accepted, and the deepest expression tree the
/// parser builds; anything deeper is reported as `ParseError::NestingTooDeep`.
pub const MAX_NESTING: usize = 256;

/// The largest source accepted: spans are `u32` byte offsets.
pub const MAX_SOURCE_BYTES: usize = u32::MAX as usize;

/// What the scan found wrong, with where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `/*` with no matching `*/`; the span covers the `/*`.
    UnterminatedComment(Span),
    /// `"` with no closing quote on the same line; the span runs to the end of the line.
    UnterminatedString(Span),
    /// The bracket that opened nesting level `MAX_NESTING + 1`.
    TooDeep(Span),
    /// The source is longer than [`MAX_SOURCE_BYTES`].
    TooLarge,
}

/// Scans `text`, returning the first problem found.
pub fn check(text: &str) -> Result<(), Problem> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(Problem::TooLarge);
    }
    let mut depth = 0usize;
    walk(text, |at, bracket| {
        if is_opening(bracket) {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(Problem::TooDeep(span(at, at + 1)));
            }
        } else {
            depth = depth.saturating_sub(1);
        }
        Ok(())
    })
}

/// The innermost bracket open at `position` if it is never closed anywhere in `text`, with
/// the closing bracket it needs; `None` otherwise (or when `text` does not scan).
///
/// Brackets pair up as a reader would pair them: a closer that does not match the innermost
/// open bracket closes the nearest enclosing one it matches, leaving those inside it unclosed;
/// a closer that matches none is ignored.
pub fn unclosed_at(text: &str, position: usize) -> Option<(Span, char)> {
    let brackets = pair_brackets(text)?;
    let innermost = brackets
        .into_iter()
        .filter(|pair| pair.open < position && pair.end.is_none_or(|end| end >= position))
        .max_by_key(|pair| pair.open)?;
    if innermost.closed {
        return None;
    }
    Some((
        span(innermost.open, innermost.open + 1),
        closing_of(innermost.bracket),
    ))
}

/// An opening bracket and where its scope ends.
struct BracketPair {
    open: usize,
    /// Its closer, or the closer of an enclosing bracket that ended it; `None` at end of text.
    end: Option<usize>,
    /// Whether `end` is its own matching closer.
    closed: bool,
    bracket: u8,
}

/// Every opening bracket of `text`, paired with its closer as described on [`unclosed_at`].
fn pair_brackets(text: &str) -> Option<Vec<BracketPair>> {
    let mut pairs: Vec<BracketPair> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let walked = walk(text, |at, bracket| {
        if is_opening(bracket) {
            open.push(pairs.len());
            pairs.push(BracketPair {
                open: at,
                end: None,
                closed: false,
                bracket,
            });
            return Ok(());
        }
        let wanted = bracket as char;
        let matching = open
            .iter()
            .rposition(|&index| closing_of(pairs[index].bracket) == wanted);
        if let Some(depth) = matching {
            for &index in &open[depth..] {
                pairs[index].end = Some(at);
            }
            pairs[open[depth]].closed = true;
            open.truncate(depth);
        }
        Ok(())
    });
    walked.ok().map(|()| pairs)
}

fn closing_of(bracket: u8) -> char {
    match bracket {
        b'(' => ')',
        b'[' => ']',
        _ => '}',
    }
}

fn is_opening(bracket: u8) -> bool {
    matches!(bracket, b'(' | b'[' | b'{')
}

/// Walks `text` with the lexical rules of the grammar, calling `on_bracket` with the offset and
/// byte of every bracket outside comments and strings.
fn walk(
    text: &str,
    mut on_bracket: impl FnMut(usize, u8) -> Result<(), Problem>,
) -> Result<(), Problem> {
    let bytes = text.as_bytes();
    let mut at = 0usize;
    while at < bytes.len() {
        at = match bytes[at] {
            b'#' => skip_line(bytes, at),
            b'/' if bytes.get(at + 1) == Some(&b'*') => skip_block_comment(bytes, at)?,
            b'"' => skip_string(bytes, at)?,
            bracket @ (b'(' | b'[' | b'{' | b')' | b']' | b'}') => {
                on_bracket(at, bracket)?;
                at + 1
            }
            _ => at + 1,
        };
    }
    Ok(())
}

fn span(start: usize, end: usize) -> Span {
    // `check` refused sources longer than u32::MAX, so offsets fit.
    Span::new(start as u32, end as u32)
}

/// Offset of the newline ending the line comment at `at` (or of the end of text).
fn skip_line(bytes: &[u8], at: usize) -> usize {
    line_end(bytes, at)
}

fn line_end(bytes: &[u8], at: usize) -> usize {
    bytes[at..]
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')
        .map_or(bytes.len(), |offset| at + offset)
}

/// Offset just past the `*/` closing the block comment that opens at `at`.
fn skip_block_comment(bytes: &[u8], at: usize) -> Result<usize, Problem> {
    bytes[at + 2..]
        .windows(2)
        .position(|pair| pair == b"*/")
        .map(|offset| at + 2 + offset + 2)
        .ok_or(Problem::UnterminatedComment(span(at, at + 2)))
}

/// Offset just past the quote closing the string that opens at `at`.
fn skip_string(bytes: &[u8], at: usize) -> Result<usize, Problem> {
    let mut index = at + 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => return Ok(index + 1),
            b'\n' | b'\r' => break,
            // An escape never ends the string, but a line break after `\` still does.
            b'\\' if !matches!(bytes.get(index + 1), Some(b'\n' | b'\r')) => index += 2,
            _ => index += 1,
        }
    }
    let end = index.min(bytes.len());
    Err(Problem::UnterminatedString(span(at, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_comments_and_strings_pass() {
        let text = "# \"x\n/* \" ( */ \"/* # \\\" \" [ ]";
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn unterminated_block_comment_points_at_its_opening() {
        assert_eq!(
            check("a /* b"),
            Err(Problem::UnterminatedComment(Span::new(2, 4)))
        );
    }

    #[test]
    fn block_comment_opening_inside_a_string_is_text() {
        assert_eq!(check("\"/*\""), Ok(()));
    }

    #[test]
    fn string_ends_at_the_line_break() {
        assert_eq!(
            check("x \"ab\ncd\""),
            Err(Problem::UnterminatedString(Span::new(2, 5)))
        );
        assert_eq!(
            check("\"ab\\"),
            Err(Problem::UnterminatedString(Span::new(0, 4)))
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_at_the_first_excess_bracket() {
        let ok = "(".repeat(MAX_NESTING) + &")".repeat(MAX_NESTING);
        assert_eq!(check(&ok), Ok(()));
        let deep = "[".repeat(MAX_NESTING + 1);
        let at = MAX_NESTING as u32;
        assert_eq!(check(&deep), Err(Problem::TooDeep(Span::new(at, at + 1))));
    }

    #[test]
    fn unclosed_at_finds_the_innermost_bracket_never_closed() {
        let text = "{ f(a, [1]) g(b \"(\" # (\n";
        assert_eq!(
            unclosed_at(text, text.len()),
            Some((Span::new(13, 14), ')'))
        );
        assert_eq!(unclosed_at(text, 2), Some((Span::new(0, 1), '}')));
        assert_eq!(unclosed_at("()", 2), None);
    }

    #[test]
    fn a_closed_bracket_is_not_reported_even_with_an_error_inside() {
        assert_eq!(unclosed_at("{ x y }", 4), None);
    }

    #[test]
    fn a_mismatched_closer_leaves_the_inner_bracket_unclosed() {
        // `[` is closed by nothing: `)` belongs to the `(` before it.
        let text = "{ f([1, 2) }";
        assert_eq!(unclosed_at(text, 9), Some((Span::new(4, 5), ']')));
        assert_eq!(unclosed_at(text, 11), None);
    }

    #[test]
    fn brackets_in_comments_and_strings_do_not_count() {
        let text = format!("# {}\n\"{}\"", "(".repeat(300), "[".repeat(300));
        assert_eq!(check(&text), Ok(()));
    }
}
