//! Turns pest's syntax errors into [`ParseError::Syntax`] reports in user words.
//!
//! pest reports the farthest position it reached, the rules it tried there and (with error
//! detail on) the literal tokens it tried. Rules become words through [`rules::describe`],
//! tokens are quoted, and what was found at the position is named the way a user sees it.

use pest::error::{Error, ErrorVariant, InputLocation};

use crate::error::{ParseError, Source};
use crate::rules::{self, Rule};
use crate::scan::{self, MAX_NESTING};
use crate::span::Span;

/// The longest token text quoted in a message.
const MAX_FOUND_CHARS: usize = 32;

/// The report for a pest error on `text`.
pub(crate) fn to_parse_error(text: &str, src: Source, error: &Error<Rule>) -> ParseError {
    let position = match error.location {
        InputLocation::Pos(position) => position,
        InputLocation::Span((start, _)) => start,
    };
    let (found, span) = found_at(text, position);
    match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let expected = expected_words(positives, error);
            let before = text.get(..span.start as usize).unwrap_or("");
            let hint = hint(before, &found, &expected);
            let unclosed = scan::unclosed_at(text, span.start as usize)
                .filter(|(_, closing)| expected.contains(&format!("`{closing}`")))
                .map(|(opening, _)| opening);
            ParseError::Syntax {
                src,
                span,
                expected,
                found,
                unclosed,
                hint,
            }
        }
        // pest's stack guard: brackets the scan let through still ran the parser out of stack.
        ErrorVariant::CustomError { message } if message.contains("stack limit") => {
            ParseError::NestingTooDeep {
                src,
                span,
                limit: MAX_NESTING,
            }
        }
        ErrorVariant::CustomError { message } => ParseError::Internal {
            src,
            span,
            detail: format!("pest: {message}"),
        },
    }
}

/// Words for what pest tried at the error position: named rules first, then literal tokens
/// that add something the rule words do not already say.
fn expected_words(positives: &[Rule], error: &Error<Rule>) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for rule in positives {
        if let Some(word) = rules::describe(*rule) {
            push_new(&mut words, word.to_string());
        }
    }
    let rule_words = words.clone();
    let says = |word: &str| rule_words.iter().any(|known| known == word);
    let says_value = says("an expression") || says("a default value (a literal)");

    // pest does not export its token type; its Display gives a literal token's text, `a..b`
    // for a character range and `BUILTIN_RULE` for NEWLINE and the like, which are skipped.
    let tokens = error
        .parse_attempts()
        .map(|attempts| attempts.expected_tokens());
    for token in tokens.unwrap_or_default() {
        let token = token.to_string();
        let redundant = match token.as_str() {
            // Whitespace, comment openers and the `_` a name may start with.
            "#" | "/*" | "_" => true,
            text if text.trim().is_empty() || is_range_or_builtin(text) => true,
            // What may continue a number.
            "." | "e" | "E" => true,
            // What a value may start with, a sign included.
            "\"" | "[" | "true" | "false" | "-" => says_value,
            "repeat" => says("an expression"),
            "(" => says("an expression") || says("an argument list `(...)`"),
            _ => false,
        };
        if !redundant {
            push_new(&mut words, token_word(&token));
        }
    }
    words
}

fn push_new(words: &mut Vec<String>, word: String) {
    if !words.contains(&word) {
        words.push(word);
    }
}

fn is_range_or_builtin(token: &str) -> bool {
    let chars: Vec<char> = token.chars().collect();
    token == "BUILTIN_RULE" || matches!(chars.as_slice(), [_, '.', '.', _])
}

/// A literal token as a message shows it.
fn token_word(token: &str) -> String {
    match token {
        ";" => "end of line".to_string(),
        "+" | "-" | "*" | "/" => "an operator".to_string(),
        _ => format!("`{token}`"),
    }
}

/// What stands at `position`, in words, and its span.
fn found_at(text: &str, position: usize) -> (String, Span) {
    let start = position.min(text.len());
    let rest = text.get(start..).unwrap_or("");
    let span = |length: usize| Span::new(start as u32, (start + length) as u32);
    let Some(first) = rest.chars().next() else {
        // A label past the last line would not show: point just after the last text instead.
        let end = text.trim_end().len() as u32;
        return ("end of file".to_string(), Span::new(end, end));
    };
    if first == '\n' || first == '\r' {
        return ("end of line".to_string(), span(first.len_utf8()));
    }
    let length = if is_word_char(first) {
        rest.char_indices()
            .take(MAX_FOUND_CHARS)
            .take_while(|&(_, c)| is_word_char(c))
            .map(|(offset, c)| offset + c.len_utf8())
            .last()
            .unwrap_or(first.len_utf8())
    } else if rest.starts_with("|>") {
        2
    } else {
        first.len_utf8()
    };
    let token = rest.get(..length).unwrap_or("");
    let word = if first.is_control() {
        format!("character {first:?}")
    } else {
        format!("`{token}`")
    };
    (word, span(length))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

const KEYWORDS: [&str; 8] = [
    "model", "block", "input", "output", "repeat", "as", "true", "false",
];

/// A hint for common mistakes, judged from the text `before` the error, what was found and
/// what was expected.
fn hint(before: &str, found: &str, expected: &[String]) -> Option<String> {
    let token = found.trim_matches('`');
    let wants = |word: &str| expected.iter().any(|known| known == word);
    let wants_name = expected.iter().any(|word| word.ends_with(" name"));
    let after = before.trim_end_matches([' ', '\t']).chars().last();
    let hint = if wants_name && KEYWORDS.contains(&token) {
        format!("`{token}` is a keyword and cannot be used as a name")
    } else if wants_name && token.starts_with(|c: char| c.is_ascii_digit()) {
        "names start with a letter or `_`".to_string()
    } else if token.starts_with(|c: char| !c.is_ascii() && c.is_alphabetic()) {
        "names use ASCII letters, digits and `_` only".to_string()
    } else if token == "|>" && wants("an expression") {
        "`|>` needs a value on its left and a call on its right".to_string()
    } else if after == Some(':') && wants("an expression") {
        "a named argument needs a value after `:`, as in `kernel: 3`".to_string()
    } else if wants("a default value (a literal)") {
        "a default is a literal: a number, a string, `true`, `false` or a list of them".to_string()
    } else if wants("an op or block name") {
        "`repeat` takes a count, then the call it repeats, as in `repeat 3 basic(16)`".to_string()
    } else if wants("`=`") && found != "end of line" && found != "end of file" {
        "an assignment reads `NAME = expression`".to_string()
    } else {
        return None;
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_names_words_punctuation_and_ends() {
        assert_eq!(found_at("a bc d", 2), ("`bc`".to_string(), Span::new(2, 4)));
        assert_eq!(found_at("a |> b", 2), ("`|>`".to_string(), Span::new(2, 4)));
        assert_eq!(found_at("a)", 1), ("`)`".to_string(), Span::new(1, 2)));
        assert_eq!(
            found_at("a\n", 1),
            ("end of line".to_string(), Span::new(1, 2))
        );
        assert_eq!(
            found_at("a", 1),
            ("end of file".to_string(), Span::new(1, 1))
        );
    }

    #[test]
    fn found_cuts_long_words() {
        let text = "x".repeat(100);
        let (word, span) = found_at(&text, 0);
        assert_eq!(span, Span::new(0, MAX_FOUND_CHARS as u32));
        assert_eq!(word.len(), MAX_FOUND_CHARS + 2);
    }

    #[test]
    fn keyword_used_as_name_gets_a_hint() {
        let expected = vec!["a variable name".to_string()];
        let hint = hint("", "`model`", &expected);
        assert_eq!(
            hint.as_deref(),
            Some("`model` is a keyword and cannot be used as a name")
        );
    }
}
