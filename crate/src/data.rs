//! Datasets: entity names (and, later, their targets) from CSV.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Header names accepted for the entity name column, case-insensitively.
const NAME_ALIASES: [&str; 6] = ["name", "entity", "place", "city", "title", "label"];

/// Reads entity names from CSV bytes: the column named like a name (see `NAME_ALIASES`), or
/// the only column. Empty files and files without such a column are errors that say so.
pub fn read_names_csv(bytes: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Dataset(format!("the file is not UTF-8 text ({e})")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::Dataset("the file is empty".into()));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Dataset(format!("header line: {e}")))?
        .clone();
    let column = headers
        .iter()
        .position(|h| NAME_ALIASES.contains(&h.trim().to_lowercase().as_str()))
        .or(if headers.len() == 1 {
            Some(usize::MAX)
        } else {
            None
        })
        .ok_or_else(|| {
            Error::Dataset(format!(
                "no name column: the header is {:?}; name one column 'name'",
                headers.iter().collect::<Vec<_>>()
            ))
        })?;
    let mut names = Vec::new();
    if column == usize::MAX {
        // A single headerless column: the first line is a name too.
        names.push(headers[0].trim().to_string());
    }
    let column = if column == usize::MAX { 0 } else { column };
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::Dataset(format!("line {}: {e}", i + 2)))?;
        let name = record.get(column).unwrap_or("").trim();
        if name.is_empty() {
            return Err(Error::Dataset(format!("line {}: empty name", i + 2)));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(Error::Dataset("the file has a header but no rows".into()));
    }
    Ok(names)
}

/// A stable hash of an entity list (names joined by newlines).
pub fn names_hash(names: &[String]) -> String {
    let mut h = Sha256::new();
    for n in names {
        h.update(n.as_bytes());
        h.update(b"\n");
    }
    crate::gguf::hex(&h.finalize())
}
