//! Per-channel elementwise work: BatchNorm as scale and shift, ReLU, and the
//! epilogue that applies them to a convolution's output while it is hot in cache.

use rayon::prelude::*;

use crate::float::Float;

/// `y = max(x · scale_c + shift_c, 0)` per channel, each part optional.
#[derive(Clone, Debug)]
pub struct Epilogue<T> {
    /// Per-channel multiplier.
    pub scale: Option<Vec<T>>,
    /// Per-channel addend (a bias, or BatchNorm's shift).
    pub shift: Option<Vec<T>>,
    /// Clamp at zero afterwards.
    pub relu: bool,
}

impl<T: Float> Epilogue<T> {
    /// The identity.
    pub fn none() -> Self {
        Epilogue {
            scale: None,
            shift: None,
            relu: false,
        }
    }

    /// True when applying it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.scale.is_none() && self.shift.is_none() && !self.relu
    }

    /// Applies the epilogue in place to `[C, plane]` data.
    pub fn apply(&self, data: &mut [T], plane: usize, threads: usize) {
        self.apply_from(data, plane, 0, threads);
    }

    /// Applies the epilogue in place to `[C, plane]` data whose first channel
    /// is channel `first` of the op (a group of a grouped convolution).
    pub fn apply_from(&self, data: &mut [T], plane: usize, first: usize, threads: usize) {
        if self.is_identity() || plane == 0 {
            return;
        }
        let threads = super::balance::threads(threads);
        let one = |(c, chunk): (usize, &mut [T])| self.channel(first + c, chunk);
        if threads > 1 && data.len() >= 1 << 16 {
            data.par_chunks_mut(plane).enumerate().for_each(one);
        } else {
            data.chunks_mut(plane).enumerate().for_each(one);
        }
    }

    fn channel(&self, c: usize, chunk: &mut [T]) {
        let s = self.scale.as_ref().map_or(T::ONE, |v| v[c]);
        let b = self.shift.as_ref().map_or(T::ZERO, |v| v[c]);
        match (self.scale.is_some() || self.shift.is_some(), self.relu) {
            (true, true) => chunk.iter_mut().for_each(|x| {
                // `y < 0` rather than `!(y > 0)`: NaN propagates, as in PyTorch.
                let y = *x * s + b;
                *x = if y < T::ZERO { T::ZERO } else { y };
            }),
            (true, false) => chunk.iter_mut().for_each(|x| *x = *x * s + b),
            (false, true) => chunk.iter_mut().for_each(|x| {
                if *x < T::ZERO {
                    *x = T::ZERO;
                }
            }),
            (false, false) => {}
        }
    }
}

/// BatchNorm's inference transform as `(scale, shift)`, computed in f64 and
/// rounded once: `scale = w / sqrt(var + eps)`, `shift = b − mean · scale`.
pub fn batchnorm_scale_shift(
    weight: &[f64],
    bias: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let scale: Vec<f64> = weight
        .iter()
        .zip(var)
        .map(|(w, v)| w / (v + eps).sqrt())
        .collect();
    let shift = bias
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}
