//! Error statistics between a tensor and a reference, as the peers report them.

use incept_ir::Tensor;
use serde::Serialize;

/// How far `actual` is from `reference`, elementwise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ErrorStats {
    /// `max |a − r|`.
    pub max_abs: f64,
    /// `max |a − r| / max |r|`: the error relative to the reference's scale,
    /// robust to elements near zero (the measure the numerics targets use).
    pub max_rel: f64,
    /// Mean of `|a − r|`.
    pub mean_abs: f64,
    /// `max |r|`.
    pub ref_max: f64,
    /// Elements compared.
    pub count: usize,
    /// Elements where exactly one side is NaN, or both are infinite with different signs.
    pub mismatched_nonfinite: usize,
}

/// Compares two tensors of the same shape (any float dtypes); `None` if the
/// shapes differ.
pub fn error_stats(actual: &Tensor, reference: &Tensor) -> Option<ErrorStats> {
    if actual.shape() != reference.shape() {
        return None;
    }
    let (a, r) = (actual.to_f64_vec(), reference.to_f64_vec());
    let mut s = ErrorStats { max_abs: 0.0, max_rel: 0.0, mean_abs: 0.0, ref_max: 0.0, count: a.len(), mismatched_nonfinite: 0 };
    let mut sum = 0.0;
    for (x, y) in a.iter().zip(&r) {
        if !(x.is_finite() && y.is_finite()) {
            if !(x == y || (x.is_nan() && y.is_nan())) {
                s.mismatched_nonfinite += 1;
            }
            continue;
        }
        let d = (x - y).abs();
        s.max_abs = s.max_abs.max(d);
        s.ref_max = s.ref_max.max(y.abs());
        sum += d;
    }
    s.mean_abs = if s.count > 0 { sum / s.count as f64 } else { 0.0 };
    s.max_rel = if s.ref_max > 0.0 { s.max_abs / s.ref_max } else if s.max_abs == 0.0 { 0.0 } else { f64::INFINITY };
    if s.mismatched_nonfinite > 0 {
        s.max_rel = f64::INFINITY;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_reference_scale() {
        let r = Tensor::from_f32(vec![3], vec![10.0, -4.0, 0.0]).unwrap();
        let a = Tensor::from_f32(vec![3], vec![10.5, -4.0, 0.25]).unwrap();
        let s = error_stats(&a, &r).unwrap();
        assert_eq!(s.max_abs, 0.5);
        assert_eq!(s.max_rel, 0.05);
        assert_eq!(s.mean_abs, 0.25);
        let nan = Tensor::from_f32(vec![3], vec![f32::NAN, -4.0, 0.0]).unwrap();
        assert_eq!(error_stats(&nan, &r).unwrap().max_rel, f64::INFINITY);
        assert!(error_stats(&Tensor::from_f32(vec![1], vec![0.0]).unwrap(), &r).is_none());
    }
}
