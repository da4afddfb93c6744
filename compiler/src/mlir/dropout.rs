//! Dropout masks inside element-wise kernels: the counter-based mask of
//! `reference::dropout`, computed per element from the step's seed, the site and the flat
//! index, so that the forward dropout and its gradient draw the same mask without storing it.
//!
//! Invariant: the integer arithmetic here is exactly `reference::dropout::keep` (wrapping
//! `i64` operations on the same bits, and the comparison `bits ≥ p·2²⁴` in `f32`, which is
//! exact), so the kernels keep exactly the elements the reference keeps.

use std::collections::BTreeMap;

use crate::ir::{NodeId, Op};
use crate::schedule::Value;

use super::scalar::binary;
use super::writer::FunctionWriter;
use super::{Emit, GraphMode, MlirError};

/// The key of every dropout site the group draws a mask for.
pub(crate) fn site_keys(emit: &mut Emit<'_>) -> Result<BTreeMap<u32, String>, MlirError> {
    let mut sites = Vec::new();
    for &node in &emit.kernel.nodes {
        match emit.graph.node(node).op {
            Op::Dropout { .. } if emit.mode == GraphMode::Train => sites.push(node_site(node)),
            Op::DropoutGrad { site, .. } => sites.push(site),
            _ => {}
        }
    }
    let mut keys = BTreeMap::new();
    if sites.is_empty() {
        return Ok(keys);
    }
    let seed = load_seed(emit)?.ok_or(MlirError::BadKernel { op: "dropout" })?;
    for site in sites {
        let key = site_key(&mut emit.writer, &seed, site);
        keys.insert(site, key);
    }
    Ok(keys)
}

/// The dropout site of a forward `Dropout` node: its node index (as autodiff records it in
/// the matching `DropoutGrad`).
pub(crate) fn node_site(node: NodeId) -> u32 {
    node.index() as u32
}

/// splitmix64's finaliser on an `i64` value (see `reference::dropout`).
fn mix64(writer: &mut FunctionWriter, word: &str) -> String {
    let mut z = word.to_string();
    for (shift, multiplier) in [
        (30, Some(0xBF58_476D_1CE4_E5B9u64)),
        (27, Some(0x94D0_49BB_1331_11EB)),
        (31, None),
    ] {
        let amount = writer.i64(shift);
        let shifted = writer.assign("h", &format!("arith.shrui {z}, {amount} : i64"));
        z = writer.assign("h", &format!("arith.xori {z}, {shifted} : i64"));
        if let Some(multiplier) = multiplier {
            let multiplier = writer.i64(multiplier);
            z = writer.assign("h", &format!("arith.muli {z}, {multiplier} : i64"));
        }
    }
    z
}

/// The step's dropout seed as an `i64`, read from the `dropout_seed` argument.
fn load_seed(emit: &mut Emit<'_>) -> Result<Option<String>, MlirError> {
    let Some(index) = emit
        .kernel
        .args
        .iter()
        .position(|arg| arg.value == Value::DropoutSeed)
    else {
        return Ok(None);
    };
    let seed = emit.args[index].clone();
    let words: Vec<String> = (0..2)
        .map(|word| {
            let position = emit.writer.index(word);
            let value = emit.writer.assign(
                "s",
                &format!("memref.load {}[{position}] : {}", seed.name, seed.ty()),
            );
            emit.writer
                .assign("s", &format!("arith.extui {value} : i32 to i64"))
        })
        .collect();
    let thirty_two = emit.writer.i64(32);
    let high = emit
        .writer
        .assign("s", &format!("arith.shli {}, {thirty_two} : i64", words[1]));
    Ok(Some(emit.writer.assign(
        "s",
        &format!("arith.ori {high}, {} : i64", words[0]),
    )))
}

/// The key of dropout site `site`: `mix64(seed + (site + 1)·G)`.
fn site_key(writer: &mut FunctionWriter, seed: &str, site: u32) -> String {
    let offset = (u64::from(site) + 1).wrapping_mul(GAMMA);
    let offset = writer.i64(offset);
    let word = writer.assign("h", &format!("arith.addi {seed}, {offset} : i64"));
    mix64(writer, &word)
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

// y = keep(seed, site, flat index, p) ? x/(1 − p)·… : 0, with
// keep = (mix64(site_key + (index + 1)·G) >> 40) ≥ p·2²⁴
pub(crate) fn dropout(
    writer: &mut FunctionWriter,
    key: &str,
    space: &[usize],
    x: &str,
    p: f32,
) -> String {
    let mut flat: Option<String> = None;
    for (dim, &size) in space.iter().enumerate() {
        let index = writer.assign("i", &format!("linalg.index {dim} : index"));
        flat = Some(match flat {
            None => index,
            Some(outer) => {
                let size = writer.index(size);
                let scaled = writer.assign("i", &format!("arith.muli {outer}, {size} : index"));
                writer.assign("i", &format!("arith.addi {scaled}, {index} : index"))
            }
        });
    }
    let flat = flat.unwrap_or_else(|| writer.index(0));
    let flat = writer.assign("h", &format!("arith.index_cast {flat} : index to i64"));
    let one = writer.i64(1);
    let gamma = writer.i64(GAMMA);
    let counter = writer.assign("h", &format!("arith.addi {flat}, {one} : i64"));
    let step = writer.assign("h", &format!("arith.muli {counter}, {gamma} : i64"));
    let word = writer.assign("h", &format!("arith.addi {key}, {step} : i64"));
    let mixed = mix64(writer, &word);
    let forty = writer.i64(40);
    let bits = writer.assign("h", &format!("arith.shrui {mixed}, {forty} : i64"));
    let bits = writer.assign("v", &format!("arith.uitofp {bits} : i64 to f32"));
    let threshold = writer.f32(p * 16_777_216.0);
    let keep = writer.assign("p", &format!("arith.cmpf oge, {bits}, {threshold} : f32"));
    let scale = writer.f32(1.0 / (1.0 - p));
    let scaled = binary(writer, "mulf", x, &scale);
    let zero = writer.f32(0.0);
    writer.assign("v", &format!("arith.select {keep}, {scaled}, {zero} : f32"))
}
