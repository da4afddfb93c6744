//! The sample sources parse, and their AST has the expected structure and spans.

use grammar::ast::{Arg, BinaryOp, Block, Call, Expr, ExprKind, File, Item, Model, Param, Stmt};
use grammar::{parse, SourceFile, Span, MAX_NESTING};

use crate::{sources, without_spans};

fn parse_ok(name: &str, text: &str) -> File {
    match parse(&SourceFile::new(name, text)) {
        Ok(file) => file,
        Err(error) => panic!("{name} did not parse:\n{}", grammar::render_report(&error)),
    }
}

fn text(source: &str, span: Span) -> &str {
    &source[span.start as usize..span.end as usize]
}

fn model(file: &File, index: usize) -> &Model {
    match &file.items[index] {
        Item::Model(model) => model,
        Item::Block(block) => panic!("item {index} is block {}", block.name.name),
    }
}

fn block(file: &File, index: usize) -> &Block {
    match &file.items[index] {
        Item::Block(block) => block,
        Item::Model(model) => panic!("item {index} is model {}", model.name.name),
    }
}

/// The value of `NAME = value` at `index` in `body`.
fn assigned(body: &[Stmt], index: usize) -> &Expr {
    match &body[index] {
        Stmt::Assign(assign) | Stmt::Output(assign) => &assign.value,
        other => panic!("statement {index} is not an assignment: {other:?}"),
    }
}

/// `input |> stage` split in two.
fn pipe(expr: &Expr) -> (&Expr, &Expr) {
    match &expr.kind {
        ExprKind::Pipe { input, stage } => (input, stage),
        other => panic!("not a pipe: {other:?}"),
    }
}

fn call(expr: &Expr) -> &Call {
    match &expr.kind {
        ExprKind::Call(call) => call,
        other => panic!("not a call: {other:?}"),
    }
}

fn int_default(param: &Param) -> Option<i64> {
    match param.default.as_ref().map(|default| &default.kind) {
        Some(ExprKind::Int(value)) => Some(*value),
        _ => None,
    }
}

#[test]
fn lenet_parses_to_one_model_with_pipes_folded_left() {
    let source = sources::LENET;
    let file = parse_ok("lenet.coop", source);
    assert_eq!(file.items.len(), 1);
    let lenet = model(&file, 0);
    assert_eq!(lenet.name.name, "lenet");
    assert_eq!(text(source, lenet.name.span), "lenet");
    assert_eq!(lenet.params.len(), 1);
    assert_eq!(text(source, lenet.params[0].span), "classes = 10");
    assert_eq!(int_default(&lenet.params[0]), Some(10));
    assert_eq!(lenet.body.len(), 4);

    let Stmt::Input(input) = &lenet.body[0] else {
        panic!("first statement is not an input")
    };
    assert_eq!(input.name.name, "image");
    assert_eq!(text(source, input.shape_span), "[1, 28, 28]");
    assert_eq!(text(source, input.span), "input image: [1, 28, 28]");
    let dims: Vec<_> = input.dims.iter().map(|dim| dim.kind.clone()).collect();
    assert_eq!(
        dims,
        [ExprKind::Int(1), ExprKind::Int(28), ExprKind::Int(28)]
    );

    // x = image |> conv(20, kernel: 5) |> relu |> maxpool(2), i.e. maxpool(relu(conv(image)))
    let value = assigned(&lenet.body, 1);
    assert_eq!(
        text(source, value.span),
        "image |> conv(20, kernel: 5) |> relu |> maxpool(2)"
    );
    let (rest, maxpool) = pipe(value);
    assert_eq!(call(maxpool).callee.name, "maxpool");
    let (rest, relu) = pipe(rest);
    assert!(
        call(relu).args.is_empty(),
        "a bare `relu` stage has no arguments"
    );
    let (image, conv) = pipe(rest);
    assert_eq!(image.kind, ExprKind::Ident("image".to_string()));
    let conv = call(conv);
    assert_eq!(text(source, conv.span), "conv(20, kernel: 5)");
    let Arg { name, value, span } = &conv.args[1];
    assert_eq!(text(source, *span), "kernel: 5");
    assert_eq!(
        name.as_ref().map(|name| text(source, name.span)),
        Some("kernel")
    );
    assert_eq!(value.kind, ExprKind::Int(5));
    assert_eq!(conv.args[0].name, None);

    let Stmt::Output(output) = &lenet.body[3] else {
        panic!("last statement is not an output")
    };
    assert_eq!(output.target.name, "logits");
    assert!(text(source, output.span).starts_with("output logits = x |> flatten"));
}

#[test]
fn resnet56_blocks_have_results_repeats_and_labels() {
    let source = sources::RESNET56;
    let file = parse_ok("resnet56.coop", source);
    assert!(
        source.lines().count() < 25,
        "ResNet-56 should read in well under 40 lines"
    );
    assert_eq!(file.items.len(), 3);

    let basic = block(&file, 0);
    let names: Vec<_> = basic
        .params
        .iter()
        .map(|param| param.name.name.as_str())
        .collect();
    assert_eq!(names, ["x", "width", "stride"]);
    assert_eq!(int_default(&basic.params[2]), Some(1));
    let result = basic.result().expect("basic has a result");
    assert_eq!(
        text(source, result.span),
        "relu(y + shortcut(x, width, stride: stride))"
    );
    let ExprKind::Binary {
        op: BinaryOp::Add,
        lhs,
        rhs,
    } = &call(result).args[0].value.kind
    else {
        panic!("relu's argument is not a sum")
    };
    assert_eq!(lhs.kind, ExprKind::Ident("y".to_string()));
    assert_eq!(call(rhs).callee.name, "shortcut");

    // x |> basic(width, stride: stride) |> repeat blocks - 1 basic(width)
    let stage = block(&file, 1);
    let (first, repeat) = pipe(stage.result().expect("stage has a result"));
    assert_eq!(
        text(source, first.span),
        "x |> basic(width, stride: stride)"
    );
    let ExprKind::Repeat {
        count,
        call: repeated,
    } = &repeat.kind
    else {
        panic!("no repeat")
    };
    assert_eq!(text(source, repeat.span), "repeat blocks - 1 basic(width)");
    assert_eq!(text(source, count.span), "blocks - 1");
    assert!(matches!(
        count.kind,
        ExprKind::Binary {
            op: BinaryOp::Sub,
            ..
        }
    ));
    assert_eq!(text(source, repeated.span), "basic(width)");

    // x = x |> stage(32, blocks, stride: 2) as stage2
    let resnet = model(&file, 2);
    let (_, labeled) = pipe(assigned(&resnet.body, 3));
    let ExprKind::Labeled { expr, label } = &labeled.kind else {
        panic!("no label")
    };
    assert_eq!(label.name, "stage2");
    assert_eq!(text(source, label.span), "stage2");
    assert_eq!(text(source, expr.span), "stage(32, blocks, stride: 2)");
    assert_eq!(
        text(source, labeled.span),
        "stage(32, blocks, stride: 2) as stage2"
    );
}

#[test]
fn vgg_like_covers_literals_line_breaks_and_labeled_repeats() {
    let source = sources::VGG_LIKE;
    let file = parse_ok("vgg_like.coop", source);
    let convs = block(&file, 0);
    let Some(Expr {
        kind: ExprKind::Str(act),
        ..
    }) = &convs.params[3].default
    else {
        panic!("act has no string default")
    };
    assert_eq!(act, "relu");
    let (_, labeled) = pipe(convs.result().expect("convs has a result"));
    let ExprKind::Labeled { expr, label } = &labeled.kind else {
        panic!("no label")
    };
    assert!(matches!(expr.kind, ExprKind::Repeat { .. }));
    assert_eq!(label.name, "layer");

    let conv_bn = block(&file, 1);
    let (_, batchnorm) = pipe(pipe(conv_bn.result().expect("a result")).0);
    let floats: Vec<_> = call(batchnorm)
        .args
        .iter()
        .map(|arg| arg.value.kind.clone())
        .collect();
    assert_eq!(floats, [ExprKind::Float(0.1), ExprKind::Float(1e-5)]);

    let vgg = model(&file, 2);
    let Some(Expr {
        kind: ExprKind::List(sizes),
        ..
    }) = &vgg.params[2].default
    else {
        panic!("sizes has no list default")
    };
    assert_eq!(sizes.len(), 3);
    // A pipe continued on the next lines, and `;` between two statements on one line.
    let continued = assigned(&vgg.body, 2);
    assert!(text(source, continued.span).ends_with("|> maxpool(2, stride: 2)"));
    assert_eq!(vgg.body.len(), 7);
    let (_, dense) = pipe(assigned(&vgg.body, 5));
    let ExprKind::Labeled { expr: dense, .. } = &dense.kind else {
        panic!("fc1 has no label")
    };
    let dense = call(dense);
    assert_eq!(text(source, dense.args[0].span), "(width * 8) / 2");
    assert_eq!(
        dense.args[1].value.kind,
        ExprKind::Str("kaiming_uniform".to_string())
    );
    let (_, leaky) = pipe(pipe(assigned(&vgg.body, 6)).0);
    assert_eq!(call(leaky).args[0].value.kind, ExprKind::Float(-0.01));
}

/// Checks that every node's span lies inside its parent's and identifiers span their names.
fn check_expr(source: &str, expr: &Expr, parent: Span) {
    assert!(
        parent.start <= expr.span.start && expr.span.end <= parent.end,
        "{expr:?}"
    );
    let inside = |child: &Expr| check_expr(source, child, expr.span);
    match &expr.kind {
        ExprKind::Ident(name) => assert_eq!(text(source, expr.span), name),
        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
        ExprKind::List(elements) => elements.iter().for_each(inside),
        ExprKind::Call(call) => check_call(source, call, expr.span),
        ExprKind::Pipe { input, stage } => {
            inside(input);
            inside(stage);
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            inside(lhs);
            inside(rhs);
        }
        ExprKind::Repeat { count, call } => {
            inside(count);
            check_call(source, call, expr.span);
        }
        ExprKind::Labeled {
            expr: labeled,
            label,
        } => {
            inside(labeled);
            assert_eq!(text(source, label.span), label.name);
        }
    }
}

fn check_call(source: &str, call: &Call, parent: Span) {
    assert!(parent.start <= call.span.start && call.span.end <= parent.end);
    assert_eq!(text(source, call.callee.span), call.callee.name);
    for arg in &call.args {
        check_expr(source, &arg.value, arg.span);
        if let Some(name) = &arg.name {
            assert_eq!(text(source, name.span), name.name);
        }
    }
}

#[test]
fn every_span_lies_inside_its_parent_in_every_sample() {
    for (name, source) in sources::ALL {
        let file = parse_ok(name, source);
        for item in &file.items {
            let (params, body) = match item {
                Item::Model(model) => (&model.params, &model.body),
                Item::Block(block) => (&block.params, &block.body),
            };
            assert_eq!(text(source, item.name().span), item.name().name);
            for param in params {
                assert_eq!(text(source, param.name.span), param.name.name);
                if let Some(default) = &param.default {
                    check_expr(source, default, param.span);
                }
            }
            for stmt in body {
                match stmt {
                    Stmt::Input(input) => input
                        .dims
                        .iter()
                        .for_each(|dim| check_expr(source, dim, input.span)),
                    Stmt::Assign(assign) | Stmt::Output(assign) => {
                        check_expr(source, &assign.value, assign.span)
                    }
                    Stmt::Expr(expr) => check_expr(source, expr, item.span()),
                }
            }
        }
    }
}

#[test]
fn brackets_nested_to_the_limit_parse() {
    // The body's `{` is one level, so 255 parentheses reach the limit exactly.
    let depth = MAX_NESTING - 1;
    let source = format!(
        "block b(x) {{\n{}x{}\n}}\n",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    parse_ok("parens.coop", &source);
    let calls = format!(
        "block b(x) {{\n{}x{}\n}}\n",
        "f(".repeat(depth - 1),
        ")".repeat(depth - 1)
    );
    parse_ok("calls.coop", &calls);
    let lists = format!(
        "block b(x) {{\n{}x{}\n}}\n",
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    );
    parse_ok("lists.coop", &lists);
}

#[test]
fn large_files_parse() {
    let mut source = String::new();
    for index in 0..300 {
        source.push_str(&sources::RESNET56.replace("resnet56", &format!("resnet{index}")));
    }
    let file = parse_ok("large.coop", &source);
    assert_eq!(file.items.len(), 900);
}

#[test]
fn keywords_are_whole_words_only() {
    let source = "model m() {\n    modelx = asx |> repeated(input_size) as truex\n}\n";
    let file = parse_ok("words.coop", source);
    let (_, labeled) = pipe(assigned(&model(&file, 0).body, 0));
    let ExprKind::Labeled { expr, label } = &labeled.kind else {
        panic!("no label")
    };
    assert_eq!(call(expr).callee.name, "repeated");
    assert_eq!(label.name, "truex");
}

#[test]
fn operators_follow_usual_precedence_and_pipes_bind_loosest() {
    let source = "block b(x, n) {\n    y = n - 1 - 2 * n / 3\n    y + x |> relu\n}\n";
    let file = parse_ok("prec.coop", source);
    let body = &block(&file, 0).body;
    let ExprKind::Binary {
        op: BinaryOp::Sub,
        lhs,
        rhs,
    } = &assigned(body, 0).kind
    else {
        panic!("not a subtraction")
    };
    assert_eq!(text(source, lhs.span), "n - 1");
    assert_eq!(text(source, rhs.span), "2 * n / 3");
    let (input, _) = pipe(block(&file, 0).result().expect("a result"));
    assert_eq!(text(source, input.span), "y + x");
}

#[test]
fn printed_samples_parse_back_to_the_same_tree() {
    for (name, source) in sources::ALL {
        let file = parse_ok(name, source);
        let printed = file.to_string();
        let reparsed = parse_ok(name, &printed);
        assert_eq!(without_spans(&reparsed), without_spans(&file), "{printed}");
        assert_eq!(reparsed.to_string(), printed);
    }
}

#[test]
fn crlf_line_endings_and_tabs_parse_like_newlines_and_spaces() {
    for (name, source) in sources::ALL {
        let windows = source.replace('\n', "\r\n").replace("    ", "\t");
        let file = parse_ok(name, &windows);
        assert_eq!(without_spans(&file), without_spans(&parse_ok(name, source)));
    }
}

#[test]
fn a_model_may_leave_out_empty_parentheses() {
    let file = parse_ok(
        "bare.coop",
        "model m {\n    input i: [1]\n    output o = i\n}\n",
    );
    assert!(model(&file, 0).params.is_empty());
}
