//! Printing round-trips: random expression trees, printed inside a block, parse back to the
//! same tree (up to spans), so the printer's parentheses and bare calls match the grammar.

use grammar::ast::{Arg, BinaryOp, Block, Call, Expr, ExprKind, File, Ident, Item, Stmt};
use grammar::{parse, render_report, SourceFile, Span};
use proptest::prelude::*;

use crate::without_spans;

fn ident(name: String) -> Ident {
    Ident {
        name,
        span: Span::default(),
    }
}

fn expr(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "x", "conv", "relu", "width", "_n2", "inputs", "asx", "true_",
    ])
    .prop_map(str::to_string)
}

fn leaf() -> impl Strategy<Value = Expr> {
    let float = prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO;
    prop_oneof![
        name().prop_map(ExprKind::Ident),
        any::<i64>().prop_map(ExprKind::Int),
        float.prop_map(ExprKind::Float),
        any::<bool>().prop_map(ExprKind::Bool),
        "[^\r]{0,6}".prop_map(ExprKind::Str),
    ]
    .prop_map(expr)
}

fn call(inner: impl Strategy<Value = Expr> + Clone) -> impl Strategy<Value = Call> {
    let arg = (prop::option::of(name()), inner).prop_map(|(name, value)| Arg {
        name: name.map(ident),
        value,
        span: Span::default(),
    });
    (name(), prop::collection::vec(arg, 0..3)).prop_map(|(callee, args)| Call {
        callee: ident(callee),
        args,
        span: Span::default(),
    })
}

/// A call or a repeat, optionally labelled: what may follow `|>`.
fn stage(inner: impl Strategy<Value = Expr> + Clone + 'static) -> BoxedStrategy<Expr> {
    let repeat = (inner.clone(), call(inner.clone())).prop_map(|(count, call)| {
        expr(ExprKind::Repeat {
            count: Box::new(count),
            call,
        })
    });
    let unlabeled = prop_oneof![
        call(inner).prop_map(|call| expr(ExprKind::Call(call))),
        repeat
    ];
    (unlabeled, prop::option::of(name()))
        .prop_map(|(stage, label)| match label {
            Some(label) => expr(ExprKind::Labeled {
                expr: Box::new(stage),
                label: ident(label),
            }),
            None => stage,
        })
        .boxed()
}

fn tree() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 48, 3, |inner| {
        let op = prop::sample::select(vec![
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| expr(ExprKind::List(items))),
            stage(inner.clone()),
            (inner.clone(), stage(inner.clone())).prop_map(|(input, stage)| {
                expr(ExprKind::Pipe {
                    input: Box::new(input),
                    stage: Box::new(stage),
                })
            }),
            (op, inner.clone(), inner).prop_map(|(op, lhs, rhs)| {
                expr(ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                })
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_expressions_parse_back_to_the_same_tree(result in tree()) {
        let block = Block {
            name: ident("b".to_string()),
            params: Vec::new(),
            body: vec![Stmt::Expr(result)],
            span: Span::default(),
        };
        let file = File { items: vec![Item::Block(block)], span: Span::default() };
        let printed = file.to_string();
        match parse(&SourceFile::new("printed.coop", printed.as_str())) {
            Ok(reparsed) => prop_assert_eq!(without_spans(&reparsed), without_spans(&file)),
            Err(error) => prop_assert!(false, "{printed}\n{}", render_report(&error)),
        }
    }
}
