//! Byte ranges into a `.coop` source file.
//!
//! A `Span` is created by the parser from each pest pair and then travels unchanged through the
//! AST and every IR node, so that any later error can underline the user's own text.

/// A half-open byte range `start..end` of one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte of the range.
    pub start: u32,
    /// One past the last byte of the range.
    pub end: u32,
}

impl Span {
    /// The range `start..end`.
    pub fn new(start: u32, end: u32) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// Length in bytes.
    pub fn len(self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// True when the span covers no byte.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start as usize, span.len() as usize).into()
    }
}

/// One source file: its name as the user gave it and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path or `<stdin>`, as shown in reports.
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl SourceFile {
    /// A named source.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The text a span covers, or `None` when the span is not inside this file.
    pub fn text_at(&self, span: Span) -> Option<&str> {
        self.text.get(span.start as usize..span.end as usize)
    }

    /// 1-based line and column (in characters) of a byte offset; an offset past the end counts
    /// as the end, one inside a character as that character.
    pub fn line_column(&self, offset: u32) -> (u32, u32) {
        let mut offset = (offset as usize).min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() as u32 + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() as u32 + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let file = SourceFile::new("m.coop", "ab\ncd");
        assert_eq!(file.line_column(0), (1, 1));
        assert_eq!(file.line_column(4), (2, 2));
    }

    #[test]
    fn line_column_of_an_offset_inside_a_character_is_that_character() {
        let file = SourceFile::new("m.coop", "é\nx");
        assert_eq!(file.line_column(1), (1, 1));
        assert_eq!(file.line_column(99), (2, 2));
    }

    #[test]
    fn text_at_returns_the_covered_text_or_none() {
        let file = SourceFile::new("m.coop", "model m");
        assert_eq!(file.text_at(Span::new(6, 7)), Some("m"));
        assert_eq!(file.text_at(Span::new(6, 9)), None);
    }
}
