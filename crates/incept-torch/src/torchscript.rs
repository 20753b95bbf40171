//! TorchScript archives (`torch.jit.save`): the weights are the tensors of the
//! module tree in `data.pkl`, named by their attribute path
//! (`Mixed_5b.branch1x1.conv.weight`).
//!
//! Architecture invariant: `code/` is never read. The module classes
//! (`__torch__.*`) are built as inert objects holding the state BUILD gave
//! them; nothing about them is looked up or run. The walk below is iterative,
//! depth-capped and budgeted, so a tree that is deep, cyclic or shared many
//! times over is an error rather than a stack overflow or a hang.

use crate::error::FormatError;
use crate::pickle::Parsed;
use crate::state_dict::{Bound, Found, NamedSpec, tensor_of};
use crate::value::{Obj, ObjId, Value};

/// Deepest module nesting walked (Inception V3 needs 3).
const MAX_DEPTH: usize = 64;
/// Most objects visited in one walk.
const MAX_VISITS: usize = 1 << 20;

/// Collects the tensors of the module tree rooted at `data.pkl`'s object.
pub(crate) fn collect(parsed: &Parsed, bound: &Bound) -> Result<Found, FormatError> {
    let heap = &parsed.heap;
    let Value::Ref(root) = parsed.root else {
        return Err(FormatError::NoStateDict {
            found: format!(
                "TorchScript data.pkl holds {}, not a module object",
                parsed.root.describe(heap)
            ),
        });
    };
    if !matches!(heap.get(root), Some(Obj::Object { .. })) {
        return Err(FormatError::NoStateDict {
            found: format!(
                "TorchScript data.pkl holds {}, not a module object",
                parsed.root.describe(heap)
            ),
        });
    }
    let mut found = Found::default();
    // Each pending module: its object and its path (empty for the root).
    let mut pending: Vec<(ObjId, String, usize)> = vec![(root, String::new(), 0)];
    let mut visits = 0usize;
    while let Some((id, path, depth)) = pending.pop() {
        visits += 1;
        if visits > MAX_VISITS {
            return Err(FormatError::TorchScriptTree {
                path,
                reason: "more than 2^20 objects (shared many times over?)",
            });
        }
        if depth > MAX_DEPTH {
            return Err(FormatError::TorchScriptTree {
                path,
                reason: "nested more than 64 levels (a cycle?)",
            });
        }
        let Some(Obj::Object { state, .. }) = heap.get(id) else {
            continue;
        };
        let attrs = match state.as_ref().and_then(|s| heap.deref(s)) {
            Some(Obj::Dict(d)) => d,
            _ => {
                found.warnings.push(format!(
                    "module `{}` has no attribute dict; skipped",
                    display_path(&path)
                ));
                continue;
            }
        };
        let mut children = Vec::new();
        for (k, v) in &attrs.entries {
            let Some(name) = k.as_str() else { continue };
            let full = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            if let Some(t) = tensor_of(heap, v, &full, bound)? {
                found.tensors.push(t);
                continue;
            }
            match heap.deref(v) {
                Some(Obj::Object { .. }) => {
                    if let Value::Ref(child) = v {
                        children.push((*child, full, depth + 1));
                    }
                }
                Some(Obj::List(items) | Obj::Tuple(items))
                    if items
                        .iter()
                        .any(|i| matches!(heap.deref(i), Some(Obj::Tensor(_)))) =>
                {
                    found.warnings.push(format!(
                        "attribute `{full}` is a list of tensors, which has no state-dict name; skipped"
                    ));
                }
                _ => {}
            }
        }
        // Reversed so that the stack pops submodules in attribute order.
        pending.extend(children.into_iter().rev());
    }
    Ok(found)
}

/// The tensors of `constants.pkl` (a tuple), named `constants.<i>`.
pub(crate) fn constants(parsed: &Parsed, bound: &Bound) -> Result<Vec<NamedSpec>, FormatError> {
    let heap = &parsed.heap;
    let Some(Obj::Tuple(items) | Obj::List(items)) = heap.deref(&parsed.root) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate() {
        if let Some(t) = tensor_of(heap, v, &format!("constants.{i}"), bound)? {
            out.push(t);
        }
    }
    Ok(out)
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}
