//! Realistic `.coop` sources shared by the tests.

/// The LeNet-like MNIST network of DESIGN.md.
pub const LENET: &str = r#"
# A LeNet-like network: two 5x5 convolutions (20 and 30 filters), one dense layer.
model lenet(classes = 10) {
    input image: [1, 28, 28]
    x = image |> conv(20, kernel: 5) |> relu |> maxpool(2)
    x = x |> conv(30, kernel: 5) |> relu |> maxpool(2)
    output logits = x |> flatten |> dense(classes)
}
"#;

/// ResNet-56 for CIFAR: three stages of nine basic blocks.
pub const RESNET56: &str = r#"# ResNet-56 for CIFAR (He et al. 2016): 3 stages of 9 basic blocks.
block basic(x, width, stride = 1) {
    y = x |> conv(width, kernel: 3, stride: stride, pad: 1, bias: false) |> batchnorm |> relu
    y = y |> conv(width, kernel: 3, pad: 1, bias: false) |> batchnorm
    relu(y + shortcut(x, width, stride: stride))
}

block stage(x, width, blocks, stride) {
    x |> basic(width, stride: stride) |> repeat blocks - 1 basic(width)
}

model resnet56(classes = 10, blocks = 9) {
    input image: [3, 32, 32]
    x = image |> conv(16, kernel: 3, pad: 1, bias: false) |> batchnorm |> relu
    x = x |> stage(16, blocks, stride: 1) as stage1
    x = x |> stage(32, blocks, stride: 2) as stage2
    x = x |> stage(64, blocks, stride: 2) as stage3
    output logits = x |> global_avgpool |> flatten |> dense(classes)
}
"#;

/// A VGG-style network exercising the remaining syntax: block comments, line breaks inside
/// calls and before `|>`, floats, strings, lists, labels on calls and repeats, arithmetic.
pub const VGG_LIKE: &str = r#"/* A VGG-like network.
   Not a real recipe: it exists to use every construct once. */
block convs(x, width, count = 2, act = "relu") {
    x |> repeat count conv_bn(width, act: act) as layer
}

block conv_bn(x, width, act = "relu") {
    y = x |> conv(width, kernel: 3, pad: 1)
    y |> batchnorm(momentum: 0.1, eps: 1e-5) |> activation(act)
}

model vgg(classes = 10, width = 64, sizes = [3, 32, 32]) {
    input image: [3, 32, 32]   # channels first
    x = image |> convs(width) as block1 |> maxpool(2)
    x = x
        |> convs(width * 2) as block2
        |> maxpool(2, stride: 2)
    x = x |> convs(width * 4, count: 3) as block3 |> maxpool(2)
    x = dropout(flatten(x), p: 0.5); y = x |> dense(
        (width * 8) / 2,
        init: "kaiming_uniform",
    ) as fc1
    output logits = y |> leaky_relu(slope: -0.01) |> dense(classes)
}
"#;

/// Every sample, with a name for messages.
pub const ALL: [(&str, &str); 3] = [
    ("lenet.coop", LENET),
    ("resnet56.coop", RESNET56),
    ("vgg_like.coop", VGG_LIKE),
];
