//! The built-in ops of the language: their signatures and what each adds to the graph.
//!
//! Invariant: [`BUILTINS`] is the one list of op names and parameters; the static check,
//! argument binding, help texts and `docs/ir.md` all follow it. Each handler converts its
//! arguments (reporting wrong kinds and bad sizes at the argument's span) and then calls one
//! [`GraphBuilder`] method, so every shape rule lives in `infer.rs`.

use grammar::Span;

use super::args::{ParamInfo, Signature};
use super::value::{self, Converted, Refusal, Value};
use crate::error::BuildError;
use crate::ir::builder::{BatchNormSpec, ConvSpec, DenseSpec, PoolSpec, WeightInit};
use crate::ir::{Activation, GraphBuilder, NodeId};

/// A built-in op: its name and parameters (`?` marks an optional one).
pub struct Builtin {
    /// The name called.
    pub name: &'static str,
    /// Parameter names in order; a trailing `?` marks one with a default.
    pub params: &'static [&'static str],
    /// The parameter list with defaults, for help texts.
    pub text: &'static str,
}

/// Every built-in op.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "conv",
        params: &["x", "out", "kernel", "stride?", "pad?", "bias?", "init?"],
        text: "x, out, kernel, stride = 1, pad = 0, bias = true, init = \"default\"",
    },
    Builtin {
        name: "dense",
        params: &["x", "out", "bias?", "init?"],
        text: "x, out, bias = true, init = \"default\"",
    },
    Builtin {
        name: "batchnorm",
        params: &["x", "eps?", "momentum?"],
        text: "x, eps = 1e-5, momentum = 0.1",
    },
    Builtin {
        name: "relu",
        params: &["x"],
        text: "x",
    },
    Builtin {
        name: "prelu",
        params: &["x", "per_channel?"],
        text: "x, per_channel = false",
    },
    Builtin {
        name: "elu",
        params: &["x", "alpha?"],
        text: "x, alpha = 1.0",
    },
    Builtin {
        name: "softplus",
        params: &["x", "beta?", "threshold?"],
        text: "x, beta = 1.0, threshold = 20.0",
    },
    Builtin {
        name: "leaky_relu",
        params: &["x", "slope?"],
        text: "x, slope = 0.01",
    },
    Builtin {
        name: "identity",
        params: &["x"],
        text: "x",
    },
    Builtin {
        name: "activation",
        params: &["x", "kind"],
        text: "x, kind (\"relu\", \"prelu\", ...)",
    },
    Builtin {
        name: "maxpool",
        params: &["x", "kernel", "stride?", "pad?"],
        text: "x, kernel, stride = kernel, pad = 0",
    },
    Builtin {
        name: "avgpool",
        params: &["x", "kernel", "stride?", "pad?"],
        text: "x, kernel, stride = kernel, pad = 0",
    },
    Builtin {
        name: "global_avgpool",
        params: &["x"],
        text: "x",
    },
    Builtin {
        name: "flatten",
        params: &["x"],
        text: "x",
    },
    Builtin {
        name: "dropout",
        params: &["x", "p?"],
        text: "x, p = 0.5",
    },
    Builtin {
        name: "shortcut",
        params: &["x", "width", "stride?", "kind?", "init?"],
        text: "x, width, stride = 1, kind = \"a\", init = \"default\"",
    },
];

/// The built-in op called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

impl Builtin {
    /// Its signature, for argument binding.
    pub fn signature(&self) -> Signature {
        let params = self
            .params
            .iter()
            .map(|param| ParamInfo {
                name: param.trim_end_matches('?').to_string(),
                required: !param.ends_with('?'),
            })
            .collect();
        Signature {
            callee: self.name.to_string(),
            params,
            definition: None,
            text: self.text.to_string(),
        }
    }
}

/// The converted arguments of one call of a built-in op.
pub struct Args<'a> {
    /// The op.
    pub builtin: &'static Builtin,
    /// One value per parameter (`None` when left to the default), with its span.
    pub values: Vec<Option<(Value, Span)>>,
    /// The call's span.
    pub span: Span,
    /// The layer's full name.
    pub layer: &'a str,
}

impl Args<'_> {
    fn slot(&self, name: &str) -> Option<&(Value, Span)> {
        let index = self
            .builtin
            .params
            .iter()
            .position(|param| param.trim_end_matches('?') == name)?;
        self.values.get(index)?.as_ref()
    }

    fn what(&self, name: &str) -> String {
        format!("argument `{name}` of `{}`", self.builtin.name)
    }

    fn tensor(&self, name: &str) -> Converted<NodeId> {
        match self.slot(name) {
            Some((value, span)) => value::tensor(value, &self.what(name), *span),
            None => Err(Refusal::Poisoned),
        }
    }

    fn size(&self, name: &str, default: usize, allow_zero: bool) -> Converted<usize> {
        match self.slot(name) {
            Some((value, span)) => value::size(value, &self.what(name), *span, allow_zero),
            None => Ok(default),
        }
    }

    fn pair(&self, name: &str, default: [usize; 2], allow_zero: bool) -> Converted<[usize; 2]> {
        match self.slot(name) {
            Some((value, span)) => value::pair(value, &self.what(name), *span, allow_zero),
            None => Ok(default),
        }
    }

    fn boolean(&self, name: &str, default: bool) -> Converted<bool> {
        match self.slot(name) {
            Some((value, span)) => value::boolean(value, &self.what(name), *span),
            None => Ok(default),
        }
    }

    fn string(&self, name: &str, default: &str) -> Converted<String> {
        match self.slot(name) {
            Some((value, span)) => {
                value::string(value, &self.what(name), *span).map(str::to_string)
            }
            None => Ok(default.to_string()),
        }
    }

    /// A float in `range` (as words in `expected`).
    fn float(
        &self,
        name: &str,
        default: f32,
        allowed: impl Fn(f32) -> bool,
        expected: &str,
    ) -> Converted<f32> {
        let Some((value, span)) = self.slot(name) else {
            return Ok(default);
        };
        let number = value::number(value, &self.what(name), *span)? as f32;
        if number.is_finite() && allowed(number) {
            return Ok(number);
        }
        Err(out_of_range(
            self.what(name),
            expected,
            number.to_string(),
            *span,
        ))
    }

    /// The span of argument `name`, or the call's.
    fn span_of(&self, name: &str) -> Span {
        self.slot(name).map_or(self.span, |(_, span)| *span)
    }
}

fn out_of_range(what: String, expected: &str, value: String, span: Span) -> Refusal {
    Refusal::Error(BuildError::OutOfRange {
        what,
        expected: expected.to_string(),
        value,
        span,
    })
}

/// Adds the op of `args` to the graph and returns its value.
pub fn apply(builder: &mut GraphBuilder<'_>, args: &Args<'_>) -> Converted<Value> {
    let x = args.tensor("x")?;
    let (layer, span) = (args.layer, args.span);
    let node = match args.builtin.name {
        "conv" => conv(builder, x, args),
        "dense" => dense(builder, x, args),
        "batchnorm" => {
            let eps = args.float("eps", 1e-5, |eps| eps > 0.0, "positive")?;
            let momentum =
                args.float("momentum", 0.1, |m| (0.0..=1.0).contains(&m), "in [0, 1]")?;
            Ok(builder.batchnorm(x, &BatchNormSpec { eps, momentum }, layer, span)?)
        }
        "prelu" => {
            let per_channel = args.boolean("per_channel", false)?;
            Ok(builder.prelu(x, &format!("{layer}.slope"), per_channel, layer, span)?)
        }
        "activation" => {
            let kind = args.string("kind", "relu")?;
            let Some(activation) = Activation::from_name(&kind) else {
                let expected = "one of \"relu\", \"prelu\", \"elu\", \"softplus\", \
                                \"leaky_relu\", \"identity\"";
                return Err(out_of_range(
                    args.what("kind"),
                    expected,
                    format!("{kind:?}"),
                    args.span_of("kind"),
                ));
            };
            Ok(builder.activation(x, &activation, layer, span)?)
        }
        "relu" | "elu" | "softplus" | "leaky_relu" | "identity" => {
            let activation = activation_with_constants(args)?;
            Ok(builder.activation(x, &activation, layer, span)?)
        }
        "maxpool" | "avgpool" => pool(builder, x, args),
        "global_avgpool" => Ok(builder.global_avgpool(x, layer, span)?),
        "flatten" => Ok(builder.flatten(x, layer, span)?),
        "dropout" => {
            let p = args.float("p", 0.5, |p| (0.0..1.0).contains(&p), "in [0, 1)")?;
            Ok(builder.dropout(x, p, layer, span)?)
        }
        "shortcut" => shortcut(builder, x, args),
        other => Err(Refusal::Error(BuildError::UnknownCallee {
            name: other.to_string(),
            span,
            help: "this op has no handler; please report this".into(),
        })),
    };
    node.map(Value::Tensor)
}

fn activation_with_constants(args: &Args<'_>) -> Converted<Activation> {
    Ok(match args.builtin.name {
        "elu" => Activation::Elu {
            alpha: args.float("alpha", 1.0, |alpha| alpha >= 0.0, "zero or more")?,
        },
        "softplus" => Activation::Softplus {
            beta: args.float("beta", 1.0, |beta| beta > 0.0, "positive")?,
            threshold: args.float("threshold", 20.0, |threshold| threshold > 0.0, "positive")?,
        },
        "leaky_relu" => Activation::LeakyRelu {
            slope: args.float("slope", 0.01, |_| true, "finite")?,
        },
        "identity" => Activation::Identity,
        _ => Activation::Relu,
    })
}

fn weight_init(args: &Args<'_>) -> Converted<WeightInit> {
    let name = args.string("init", "default")?;
    let alias = if name == "kaiming_uniform" {
        "default"
    } else {
        name.as_str()
    };
    WeightInit::from_name(alias).ok_or_else(|| {
        let expected = "\"default\" (or \"kaiming_uniform\"), \"kaiming_normal\" or \
                        \"kaiming_normal_fan_out\"";
        out_of_range(
            args.what("init"),
            expected,
            format!("{name:?}"),
            args.span_of("init"),
        )
    })
}

fn conv(builder: &mut GraphBuilder<'_>, x: NodeId, args: &Args<'_>) -> Converted<NodeId> {
    let spec = ConvSpec {
        out_channels: args.size("out", 1, false)?,
        kernel: args.pair("kernel", [1, 1], false)?,
        stride: args.pair("stride", [1, 1], false)?,
        padding: args.pair("pad", [0, 0], true)?,
        bias: args.boolean("bias", true)?,
        init: weight_init(args)?,
    };
    Ok(builder.conv(x, &spec, args.layer, args.span)?)
}

fn dense(builder: &mut GraphBuilder<'_>, x: NodeId, args: &Args<'_>) -> Converted<NodeId> {
    let spec = DenseSpec {
        out_features: args.size("out", 1, false)?,
        bias: args.boolean("bias", true)?,
        init: weight_init(args)?,
    };
    Ok(builder.dense(x, &spec, args.layer, args.span)?)
}

fn pool(builder: &mut GraphBuilder<'_>, x: NodeId, args: &Args<'_>) -> Converted<NodeId> {
    let kernel = args.pair("kernel", [1, 1], false)?;
    let spec = PoolSpec {
        kernel,
        stride: args.pair("stride", kernel, false)?,
        padding: args.pair("pad", [0, 0], true)?,
    };
    let (layer, span) = (args.layer, args.span);
    if args.builtin.name == "maxpool" {
        Ok(builder.maxpool(x, &spec, layer, span)?)
    } else {
        Ok(builder.avgpool(x, &spec, layer, span)?)
    }
}

// shortcut(x, width, stride) = x when the shape is kept; else option A (subsample + zero
// channels) or option B (1x1 convolution with stride, then BatchNorm)
fn shortcut(builder: &mut GraphBuilder<'_>, x: NodeId, args: &Args<'_>) -> Converted<NodeId> {
    let width = args.size("width", 1, false)?;
    let stride = args.size("stride", 1, false)?;
    let kind = args.string("kind", "a")?;
    let (layer, span) = (args.layer, args.span);
    let channels = match builder.ty(x).dims.as_slice() {
        &[channels, _, _] if builder.ty(x).batched => channels,
        _ => {
            let what = "the input of `shortcut`".to_string();
            let found = "a tensor that is not an image";
            return Err(Refusal::Error(BuildError::WrongKind {
                what,
                expected: "an f32[N,C,H,W] image",
                found,
                span,
            }));
        }
    };
    if stride == 1 && width == channels {
        return Ok(x);
    }
    match kind.as_str() {
        "a" if width >= channels && (width - channels) % 2 == 0 => {
            Ok(builder.shortcut_a(x, stride, (width - channels) / 2, layer, span)?)
        }
        "a" => {
            let expected = format!(
                "at least the input's {channels} channels, with an even difference (option A \
                 pads zeros on both sides)"
            );
            Err(out_of_range(
                args.what("width"),
                &expected,
                width.to_string(),
                args.span_of("width"),
            ))
        }
        "b" => {
            let spec = ConvSpec {
                out_channels: width,
                kernel: [1, 1],
                stride: [stride, stride],
                padding: [0, 0],
                bias: false,
                init: weight_init(args)?,
            };
            let projection = builder.conv(x, &spec, &format!("{layer}.conv"), span)?;
            let bn = BatchNormSpec::default();
            Ok(builder.batchnorm(projection, &bn, &format!("{layer}.bn"), span)?)
        }
        _ => Err(out_of_range(
            args.what("kind"),
            "\"a\" or \"b\"",
            format!("{kind:?}"),
            args.span_of("kind"),
        )),
    }
}
