//! NumPy `.npy` files: reading and writing 2-D float matrices (precomputed embeddings).

use std::path::Path;

use half::f16;
use ndarray::Array2;

use crate::engine::error::{EngineError, Result};

/// Parses `.npy` bytes holding a 2-D little-endian float array (`<f4`, `<f2` or `<f8`,
/// C order) into an `f32` matrix.
pub fn parse_f32_matrix(bytes: &[u8]) -> std::result::Result<Array2<f32>, String> {
    let (header, data) = split_header(bytes)?;
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
    let need = count
        .checked_mul(width)
        .ok_or_else(|| format!("a shape of {count} items of {width} bytes overflows"))?;
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
    let mut out = npy_header("<f4", &format!("({r}, {c})"), r * c * 4);
    for v in m.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Serialises strings as a 1-D NumPy unicode array (`<U{n}`, UTF-32LE, zero-padded).
pub fn strings_to_npy_bytes(items: &[String]) -> Vec<u8> {
    let width = items
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = npy_header(
        &format!("<U{width}"),
        &format!("({},)", items.len()),
        items.len() * width * 4,
    );
    for s in items {
        let n = s.chars().count();
        for ch in s.chars() {
            out.extend_from_slice(&(ch as u32).to_le_bytes());
        }
        out.extend(std::iter::repeat_n(0u8, (width - n) * 4));
    }
    out
}

/// Parses a 1-D NumPy unicode array (`<U{n}`) into strings.
pub fn parse_strings(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let (header, data) = split_header(bytes)?;
    let descr = quoted(dict_value(header, "descr").ok_or("no descr")?).ok_or("bad descr")?;
    let width: usize = descr
        .strip_prefix("<U")
        .and_then(|w| w.parse().ok())
        .filter(|&w| w > 0)
        .ok_or_else(|| format!("expected a unicode array (<U..), got {descr}"))?;
    let shape = dict_value(header, "shape").ok_or("no shape")?;
    let count: usize = shape
        .trim_start_matches('(')
        .split([',', ')'])
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("expected a 1-D array, got shape {shape}"))?;
    let chars = count
        .checked_mul(width)
        .ok_or_else(|| format!("a shape of {count} strings of {width} characters overflows"))?;
    let data = take(data, chars, 4)?;
    data.chunks_exact(width * 4)
        .map(|item| {
            item.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&c| c != 0)
                .map(|c| char::from_u32(c).ok_or_else(|| format!("invalid code point {c}")))
                .collect()
        })
        .collect()
}

fn split_header(bytes: &[u8]) -> std::result::Result<(&str, &[u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "non-UTF-8 .npy header")?;
    Ok((header, &bytes[start + len..]))
}

fn npy_header(descr: &str, shape: &str, data_len: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// A vocabulary file: `names` plus `joint` `[K, D]` (adapted) and/or `text` `[K, T]`.
#[derive(Debug, Clone, Default)]
pub struct VocabArchive {
    pub names: Vec<String>,
    pub joint: Option<Array2<f32>>,
    pub text: Option<Array2<f32>>,
}

/// Writes a `.npz` (an uncompressed zip of `.npy` members), as `numpy.savez` does.
pub fn write_npz(path: &Path, archive: &VocabArchive) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| EngineError::io(path, e);
    let zerr = |e: zip::result::ZipError| EngineError::io(path, std::io::Error::other(e));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut members = vec![("names.npy", strings_to_npy_bytes(&archive.names))];
    if let Some(j) = &archive.joint {
        members.push(("joint.npy", to_npy_bytes(j)));
    }
    if let Some(t) = &archive.text {
        members.push(("text.npy", to_npy_bytes(t)));
    }
    for (name, bytes) in members {
        zip.start_file(name, opts).map_err(zerr)?;
        zip.write_all(&bytes).map_err(io)?;
    }
    zip.finish().map_err(zerr)?;
    Ok(())
}

/// Reads a `.npz` written by `write_npz` or `numpy.savez(names=..., joint=...)`.
pub fn read_npz(path: &Path) -> Result<VocabArchive> {
    use std::io::Read;
    let bad = |m: String| EngineError::Vocabulary(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a .npz archive: {e}")))?;
    let mut member = |name: &str| -> Result<Option<Vec<u8>>> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| bad(e.to_string()))?;
        Ok(Some(buf))
    };
    let names = member("names.npy")?.ok_or_else(|| bad("no `names` array".into()))?;
    let names = parse_strings(&names).map_err(&bad)?;
    let joint = member("joint.npy")?
        .map(|b| parse_f32_matrix(&b))
        .transpose()
        .map_err(|e| bad(format!("joint: {e}")))?;
    let text = member("text.npy")?
        .map(|b| parse_f32_matrix(&b))
        .transpose()
        .map_err(|e| bad(format!("text: {e}")))?;
    if joint.is_none() && text.is_none() {
        return Err(bad("neither `joint` nor `text` array".into()));
    }
    Ok(VocabArchive { names, joint, text })
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
    fn strings_and_npz_round_trip() {
        let names = vec!["dog".to_string(), "café ☕".to_string(), "x".to_string()];
        assert_eq!(parse_strings(&strings_to_npy_bytes(&names)).unwrap(), names);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npz");
        let joint = Array2::from_shape_fn((3, 2), |(i, j)| (i + j) as f32);
        let archive = VocabArchive {
            names: names.clone(),
            joint: Some(joint.clone()),
            text: None,
        };
        write_npz(&path, &archive).unwrap();
        let back = read_npz(&path).unwrap();
        assert_eq!(back.names, names);
        assert_eq!(back.joint, Some(joint));
        assert!(back.text.is_none());
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

    #[test]
    fn shapes_whose_size_overflows_are_refused() {
        // Found by reading the fuzz targets: `count * width` overflowed (a panic in debug builds).
        let mut bytes = npy_header("<U4", "(4611686018427387904,)", 8);
        bytes.extend_from_slice(&[0; 8]);
        let err = parse_strings(&bytes).unwrap_err();
        assert!(err.contains("overflows"), "{err}");
        assert!(
            take(&[0; 8], usize::MAX / 2, 4)
                .unwrap_err()
                .contains("overflows")
        );
    }

    #[test]
    fn zero_width_unicode_arrays_are_refused() {
        // Found by fuzzing (fuzz target vocab_npy): `<U0` panicked in `chunks_exact(0)`.
        let mut bytes = npy_header("<U0", "(2,)", 8);
        bytes.extend_from_slice(&[0; 8]);
        let err = parse_strings(&bytes).unwrap_err();
        assert!(err.contains("<U0"), "{err}");
    }
}
