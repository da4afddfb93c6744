//! The sample sources parse, and their AST has the expected structure and spans.

use grammar::ast::{ExprKind, Item, Stmt};
use grammar::{parse, render_report, SourceFile};

use crate::sources;

#[test]
fn scratch_print() {
    for (name, text) in sources::ALL {
        match parse(&SourceFile::new(name, text)) {
            Ok(file) => println!("{name}: {} items", file.items.len()),
            Err(error) => println!("{}", render_report(&error)),
        }
    }
}
