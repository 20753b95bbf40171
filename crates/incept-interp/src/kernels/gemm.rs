//! A bounds-checked, safe front to the `gemm` crate's matrix multiply.

use gemm::Parallelism;

use crate::float::Float;

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// Backing elements.
    pub data: &'a [T],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix over `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)));
    matches!(last, Some(l) if l < len) && isize::try_from(rs).is_ok() && isize::try_from(cs).is_ok()
}

/// `dst = lhs × rhs` (or `dst += lhs × rhs` with `accumulate`), `dst` a
/// `lhs.rows × rhs.cols` matrix whose rows are `dst_row_stride` apart.
///
/// Panics if the shapes disagree or a view reaches past its slice: callers
/// size every buffer from the validated graph, so this is a bug check, not
/// input validation.
pub fn matmul<T: Float>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(
        fits(dst.len(), m, n, dst_row_stride, 1),
        "matmul: destination too small"
    );
    assert!(
        fits(lhs.data.len(), m, k, lhs.row_stride, lhs.col_stride),
        "matmul: lhs out of bounds"
    );
    assert!(
        fits(rhs.data.len(), k, n, rhs.row_stride, rhs.col_stride),
        "matmul: rhs out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(T::ZERO);
            }
        }
        return;
    }
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above prove every index the views describe lies inside
    // its slice; `dst` is borrowed mutably, so it cannot alias `lhs` or `rhs`;
    // strides fit in isize; T is f32 or f64, which `gemm` supports.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_the_definition() {
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let b = [7.0f64, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3x2
        let mut c = [0.0f64; 4];
        matmul(
            &mut c,
            2,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            false,
            1,
        );
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);
        // Transposed view of b's transpose is b.
        let bt = [7.0f64, 9.0, 11.0, 8.0, 10.0, 12.0]; // 2x3 = bᵀ
        let mut d = [1.0f64; 4];
        matmul(
            &mut d,
            2,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&bt, 2, 3).t(),
            true,
            1,
        );
        assert_eq!(d, [59.0, 65.0, 140.0, 155.0]);
    }
}
