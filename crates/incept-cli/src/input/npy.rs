//! Just enough of NumPy's `.npy` format (version 1–3) to read a C-ordered
//! float or int64 array.

use anyhow::{Context, Result, bail};
use incept_ir::{ByteOrder, DType, Tensor};

/// Parses a `.npy` file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Tensor> {
    let major = *bytes.get(6).context("truncated header")?;
    let (len, start) = match major {
        1 => {
            let b = bytes.get(8..10).context("truncated header")?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10)
        }
        2 | 3 => {
            let b = bytes.get(8..12).context("truncated header")?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes.get(start..start.saturating_add(len)).context("truncated header")?;
    let header = std::str::from_utf8(header).context("header is not text")?;
    let field = |name: &str| -> Result<&str> {
        let at = header.find(&format!("'{name}'")).with_context(|| format!("header has no '{name}'"))?;
        Ok(header[at + name.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    let descr = descr.get(1..4).context("bad descr")?;
    let (dtype, order) = match descr {
        "<f4" => (DType::F32, ByteOrder::Little),
        ">f4" => (DType::F32, ByteOrder::Big),
        "<f8" => (DType::F64, ByteOrder::Little),
        ">f8" => (DType::F64, ByteOrder::Big),
        "<f2" => (DType::F16, ByteOrder::Little),
        "<i8" => (DType::I64, ByteOrder::Little),
        other => bail!("dtype {other} is not supported (f2, f4, f8, i8)"),
    };
    if field("fortran_order")?.starts_with("True") {
        bail!("Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
    }
    let shape = field("shape")?;
    let shape = shape.get(1..shape.find(')').context("bad shape")?).context("bad shape")?;
    let dims = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("bad dimension `{s}`")))
        .collect::<Result<Vec<_>>>()?;
    let data = &bytes[start + len..];
    Ok(Tensor::from_bytes(dtype, dims, data, order)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((h.len() as u16).to_le_bytes());
        v.extend(h.as_bytes());
        v.extend(data);
        v
    }

    #[test]
    fn reads_c_ordered_floats() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = parse(&npy("<f4", "(2, 3)", &data)).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.as_f32().unwrap()[5], 6.0);
        let t = parse(&npy("<f8", "(3,)", &[0; 24])).unwrap();
        assert_eq!(t.shape(), &[3]);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(parse(&npy("<i4", "(1,)", &[0; 4])).is_err());
        assert!(parse(&npy("<f4", "(2,)", &[0; 4])).is_err());
        assert!(parse(b"\x93NUMPY\x01\x00").is_err());
    }
}
