//! A small writer for MLIR function text: fresh SSA names, indentation, hoisted constants and
//! `loc(...)` suffixes.
//!
//! Invariant: every constant is defined once, at the top of the function body, so it dominates
//! every use, including uses inside `linalg.generic` and `scf` regions.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The text of one function body under construction.
#[derive(Debug, Default)]
pub struct FunctionWriter {
    constants: BTreeMap<String, String>,
    constant_lines: Vec<String>,
    body: String,
    indent: usize,
    next_name: usize,
    location: String,
}

impl FunctionWriter {
    /// An empty body, indented one level inside `func.func`.
    pub fn new() -> Self {
        FunctionWriter {
            indent: 2,
            ..FunctionWriter::default()
        }
    }

    /// Sets the location appended to the ops written from now on (`loc(...)` text or empty).
    pub fn set_location(&mut self, location: String) {
        self.location = location;
    }

    /// The location currently appended.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A fresh SSA name `%<hint><n>`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next_name += 1;
        format!("%{hint}{}", self.next_name)
    }

    /// Writes one op line (with the current location).
    pub fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.body.push_str("  ");
        }
        self.body.push_str(text);
        if !self.location.is_empty() && !text.ends_with('{') && !text.starts_with('}') {
            self.body.push(' ');
            self.body.push_str(&self.location);
        }
        self.body.push('\n');
    }

    /// Writes a block label line (`^bb0(...):`), which takes no location.
    pub fn label(&mut self, text: &str) {
        for _ in 0..self.indent.saturating_sub(1) {
            self.body.push_str("  ");
        }
        self.body.push_str(text);
        self.body.push('\n');
    }

    /// Ends one region and starts the next of the same op (`} else {`).
    pub fn reopen(&mut self, text: &str) {
        self.indent = self.indent.saturating_sub(1);
        for _ in 0..self.indent {
            self.body.push_str("  ");
        }
        self.body.push_str(text);
        self.body.push('\n');
        self.indent += 1;
    }

    /// Writes `%v = <rhs>` and returns `%v`.
    pub fn assign(&mut self, hint: &str, rhs: &str) -> String {
        let name = self.fresh(hint);
        self.line(&format!("{name} = {rhs}"));
        name
    }

    /// Opens a region: writes `text` (ending in `{`) and indents.
    pub fn open(&mut self, text: &str) {
        self.line(text);
        self.indent += 1;
    }

    /// Closes a region with `text` (starting with `}`), with the current location after it.
    pub fn close(&mut self, text: &str) {
        self.indent = self.indent.saturating_sub(1);
        for _ in 0..self.indent {
            self.body.push_str("  ");
        }
        self.body.push_str(text);
        if !self.location.is_empty() {
            self.body.push(' ');
            self.body.push_str(&self.location);
        }
        self.body.push('\n');
    }

    /// An `f32` constant.
    pub fn f32(&mut self, value: f32) -> String {
        self.constant(&f32_literal(value), "f32")
    }

    /// An `index` constant.
    pub fn index(&mut self, value: usize) -> String {
        self.constant(&value.to_string(), "index")
    }

    /// An `i32` constant.
    pub fn i32(&mut self, value: i64) -> String {
        self.constant(&value.to_string(), "i32")
    }

    /// An `i64` constant (the bits of `value`, written as a signed number).
    pub fn i64(&mut self, value: u64) -> String {
        self.constant(&(value as i64).to_string(), "i64")
    }

    fn constant(&mut self, literal: &str, ty: &str) -> String {
        let key = format!("{literal} : {ty}");
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        self.next_name += 1;
        let name = format!("%c{}", self.next_name);
        self.constant_lines
            .push(format!("    {name} = arith.constant {key}"));
        self.constants.insert(key, name.clone());
        name
    }

    /// The finished body: constants first, then the ops, then `return`.
    pub fn finish(mut self) -> String {
        self.line("return");
        let mut text = String::new();
        for line in &self.constant_lines {
            let _ = writeln!(text, "{line}");
        }
        text.push_str(&self.body);
        text
    }
}

/// An exact MLIR literal for an `f32`: decimal when the shortest round-tripping form has a
/// mantissa MLIR accepts, hexadecimal bits otherwise (infinities, NaN).
pub fn f32_literal(value: f32) -> String {
    if !value.is_finite() {
        return format!("0x{:08X}", value.to_bits());
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}e{exponent}")
}

/// A `loc("file":line:column)` suffix; the file name is escaped as an MLIR string.
pub fn location_text(file: &str, line: u32, column: u32) -> String {
    let mut escaped = String::with_capacity(file.len());
    for character in file.chars() {
        match character {
            '"' => escaped.push_str("\\22"),
            '(' => escaped.push_str("\\28"),
            ')' => escaped.push_str("\\29"),
            '\\' => escaped.push_str("\\5C"),
            c if c.is_control() => {
                let mut buffer = [0u8; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    let _ = write!(escaped, "\\{byte:02X}");
                }
            }
            c => escaped.push(c),
        }
    }
    format!("loc(\"{escaped}\":{line}:{column})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_literals_round_trip_and_always_have_a_point() {
        assert_eq!(f32_literal(1.0), "1.0e0");
        assert_eq!(f32_literal(1e-5), "1.0e-5");
        assert_eq!(f32_literal(0.25), "2.5e-1");
        assert_eq!(f32_literal(-0.0), "-0.0e0");
        assert_eq!(f32_literal(f32::NEG_INFINITY), "0xFF800000");
        let tricky = 0.1f32 + 0.2f32;
        let text = f32_literal(tricky);
        assert_eq!(text.parse::<f32>().ok(), Some(tricky));
    }

    #[test]
    fn constants_are_hoisted_and_shared() {
        let mut writer = FunctionWriter::new();
        writer.set_location(location_text("a \"b\".coop", 3, 7));
        let one = writer.f32(1.0);
        let again = writer.f32(1.0);
        assert_eq!(one, again);
        writer.assign("v", &format!("arith.addf {one}, {one} : f32"));
        let text = writer.finish();
        assert!(
            text.starts_with(&format!("    {one} = arith.constant 1.0e0 : f32\n")),
            "{text}"
        );
        assert!(text.contains("loc(\"a \\22b\\22.coop\":3:7)"), "{text}");
    }
}
