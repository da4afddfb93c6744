//! No input panics the compiler: truncated and mutated copies of every model go through
//! parse, build and both passes (and the printer and summary when they compile), and each
//! either compiles or gives a report that renders.

use std::panic::{catch_unwind, AssertUnwindSafe};

use compiler::ir::print::print_graph;
use compiler::pipeline::{compile_source, CompileOptions};
use compiler::summary::summarize;
use grammar::SourceFile;

use crate::support::{model_paths, source};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// Fragments that often break or bend the language.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "|>",
    "+",
    "-",
    "*",
    "/",
    "=",
    "\n",
    "\"",
    "/*",
    "#",
    "0",
    "-1",
    "-7",
    "999999999999",
    "9223372036854775807",
    "1e999",
    "0.5",
    "as",
    "repeat",
    "repeat 100000",
    "x",
    "conv",
    "relu",
    "shortcut",
    "block",
    "model",
    "input",
    "output",
    "true",
    "é",
    "\\",
    "as stage1",
    "basic(x)",
];

/// One mutation of `text`: delete, duplicate or replace a range, or insert a fragment.
fn mutate(text: &[u8], generator: &mut Generator) -> Vec<u8> {
    let mut bytes = text.to_vec();
    let at = generator.below(bytes.len());
    let length = 1 + generator.below(12);
    let end = (at + length).min(bytes.len());
    match generator.below(4) {
        0 => {
            bytes.drain(at..end);
        }
        1 => {
            let copy: Vec<u8> = bytes[at..end].to_vec();
            bytes.splice(at..at, copy);
        }
        2 => {
            let fragment = FRAGMENTS[generator.below(FRAGMENTS.len())].as_bytes();
            bytes.splice(at..end, fragment.iter().copied());
        }
        _ => {
            let fragment = FRAGMENTS[generator.below(FRAGMENTS.len())].as_bytes();
            bytes.splice(at..at, fragment.iter().copied());
        }
    }
    bytes
}

/// Compiles `text` and renders whatever comes out; panics only if the compiler does.
fn run(name: &str, text: String) {
    let source = SourceFile::new(name, text);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let options = CompileOptions {
            verify_each: true,
            ..CompileOptions::default()
        };
        match compile_source(&source, &options) {
            Ok(compiled) => {
                let printed = print_graph(&compiled.coop);
                let summary = summarize(&compiled).to_string();
                assert!(!printed.is_empty() && !summary.is_empty());
            }
            Err(error) => {
                assert!(!error.is_internal(), "internal error:\n{}", error.render());
                assert!(!error.render().is_empty());
            }
        }
    }));
    if let Err(panic) = outcome {
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        panic!(
            "the compiler panicked on this input ({message}):\n{}",
            source.text
        );
    }
}

#[test]
fn truncated_models_never_panic() {
    for path in model_paths() {
        let source = source(&path);
        let bytes = source.text.as_bytes();
        let step = (bytes.len() / 60).max(1);
        for end in (0..bytes.len()).step_by(step) {
            run(
                &source.name,
                String::from_utf8_lossy(&bytes[..end]).into_owned(),
            );
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let mut generator = Generator(0x9E37_79B9_7F4A_7C15);
    for path in model_paths() {
        let source = source(&path);
        let mut text = source.text.as_bytes().to_vec();
        for round in 0..120 {
            // Mostly single mutations of the original; every fourth round piles one more on.
            if round % 4 != 0 {
                text = source.text.as_bytes().to_vec();
            }
            text = mutate(&text, &mut generator);
            run(&source.name, String::from_utf8_lossy(&text).into_owned());
        }
    }
}

#[test]
fn random_bytes_and_huge_sizes_never_panic() {
    let mut generator = Generator(42);
    for _ in 0..200 {
        let length = generator.below(80);
        let bytes: Vec<u8> = (0..length)
            .map(|_| (generator.next() % 128) as u8)
            .collect();
        run("random.coop", String::from_utf8_lossy(&bytes).into_owned());
    }
    let huge = [
        "model m { input i: [16777216, 16777216, 16777216]\n output o = i |> flatten }",
        "model m { input i: [3, 8, 8]\n output o = i |> conv(16777216, kernel: 1) \
         |> conv(16777216, kernel: 1) }",
        "block b(x) { x }\nmodel m { input i: [3, 8, 8]\n output o = i |> repeat 16777216 b }",
        "block b(x) { x |> repeat 1000 c }\nblock c(x) { x |> repeat 1000 d }\n\
         block d(x) { x }\nmodel m { input i: [3, 8, 8]\n output o = i |> repeat 1000 b }",
        "model m { input i: [3, 8, 8]\n output o = i |> repeat 1000000 relu }",
        "model m(n = 9223372036854775807) { input i: [n * 2]\n output o = i }",
    ];
    for text in huge {
        run("huge.coop", text.to_string());
    }
}
