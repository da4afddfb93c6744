//! Every syntax error renders a report naming the file, line and column, underlining the
//! span and saying what was expected: one insta snapshot per case (`tests/snapshots/`).

use grammar::{parse, render_report, SourceFile, MAX_NESTING};

/// The rendered report for `source`, which must fail to parse.
fn report(name: &str, source: &str) -> String {
    match parse(&SourceFile::new(format!("{name}.coop"), source)) {
        Ok(file) => panic!("{name} parsed: {file:?}"),
        Err(error) => render_report(&error),
    }
}

/// A test snapshotting the report for a source that must fail.
macro_rules! error_snapshot {
    ($name:ident, $source:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(report(stringify!($name), &$source));
        }
    };
}

/// `lines` inside `model m() { input i: [1] ... }`.
fn in_model(lines: &str) -> String {
    format!("model m() {{\n    input i: [1]\n{lines}}}\n")
}

// ---- Lexical -------------------------------------------------------------------------------

error_snapshot!(
    unterminated_block_comment,
    in_model("    x = i /* never\n    closed\n")
);
error_snapshot!(
    unterminated_string,
    in_model("    x = i |> conv(8, init: \"kaiming)\n")
);
error_snapshot!(unknown_string_escape, "model m(init = \"a\\qb\") {\n}\n");
error_snapshot!(bad_token, in_model("    x = i |> relu $ 3\n"));
error_snapshot!(control_character, in_model("    x = i\u{7} |> relu\n"));

// ---- Brackets ------------------------------------------------------------------------------

error_snapshot!(
    missing_closing_paren,
    in_model("    x = i |> conv(20, kernel: 5\n")
);
error_snapshot!(
    missing_closing_brace,
    "model m() {\n    input i: [1]\n    x = i |> relu\n"
);
error_snapshot!(missing_body, "model m(classes = 10)\n");
error_snapshot!(
    unclosed_list,
    in_model("    y = i |> reshape([1, 28, 28)\n")
);
error_snapshot!(
    extra_closing_bracket,
    "model m() {\n    input i: [1, 28, 28]]\n}\n"
);
error_snapshot!(
    brackets_nested_too_deep,
    format!("block b(x) {{\n    {}x\n}}\n", "[\n".repeat(MAX_NESTING))
);
error_snapshot!(
    pipe_chain_too_long,
    format!(
        "block b(x) {{\n    x{}\n}}\n",
        "\n    |> relu".repeat(MAX_NESTING + 4)
    )
);

// ---- Statements and items ------------------------------------------------------------------

error_snapshot!(empty_file, "");
error_snapshot!(
    only_comments,
    "# a model would go here\n/* but there is none */\n"
);
error_snapshot!(statement_outside_any_item, "x = 3\nmodel m() {\n}\n");
error_snapshot!(missing_equals_in_assignment, in_model("    x i |> relu\n"));
error_snapshot!(two_statements_on_one_line, in_model("    x = i y = i\n"));
error_snapshot!(block_without_result, "block b(x) {\n    y = x |> relu\n}\n");
error_snapshot!(bare_expression_in_model, in_model("    relu(i)\n"));
error_snapshot!(input_in_block, "block b(x) {\n    input i: [1]\n    x\n}\n");
error_snapshot!(
    output_in_block,
    "block b(x) {\n    output y = x\n    x\n}\n"
);
error_snapshot!(
    expression_before_block_end,
    "block b(x) {\n    relu(x)\n    x\n}\n"
);
error_snapshot!(parameter_without_name, "model m(a, = 3) {\n}\n");
error_snapshot!(parameter_default_not_literal, "model m(a = b) {\n}\n");

// ---- Expressions ---------------------------------------------------------------------------

error_snapshot!(
    integer_too_large,
    "model m(n = 99999999999999999999) {\n}\n"
);
error_snapshot!(
    float_too_large,
    in_model("    x = i |> dropout(p: 1e999)\n")
);
error_snapshot!(
    named_argument_without_value,
    in_model("    x = i |> conv(20, kernel:)\n")
);
error_snapshot!(pipe_without_input, in_model("    x = |> relu\n"));
error_snapshot!(pipe_into_pipe, in_model("    x = i |> |> relu\n"));
error_snapshot!(pipe_at_end_of_statement, in_model("    x = i |>\n"));
error_snapshot!(
    repeat_without_count,
    "block b(x) {\n    x |> repeat basic(16)\n}\n"
);
error_snapshot!(label_without_name, in_model("    x = i |> conv(8) as\n"));

// ---- Names ---------------------------------------------------------------------------------

error_snapshot!(name_starting_with_digit, "model 2fast() {\n}\n");
error_snapshot!(
    digits_glued_to_letters_in_expression,
    in_model("    x = i |> conv(2fast)\n")
);
error_snapshot!(keyword_as_variable, in_model("    model = i\n"));
error_snapshot!(non_ascii_name, in_model("    café = i\n"));
