//! NumPy `.npy` files: reading and writing 2-D float matrices (precomputed embeddings).

use std::path::Path;

use half::f16;
use ndarray::Array2;

use crate::error::{EngineError, Result};

/// Parses `.npy` bytes holding a 2-D little-endian float array (`<f4`, `<f2` or `<f8`,
/// C order) into an `f32` matrix.
pub fn parse_f32_matrix(bytes: &[u8]) -> std::result::Result<Array2<f32>, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(format!("unsupported .npy version {major}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "non-UTF-8 .npy header")?;
    let descr = dict_value(header, "descr").ok_or("no descr in .npy header")?;
    let fortran = dict_value(header, "fortran_order").ok_or("no fortran_order in .npy header")?;
    let shape = dict_value(header, "shape").ok_or("no shape in .npy header")?;
    if fortran.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let dims: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape}")))
        .collect::<std::result::Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("expected a 2-D array, got shape {dims:?}"));
    };
    let data = &bytes[start + header_len..];
    let descr = quoted(descr).ok_or("descr is not a quoted string")?;
    let count = rows.checked_mul(cols).ok_or("shape overflows")?;
    let values: Vec<f32> = match descr {
        "<f4" => take(data, count, 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "<f2" => take(data, count, 2)?
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "<f8" => take(data, count, 8)?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(format!(
                "unsupported dtype {other} (expected <f4, <f2 or <f8)"
            ));
        }
    };
    Array2::from_shape_vec((rows, cols), values).map_err(|e| e.to_string())
}

fn take(data: &[u8], count: usize, width: usize) -> std::result::Result<&[u8], String> {
    let need = count * width;
    data.get(..need).ok_or_else(|| {
        format!(
            "truncated .npy data: need {need} bytes, have {}",
            data.len()
        )
    })
}

/// The raw text of `'key': value` in a .npy header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

/// The contents of the quoted string at the start of `s`.
fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &s[1..];
    rest.find(q).map(|end| &rest[..end])
}

/// Reads a 2-D float `.npy` file.
pub fn read_f32_matrix(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    parse_f32_matrix(&bytes)
        .map_err(|e| EngineError::Vocabulary(format!("{}: {e}", path.display())))
}

/// Serialises an `f32` matrix as a version-1 `.npy` file.
pub fn to_npy_bytes(m: &Array2<f32>) -> Vec<u8> {
    let (r, c) = m.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({r}, {c}), }}");
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + r * c * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in m.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Array2::from_shape_fn((3, 5), |(i, j)| i as f32 - j as f32 * 0.5);
        let bytes = to_npy_bytes(&m);
        assert_eq!((bytes.len() - 3 * 5 * 4) % 64, 0);
        assert_eq!(parse_f32_matrix(&bytes).unwrap(), m);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(parse_f32_matrix(b"hello").is_err());
        let m = Array2::<f32>::zeros((2, 2));
        let bytes = to_npy_bytes(&m);
        assert!(parse_f32_matrix(&bytes[..bytes.len() - 1]).is_err());
        let mut one_d = bytes.clone();
        let at = one_d.windows(6).position(|w| w == b"(2, 2)").unwrap();
        one_d[at..at + 6].copy_from_slice(b"(4,)  ");
        let err = parse_f32_matrix(&one_d).unwrap_err();
        assert!(err.contains("2-D"), "{err}");
    }
}
