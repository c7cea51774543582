//! Builds the TVM graph-executor JSON (`compiled_model.json`).
//!
//! Every node has exactly one output entry, so entry ids equal node ids and each entry gets
//! its own storage.

use serde_json::{Value, json};

/// One node: a graph input or parameter (`op: "null"`), or a kernel call (`op: "tvm_op"`).
pub(crate) struct Node {
    pub name: String,
    /// The kernel symbol for `tvm_op` nodes; `None` for inputs and parameters.
    pub func: Option<&'static str>,
    /// Ids of the nodes feeding this one.
    pub inputs: Vec<usize>,
    /// Output shape.
    pub shape: Vec<i64>,
    /// Output dtype text.
    pub dtype: &'static str,
}

/// Serialises `nodes` (in topological order) with the last node as the graph's only output.
pub(crate) fn graph_json(nodes: &[Node]) -> Value {
    let json_nodes: Vec<Value> = nodes
        .iter()
        .map(|node| match node.func {
            None => json!({"op": "null", "name": node.name, "inputs": []}),
            Some(func) => json!({
                "op": "tvm_op",
                "name": node.name,
                "attrs": {
                    "func_name": func,
                    "num_inputs": node.inputs.len().to_string(),
                    "num_outputs": "1",
                    "flatten_data": "0",
                },
                "inputs": node.inputs.iter().map(|&i| json!([i, 0, 0])).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let arg_nodes: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].func.is_none())
        .collect();
    json!({
        "nodes": json_nodes,
        "arg_nodes": arg_nodes,
        "heads": [[nodes.len() - 1, 0, 0]],
        "node_row_ptr": (0..=nodes.len()).collect::<Vec<_>>(),
        "attrs": {
            "dltype": ["list_str", nodes.iter().map(|n| n.dtype).collect::<Vec<_>>()],
            "shape": ["list_shape", nodes.iter().map(|n| n.shape.clone()).collect::<Vec<_>>()],
            "storage_id": ["list_int", (0..nodes.len()).collect::<Vec<_>>()],
        },
    })
}
