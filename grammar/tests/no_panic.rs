//! No input panics the parser: random bytes, token soups, and truncated, shortened and
//! lengthened copies of the sample sources all give `Ok` or a `ParseError` with a span inside
//! the source that renders, and never an internal error; whatever parses prints back as
//! source of the same tree.

use grammar::{parse, render_report, ParseError, SourceFile};
use proptest::prelude::*;

use crate::{sources, without_spans};

/// Parses `text`. On success, checks the printed tree reads back; on error, checks the error
/// is a user error whose span fits and renders.
fn parses_or_reports(text: &str) -> Result<(), TestCaseError> {
    let error = match parse(&SourceFile::new("fuzz.coop", text)) {
        Ok(file) => return prints_back(&file),
        Err(error) => error,
    };
    prop_assert!(
        !matches!(error, ParseError::Internal { .. }),
        "{}",
        render_report(&error)
    );
    if let Some(span) = error.span() {
        prop_assert!(
            span.start <= span.end && span.end as usize <= text.len(),
            "{span:?}"
        );
        prop_assert!(text.is_char_boundary(span.start as usize), "{span:?}");
        prop_assert!(text.is_char_boundary(span.end as usize), "{span:?}");
    }
    prop_assert!(!render_report(&error).is_empty());
    Ok(())
}

/// Whatever parses prints as source that parses back to the same tree.
fn prints_back(file: &grammar::ast::File) -> Result<(), TestCaseError> {
    let printed = file.to_string();
    match parse(&SourceFile::new("printed.coop", printed.as_str())) {
        Ok(reparsed) => prop_assert_eq!(without_spans(&reparsed), without_spans(file)),
        Err(error) => prop_assert!(false, "{printed}\n{}", render_report(&error)),
    }
    Ok(())
}

/// Tokens of the language, and some near misses, for building plausible soups.
const TOKENS: &[&str] = &[
    "model",
    "block",
    "input",
    "output",
    "repeat",
    "as",
    "true",
    "false",
    "x",
    "conv",
    "relu",
    "width",
    "_a1",
    "2fast",
    "0",
    "16",
    "-1",
    "0.5",
    "1e-5",
    "1e999",
    "99999999999999999999",
    "\"s\"",
    "\"\\q\"",
    "\"",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    "=",
    "|>",
    "+",
    "-",
    "*",
    "/",
    "#c\n",
    "/*",
    "*/",
    "/* c */",
    "\n",
    " ",
    "\t",
    "\r\n",
    "é",
    "$",
    "\0",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|tokens| tokens.join(" "))
}

fn sample() -> impl Strategy<Value = &'static str> {
    prop::sample::select(sources::ALL.map(|(_, text)| text).to_vec())
}

/// A byte offset of `text` moved back to a character boundary.
fn boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset % (text.len() + 1);
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[test]
fn every_truncation_of_every_sample_parses_or_reports() {
    for (_, text) in sources::ALL {
        for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
            if let Err(failure) = parses_or_reports(&text[..end]) {
                panic!("truncated at {end}: {failure}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_parse_or_report(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        parses_or_reports(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn token_soups_parse_or_report(soup in token_soup()) {
        parses_or_reports(&soup)?;
    }

    #[test]
    fn samples_with_a_deletion_parse_or_report(
        text in sample(), start in any::<usize>(), length in 0usize..40,
    ) {
        let start = boundary(text, start);
        let end = boundary(text, start.saturating_add(length).min(text.len()));
        let mutated = format!("{}{}", &text[..start], &text[end.max(start)..]);
        parses_or_reports(&mutated)?;
    }

    #[test]
    fn samples_with_inserted_tokens_parse_or_report(
        text in sample(),
        insertions in prop::collection::vec((any::<usize>(), prop::sample::select(TOKENS)), 1..4),
    ) {
        let mut mutated = text.to_string();
        for (at, token) in insertions {
            let at = boundary(&mutated, at);
            mutated.insert_str(at, token);
        }
        parses_or_reports(&mutated)?;
    }

    #[test]
    fn samples_with_swapped_lines_parse_or_report(
        text in sample(), a in any::<usize>(), b in any::<usize>(),
    ) {
        let mut lines: Vec<&str> = text.lines().collect();
        let (a, b) = (a % lines.len(), b % lines.len());
        lines.swap(a, b);
        parses_or_reports(&lines.join("\n"))?;
    }
}
