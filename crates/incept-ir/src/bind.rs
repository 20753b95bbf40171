//! Binding weights to a graph's parameters by state-dict key, strictly, with
//! every problem reported at once (like `load_state_dict(strict=True)`, but
//! not stopping at the first).

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::dtype::DType;
use crate::graph::Graph;
use crate::tensor::Tensor;

/// A parameter whose tensor has the wrong shape or dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The state-dict key.
    pub key: String,
    /// What the graph expects (`f32[32,3,3,3]`).
    pub expected: String,
    /// What the weights hold.
    pub found: String,
}

/// Everything that kept a set of weights from binding.
#[derive(Clone, Debug, Default, PartialEq, Error)]
pub struct BindError {
    /// Keys the graph needs that the weights lack.
    pub missing: Vec<String>,
    /// Keys the weights have that the graph does not.
    pub unexpected: Vec<String>,
    /// Keys present in both with the wrong shape or dtype.
    pub mismatched: Vec<Mismatch>,
    /// Keys given more than once.
    pub duplicated: Vec<String>,
}

impl BindError {
    fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.duplicated.is_empty()
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let list = |v: &[String]| {
            const SHOWN: usize = 8;
            let mut s = v
                .iter()
                .take(SHOWN)
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if v.len() > SHOWN {
                s.push_str(&format!(" and {} more", v.len() - SHOWN));
            }
            s
        };
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing key(s): {}",
                self.missing.len(),
                list(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected key(s): {}",
                self.unexpected.len(),
                list(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let m: Vec<String> = self
                .mismatched
                .iter()
                .map(|m| format!("`{}` expected {}, found {}", m.key, m.expected, m.found))
                .collect();
            parts.push(format!("{} shape mismatch(es): {}", m.len(), m.join("; ")));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!(
                "{} duplicated key(s): {}",
                self.duplicated.len(),
                list(&self.duplicated)
            ));
        }
        write!(f, "the weights do not fit the model: {}", parts.join("; "))
    }
}

fn describe(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("{dtype}[{}]", dims.join(","))
}

impl Graph {
    /// Binds `tensors` (state-dict key → tensor) to the parameters.
    ///
    /// A missing BatchNorm `num_batches_tracked` is set to 0, as PyTorch's own
    /// `BatchNorm._load_from_state_dict` does (ONNX files and older
    /// checkpoints do not carry it, and inference never reads it). Shapes must
    /// match exactly. Float parameters accept any float dtype (a
    /// half-precision checkpoint stays half precision: the parameter takes
    /// the tensor's dtype); integer buffers must be integers. Nothing is
    /// bound unless everything fits.
    pub fn bind(&mut self, tensors: Vec<(String, Tensor)>) -> Result<(), BindError> {
        let mut err = BindError::default();
        let mut by_key: BTreeMap<String, Tensor> = BTreeMap::new();
        for (k, t) in tensors {
            match by_key.entry(k) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    err.duplicated.push(e.key().clone())
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(t);
                }
            }
        }
        let mut plan = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            match by_key.remove(&p.name) {
                None if p.name.ends_with(".num_batches_tracked")
                    && p.dtype == DType::I64
                    && p.shape.is_empty() =>
                {
                    // A scalar with one element: construction cannot fail.
                    if let Ok(zero) = Tensor::new(vec![], crate::tensor::TensorData::I64(vec![0])) {
                        plan.push((i, zero));
                    }
                }
                None => err.missing.push(p.name.clone()),
                Some(t) => {
                    let dtype_ok =
                        t.dtype() == p.dtype || (t.dtype().is_float() && p.dtype.is_float());
                    if t.shape() != p.shape.as_slice() || !dtype_ok {
                        err.mismatched.push(Mismatch {
                            key: p.name.clone(),
                            expected: describe(p.dtype, &p.shape),
                            found: describe(t.dtype(), t.shape()),
                        });
                    } else {
                        plan.push((i, t));
                    }
                }
            }
        }
        err.unexpected = by_key.into_keys().collect();
        if !err.is_empty() {
            return Err(err);
        }
        for (i, t) in plan {
            self.params[i].dtype = t.dtype();
            self.params[i].data = Some(t);
        }
        Ok(())
    }
}
