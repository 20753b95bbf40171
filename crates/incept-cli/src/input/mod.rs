//! Model inputs for `incept run` and `incept bench`: seeded random batches,
//! tensors from `.safetensors` or `.npy` files, and images with torchvision's
//! Inception preprocessing.

pub mod npy;
pub mod preprocess;

use std::path::Path;

use anyhow::{Context, Result, bail};
use incept_ir::Tensor;

/// A seeded generator of N(0, 1) samples (SplitMix64 and Box–Muller), so a
/// `--seed` gives the same input on every machine.
pub struct Normal(u64);

impl Normal {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Normal(seed)
    }

    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// The next sample.
    pub fn sample(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A random `[batch, 3, size, size]` float32 batch.
pub fn random(batch: usize, size: [usize; 2], seed: u64) -> Result<Tensor> {
    let mut g = Normal::new(seed);
    let n = batch * 3 * size[0] * size[1];
    Ok(Tensor::from_f32(vec![batch, 3, size[0], size[1]], (0..n).map(|_| g.sample() as f32).collect())?)
}

/// A tensor from a `.safetensors` file (its only tensor, or the one named
/// `input`/`x`) or a `.npy` file.
pub fn from_file(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"\x93NUMPY") {
        return npy::parse(&bytes).with_context(|| format!("{}: invalid .npy file", path.display()));
    }
    let f = incept_safetensors::read_bytes(&bytes, path)?;
    if f.tensors.len() == 1 {
        return Ok(f.tensors.into_iter().map(|(_, t)| t).next().unwrap_or_else(|| unreachable!()));
    }
    for key in ["input", "x"] {
        if let Some(t) = f.get(key) {
            return Ok(t.clone());
        }
    }
    let names: Vec<&str> = f.tensors.iter().map(|(n, _)| n.as_str()).collect();
    bail!(
        "{}: holds {} tensors ({}); name the input `input` or `x`, or keep one tensor",
        path.display(),
        names.len(),
        names.join(", ")
    )
}
