//! NumPy's `.npy` and `.npz` files, read: float arrays (f2, f4, f8, either byte order) widened
//! to f32, and text arrays (`U`, `S`) as strings. The format is NumPy's own
//! (numpy.lib.format): a magic string, a version, a header that is a Python dict literal
//! (`descr`, `fortran_order`, `shape`), then the raw data in C order. An `.npz` is a zip of
//! `.npy` files, stored or deflated (`np.savez_compressed`).

use crate::error::{Error, Result};

/// One array's values.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// Float values in C order, widened to f32.
    Float(Vec<f32>),
    /// A text array's strings in C order (trailing NULs removed).
    Text(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn bad(m: impl std::fmt::Display) -> Error {
    Error::Input(format!("npy file: {m}"))
}

/// The value of `key` in the header's dict literal, as the text up to the next top-level comma.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .ok_or_else(|| bad(format!("the header has no '{key}': {header}")))?;
    let rest = header[at + key.len() + 2..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad(format!("malformed header: {header}")))?
        .trim_start();
    // The shape is a tuple, whose commas are inside the parentheses.
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .ok_or_else(|| bad(format!("malformed header: {header}")))?;
    Ok(rest[..end].trim())
}

/// The element type named by a `descr` such as `<f4`, `>f8`, `<U12` or `|S5`.
#[derive(Debug, Clone, Copy)]
enum Elem {
    Float {
        size: usize,
        big_endian: bool,
    },
    /// UTF-32 code units, `chars` per element.
    Unicode {
        chars: usize,
        big_endian: bool,
    },
    Bytes {
        len: usize,
    },
}

fn parse_descr(descr: &str) -> Result<Elem> {
    let d = descr.trim_matches(|c| c == '\'' || c == '"');
    let (order, rest) = d.split_at(d.len().min(1));
    let big_endian = order == ">";
    if !matches!(order, "<" | ">" | "|" | "=") {
        return Err(bad(format!("dtype '{d}' is not a simple NumPy dtype")));
    }
    let (kind, size) = rest.split_at(rest.len().min(1));
    if kind == "O" {
        return Err(bad(
            "an object array (pickled Python objects) cannot be read safely; save strings with np.array(list_of_str) and numbers as floats",
        ));
    }
    let size: usize = size
        .parse()
        .map_err(|_| bad(format!("dtype '{d}' is not a simple NumPy dtype")))?;
    match (kind, size) {
        ("f", 2 | 4 | 8) => Ok(Elem::Float { size, big_endian }),
        ("U", n) => Ok(Elem::Unicode {
            chars: n,
            big_endian,
        }),
        ("S", n) => Ok(Elem::Bytes { len: n }),
        _ => Err(bad(format!(
            "dtype '{d}' is not read: activations must be float16, float32 or float64, names unicode or bytes"
        ))),
    }
}

/// Reads one `.npy` file.
pub fn read_npy(bytes: &[u8]) -> Result<NpyArray> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err(bad("not an .npy file (no \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("format version {v} is not known"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("the file ends inside its header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("the header is not text"))?;
    if header_field(header, "fortran_order")? != "False" {
        return Err(bad(
            "the array is in Fortran order; save np.ascontiguousarray(array) instead",
        ));
    }
    let elem = parse_descr(header_field(header, "descr")?)?;
    let shape_text = header_field(header, "shape")?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("shape {shape_text} is not a tuple of sizes")))?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let elem_size = match elem {
        Elem::Float { size, .. } => size,
        Elem::Unicode { chars, .. } => 4 * chars,
        Elem::Bytes { len } => len,
    };
    if body.len() != count * elem_size {
        return Err(bad(format!(
            "shape {shape:?} needs {} bytes of data but the file holds {}",
            count * elem_size,
            body.len()
        )));
    }
    let data = match elem {
        Elem::Float { size, big_endian } => NpyData::Float(
            body.chunks_exact(size)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..size].copy_from_slice(c);
                    if big_endian {
                        b[..size].reverse();
                    }
                    match size {
                        2 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                        4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        _ => f64::from_le_bytes(b) as f32,
                    }
                })
                .collect(),
        ),
        Elem::Unicode { chars, big_endian } => NpyData::Text(
            body.chunks_exact((4 * chars).max(1))
                .map(|c| {
                    c.chunks_exact(4)
                        .map(|u| {
                            let u = [u[0], u[1], u[2], u[3]];
                            if big_endian {
                                u32::from_be_bytes(u)
                            } else {
                                u32::from_le_bytes(u)
                            }
                        })
                        .take_while(|&u| u != 0)
                        .map(|u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect()
                })
                .take(count)
                .collect(),
        ),
        Elem::Bytes { len } => NpyData::Text(
            body.chunks_exact(len.max(1))
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).into_owned()
                })
                .take(count)
                .collect(),
        ),
    };
    Ok(NpyArray { shape, data })
}

/// Reads every array of an `.npz` file, by name (the member's name without `.npy`), in the
/// archive's order.
pub fn read_npz(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>> {
    use std::io::Read;
    let bad_zip = |m: String| Error::Input(format!("npz file: {m}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad_zip(format!("not a zip archive: {e}")))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| bad_zip(e.to_string()))?;
        let name = member
            .name()
            .map_err(|e| bad_zip(e.to_string()))?
            .to_string();
        let mut buf = Vec::new();
        member
            .read_to_end(&mut buf)
            .map_err(|e| bad_zip(format!("{name}: {e}")))?;
        let array = read_npy(&buf).map_err(|e| match e {
            Error::Input(m) => bad_zip(format!("{name}: {m}")),
            e => e,
        })?;
        out.push((name.trim_end_matches(".npy").to_string(), array));
    }
    Ok(out)
}
