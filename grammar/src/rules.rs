//! The pest parser generated from `coop.pest`, and the user words for its rules.
//!
//! This module is private: `Rule` and pest's pair types stay inside the crate. Invariant:
//! [`describe`] has an arm for every rule, so a rule added to the grammar does not compile
//! until someone says how errors should name it.

/// The parser pest derives from the grammar file.
#[derive(pest_derive::Parser)]
#[grammar = "coop.pest"]
pub(crate) struct CoopParser;

/// How an error message names a rule the parser expected, or `None` for a rule users never
/// need to hear about (it only appears inside a rule that is named).
pub(crate) fn describe(rule: Rule) -> Option<&'static str> {
    let word = match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::string_text | Rule::bad_name => return None,
        Rule::sep | Rule::nl => "end of line",
        Rule::WHITESPACE | Rule::COMMENT | Rule::line_comment | Rule::block_comment => return None,
        Rule::ident_char | Rule::keyword | Rule::name => "a name",
        Rule::model_name => "a model name",
        Rule::block_name => "a block name",
        Rule::param_name => "a parameter name",
        Rule::var_name => "a variable name",
        Rule::input_name => "an input name",
        Rule::output_name => "an output name",
        Rule::callee => "an op or block name",
        Rule::arg_name => "an argument name",
        Rule::label_name => "a label name",
        Rule::kw_model | Rule::model => "`model`",
        Rule::kw_block | Rule::block => "`block`",
        Rule::kw_input | Rule::input_stmt => "`input`",
        Rule::kw_output | Rule::output_stmt => "`output`",
        Rule::kw_repeat | Rule::repeat | Rule::repeat_expr => "`repeat`",
        Rule::kw_as | Rule::label => "`as`",
        Rule::item => "`model` or `block`",
        Rule::digits | Rule::exponent | Rule::float | Rule::int => "a number",
        Rule::bool => "`true` or `false`",
        Rule::string => "a string",
        Rule::literal | Rule::literal_expr => "a literal",
        Rule::literal_list => "a list of literals",
        Rule::params => "a parameter list `(...)`",
        Rule::param => "a parameter",
        Rule::default => "a default value (a literal)",
        Rule::body => "`{`",
        Rule::stmt => "a statement",
        Rule::assign_stmt => "an assignment",
        Rule::expr_stmt | Rule::expr | Rule::sum | Rule::product | Rule::primary => "an expression",
        Rule::shape => "a shape `[...]`",
        Rule::pipe => "`|>`",
        Rule::stage | Rule::call | Rule::applied => "a call",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::list => "a list",
        Rule::paren => "`(`",
        Rule::var => "a variable",
        Rule::count => "a repeat count",
        Rule::args => "an argument list `(...)`",
        Rule::arg => "an argument",
        Rule::value => "the argument's value",
    };
    Some(word)
}
