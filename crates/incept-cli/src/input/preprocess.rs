//! torchvision's Inception V3 preprocessing of an image: resize the short
//! side to 342 with PIL's antialiased bilinear filter, center-crop 299,
//! scale to [0, 1] and normalise.
//!
//! The resize follows Pillow's `ImagingResample` (separable triangle filter
//! widened by the scale factor, 8-bit rounding between the horizontal and
//! vertical passes), which is what `transforms.Resize` runs on PIL images.

use std::path::Path;

use anyhow::{Context, Result, bail};
use incept_ir::Tensor;

/// How pixel values are normalised after scaling to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Normalize {
    /// `(x − mean) / std` with ImageNet's statistics (torchvision's weights).
    Imagenet,
    /// `(x − 0.5) / 0.5`, the [-1, 1] range `transform_input` converts to.
    Inception,
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Loads `path` and returns `[3, crop, crop]` float32 data.
pub fn load(path: &Path, resize: usize, crop: usize, norm: Normalize) -> Result<Vec<f32>> {
    let img =
        image::open(path).with_context(|| format!("cannot decode image {}", path.display()))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        bail!("{}: the image is empty", path.display());
    }
    // torchvision: the short side becomes `resize`, the long side int(resize * long / short).
    let (nw, nh) = if w <= h {
        (resize, resize * h / w)
    } else {
        (resize * w / h, resize)
    };
    if nw < crop || nh < crop {
        bail!(
            "{}: resized to {nw}x{nh}, smaller than the {crop}x{crop} crop",
            path.display()
        );
    }
    let resized = resample(rgb.as_raw(), (w, h), (nw, nh));
    let top = crop_offset(nh, crop);
    let left = crop_offset(nw, crop);
    let mut out = vec![0f32; 3 * crop * crop];
    for y in 0..crop {
        for x in 0..crop {
            let p = ((top + y) * nw + left + x) * 3;
            for c in 0..3 {
                let v = f32::from(resized[p + c]) / 255.0;
                out[(c * crop + y) * crop + x] = match norm {
                    Normalize::Imagenet => (v - MEAN[c]) / STD[c],
                    Normalize::Inception => (v - 0.5) / 0.5,
                };
            }
        }
    }
    Ok(out)
}

/// torchvision's center-crop offset, `int(round((size - crop) / 2.0))`.
///
/// Python's `round` rounds halves to even, so an odd margin of 157 (456 → 299)
/// gives 78, not 79: `f64::round` (halves away from zero) would shift the crop
/// window by one pixel.
fn crop_offset(size: usize, crop: usize) -> usize {
    ((size - crop) as f64 / 2.0).round_ties_even() as usize
}

/// Stacks preprocessed images into a `[N, 3, crop, crop]` batch.
pub fn batch(
    paths: &[std::path::PathBuf],
    resize: usize,
    crop: usize,
    norm: Normalize,
) -> Result<Tensor> {
    let mut data = Vec::with_capacity(paths.len() * 3 * crop * crop);
    for p in paths {
        data.extend(load(p, resize, crop, norm)?);
    }
    Ok(Tensor::from_f32(vec![paths.len(), 3, crop, crop], data)?)
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index and the fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear support 1.0, widened when downscaling
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = ((center + support + 0.5).floor() as usize).min(in_size);
            let mut w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) / filter_scale).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            let fixed = w
                .iter()
                .map(|v| {
                    let s = v * f64::from(1u32 << PRECISION_BITS);
                    (if s < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved RGB8 `src` of `(w, h)` to `(nw, nh)`: horizontal pass,
/// then vertical, rounding to 8 bits in between, as Pillow does.
fn resample(src: &[u8], (w, h): (usize, usize), (nw, nh): (usize, usize)) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let cx = coefficients(w, nw);
    let mut tmp = vec![0u8; nw * h * 3];
    for y in 0..h {
        for (x, (x0, ws)) in cx.iter().enumerate() {
            for c in 0..3 {
                let mut acc = half;
                for (k, &wk) in ws.iter().enumerate() {
                    acc += i64::from(src[(y * w + x0 + k) * 3 + c]) * i64::from(wk);
                }
                tmp[(y * nw + x) * 3 + c] = clip8(acc);
            }
        }
    }
    let cy = coefficients(h, nh);
    let mut out = vec![0u8; nw * nh * 3];
    for (y, (y0, ws)) in cy.iter().enumerate() {
        for x in 0..nw {
            for c in 0..3 {
                let mut acc = half;
                for (k, &wk) in ws.iter().enumerate() {
                    acc += i64::from(tmp[((y0 + k) * nw + x) * 3 + c]) * i64::from(wk);
                }
                out[(y * nw + x) * 3 + c] = clip8(acc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_a_constant_image_keeps_it_constant() {
        let src = vec![77u8; 10 * 7 * 3];
        let out = resample(&src, (10, 7), (4, 3));
        assert!(out.iter().all(|&v| v == 77));
    }

    #[test]
    fn crop_offset_rounds_halves_to_even_as_python_does() {
        // Python: int(round(157 / 2.0)) == 78, round(43 / 2.0) == 22, round(0.5) == 0,
        // round(1.5) == 2 (torchvision.transforms.functional.center_crop).
        assert_eq!(crop_offset(456, 299), 78);
        assert_eq!(crop_offset(342, 299), 22);
        assert_eq!(crop_offset(300, 299), 0);
        assert_eq!(crop_offset(302, 299), 2);
        assert_eq!(crop_offset(299, 299), 0);
        assert_eq!(crop_offset(301, 299), 1);
    }

    #[test]
    fn weights_sum_to_one() {
        for (i, o) in [(500, 342), (342, 500), (13, 13)] {
            for (_, ws) in coefficients(i, o) {
                let s: i64 = ws.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= ws.len() as i64,
                    "{i}->{o}: {s}"
                );
            }
        }
    }
}
