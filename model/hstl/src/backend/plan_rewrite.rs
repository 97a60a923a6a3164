//! Swapping our operators into tract's plans in place of tract's own.

use tract_onnx::prelude::*;

/// Replaces every node of `model` for which `pick` gives an operator by that operator, on the same
/// inputs; returns how many.
pub fn replace_each<O: TypedOp>(
    model: &mut TypedModel,
    pick: impl Fn(&TypedModel, &TypedNode) -> Option<O>,
) -> TractResult<usize> {
    let picked: Vec<(usize, O)> = model
        .nodes()
        .iter()
        .filter_map(|node| pick(model, node).map(|op| (node.id, op)))
        .collect();
    let replaced = picked.len();
    for (id, op) in picked {
        let node = model.node(id);
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?.apply(model)?;
    }
    Ok(replaced)
}
