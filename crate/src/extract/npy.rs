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

/// An `.npy` file's header: the array's shape and element type, and where its data starts.
#[derive(Debug, Clone)]
struct Header {
    shape: Vec<usize>,
    elem: Elem,
    data_start: usize,
}

/// Bytes of the file's start that hold the whole header (the fixed part gives its length).
fn header_len(bytes: &[u8]) -> Result<(usize, usize)> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err(bad("not an .npy file (no \\x93NUMPY magic)"));
    }
    match bytes[6] {
        1 => Ok((u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)),
        2 | 3 if bytes.len() >= 12 => Ok((
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )),
        v => Err(bad(format!("format version {v} is not known"))),
    }
}

fn parse_header(bytes: &[u8]) -> Result<Header> {
    let (header_len, start) = header_len(bytes)?;
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
    Ok(Header {
        shape,
        elem,
        data_start: start + header_len,
    })
}

fn elem_size(elem: Elem) -> usize {
    match elem {
        Elem::Float { size, .. } => size,
        Elem::Unicode { chars, .. } => 4 * chars,
        Elem::Bytes { len } => len,
    }
}

/// A float `.npy` array's layout in its file, from the header alone: for reading it a layer at
/// a time (the file's length is checked against the shape, as [`read_npy`] checks it).
#[derive(Debug, Clone)]
pub struct FloatArrayInFile {
    pub shape: Vec<usize>,
    pub encoding: NpyFloat,
    pub data_start: u64,
}

/// NumPy's float16, float32 or float64, in either byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpyFloat {
    pub size: usize,
    pub big_endian: bool,
}

impl NpyFloat {
    /// Decodes `bytes` (whole values) into `out`, widened or narrowed to f32.
    pub fn decode_into(self, bytes: &[u8], out: &mut [f32]) {
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(self.size)) {
            let mut b = [0u8; 8];
            b[..self.size].copy_from_slice(c);
            if self.big_endian {
                b[..self.size].reverse();
            }
            *o = match self.size {
                2 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                _ => f64::from_le_bytes(b) as f32,
            };
        }
    }
}

/// The header of the `.npy` file at `path`, when it holds floats (`None` for a text array,
/// which is read whole); errors as [`read_npy`] gives them.
#[cfg(not(target_arch = "wasm32"))]
pub fn float_array_in_file(path: &std::path::Path) -> Result<Option<FloatArrayInFile>> {
    use std::io::Read;
    let io = |e| Error::io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut fixed = Vec::new();
    (&mut f).take(12).read_to_end(&mut fixed).map_err(io)?;
    let (len, start) = header_len(&fixed)?;
    let mut head = fixed;
    (&mut f)
        .take((start + len) as u64 - head.len() as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let h = parse_header(&head)?;
    let Elem::Float { size, big_endian } = h.elem else {
        return Ok(None);
    };
    check_body_len(&h, file_len - h.data_start as u64)?;
    Ok(Some(FloatArrayInFile {
        shape: h.shape,
        encoding: NpyFloat { size, big_endian },
        data_start: h.data_start as u64,
    }))
}

fn check_body_len(h: &Header, body_len: u64) -> Result<()> {
    let need = h.shape.iter().product::<usize>() as u64 * elem_size(h.elem) as u64;
    if body_len != need {
        return Err(bad(format!(
            "shape {:?} needs {need} bytes of data but the file holds {body_len}",
            h.shape
        )));
    }
    Ok(())
}

/// Reads one `.npy` file.
pub fn read_npy(bytes: &[u8]) -> Result<NpyArray> {
    let h = parse_header(bytes)?;
    check_body_len(&h, (bytes.len() - h.data_start) as u64)?;
    let count: usize = h.shape.iter().product();
    let body = &bytes[h.data_start..];
    let (shape, elem) = (h.shape, h.elem);
    let data = match elem {
        Elem::Float { size, big_endian } => {
            let mut out = vec![0f32; count];
            NpyFloat { size, big_endian }.decode_into(body, &mut out);
            NpyData::Float(out)
        }
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
