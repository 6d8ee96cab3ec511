//! Datasets: entities with a space target (latitude, longitude) or a time target (year), read
//! from CSV bytes, plus the built-in sets compiled into the crate (see `datasets/README.md`).
//!
//! Nothing here touches the file system: callers hand in bytes (the CLI reads files, the browser
//! hands in an upload), so the same code runs natively and in wasm32.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Header names accepted for the entity name column, case-insensitively.
const NAME_ALIASES: [&str; 6] = ["name", "entity", "place", "city", "title", "label"];
/// More name headers accepted by [`read_dataset_csv`] (after `NAME_ALIASES`).
const MORE_NAME_ALIASES: [&str; 5] = ["entity_name", "place_name", "town", "person", "event"];
const LATITUDE_ALIASES: [&str; 2] = ["latitude", "lat"];
const LONGITUDE_ALIASES: [&str; 4] = ["longitude", "lon", "lng", "long"];
const YEAR_ALIASES: [&str; 2] = ["year", "date"];
const IS_TEST_HEADER: &str = "is_test";
/// How many row problems an error message lists before it says "and N more".
const MAX_LISTED_PROBLEMS: usize = 20;

/// Reads entity names from CSV bytes: the column named like a name (see `NAME_ALIASES`), or
/// the only column. Empty files and files without such a column are errors that say so.
pub fn read_names_csv(bytes: &[u8]) -> Result<Vec<String>> {
    let text = utf8_text(bytes)?;
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

/// Reads a plain list of names, one per line (no CSV quoting: commas stay in the name, as in
/// "Cambridge, United Kingdom"). Trailing blank lines are ignored; a blank line between names is
/// an error naming its line.
pub fn read_names_list(bytes: &[u8]) -> Result<Vec<String>> {
    let text = utf8_text(bytes)?;
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let Some(last) = last else {
        return Err(Error::Dataset("the file is empty".into()));
    };
    lines[..=last]
        .iter()
        .enumerate()
        .map(|(i, l)| match l.trim() {
            "" => Err(Error::Dataset(format!("line {}: empty name", i + 1))),
            name => Ok(name.to_string()),
        })
        .collect()
}

/// Names from a file: CSV (a name column) when the file name ends in `.csv`, else one per line.
pub fn read_names(file_name: &str, bytes: &[u8]) -> Result<Vec<String>> {
    if file_name.to_lowercase().ends_with(".csv") {
        read_names_csv(bytes)
    } else {
        read_names_list(bytes)
    }
}

/// A stable hash of an entity list (names joined by newlines).
pub fn names_hash(names: &[String]) -> String {
    let mut h = Sha256::new();
    for n in names {
        h.update(n.as_bytes());
        h.update(b"\n");
    }
    crate::model::gguf::hex(&h.finalize())
}

/// What a dataset's targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `[latitude, longitude]` in degrees.
    Space,
    /// `[year]`; negative years are BC (44 BC is -44; there is no year 0).
    Time,
}

impl TargetKind {
    /// Names of the target columns, in the order of each `Dataset::targets` row.
    pub fn target_names(self) -> &'static [&'static str] {
        match self {
            TargetKind::Space => &["latitude", "longitude"],
            TargetKind::Time => &["year"],
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Space => "space",
            TargetKind::Time => "time",
        })
    }
}

/// Most distinct values a column may have to be offered for block hold-out.
pub const MAX_BLOCKS: usize = 50;

/// Entities with their targets, groups and optional fixed test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub kind: TargetKind,
    pub names: Vec<String>,
    /// Space: [latitude, longitude] per entity (degrees); Time: [year].
    pub targets: Vec<Vec<f64>>,
    /// Every other column, usable as a group for block hold-out (country, continent, century…), keyed by lower-case header.
    pub groups: BTreeMap<String, Vec<String>>,
    /// From an `is_test` column when present (true/false/1/0/yes/no).
    pub is_test: Option<Vec<bool>>,
}

impl Dataset {
    /// Number of entities.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Columns that make sense for block hold-out (`group:COLUMN`): those with 2 to
    /// [`MAX_BLOCKS`] distinct values (continent, century — not population or a date).
    pub fn block_columns(&self) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, values)| {
                let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
                (2..=MAX_BLOCKS).contains(&distinct.len())
            })
            .map(|(column, _)| column.as_str())
            .collect()
    }

    /// Targets flattened row-major: `len() * kind.target_names().len()` values.
    pub fn flat_targets(&self) -> Vec<f64> {
        self.targets.iter().flatten().copied().collect()
    }
}

/// A data row that was not used, with its line as a text editor shows it (header = line 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What [`read_dataset_csv`] does with rows it cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRows {
    /// Drop them and return them as problems.
    Skip,
    /// Fail, listing them.
    Stop,
}

/// Which column plays which part.
struct Columns {
    name: usize,
    kind: TargetKind,
    /// Space: latitude, longitude; Time: year.
    targets: Vec<usize>,
    is_test: Option<usize>,
    /// (lower-case header, column) for every other column.
    groups: Vec<(String, usize)>,
}

/// What a CSV file holds: a dataset with targets, or names alone (enough to extract, not to
/// fit a probe).
#[derive(Debug, Clone)]
pub enum CsvContents {
    Dataset {
        dataset: Dataset,
        /// Rows skipped under [`OnBadRows::Skip`].
        problems: Vec<RowProblem>,
    },
    NamesOnly {
        names: Vec<String>,
        /// Why the file is not a dataset: which target columns it lacks.
        why: String,
    },
}

/// Reads a CSV as a dataset ([`read_dataset_csv`]) when it has target columns, else as a list
/// of names ([`read_names_csv`]). Every other problem is an error.
pub fn read_csv(name: &str, bytes: &[u8], on_bad: OnBadRows) -> Result<CsvContents> {
    match read_dataset_csv(name, bytes, on_bad) {
        Ok((dataset, problems)) => Ok(CsvContents::Dataset { dataset, problems }),
        Err(Error::NoTargets(why)) => match read_names_csv(bytes) {
            Ok(names) => Ok(CsvContents::NamesOnly { names, why }),
            Err(_) => Err(Error::NoTargets(why)),
        },
        Err(e) => Err(e),
    }
}

/// Reads a dataset from CSV bytes.
///
/// Headers are matched case-insensitively: the name column is `name`, `entity`, `place`,
/// `city`, `title`, `label`, `entity_name`, `place_name`, `town`, `person` or `event`; a
/// dataset is *space* when it has `latitude`/`lat` and `longitude`/`lon`/`lng`/`long` columns
/// (a year column is then just a group) and *time* when it has a `year` or `date` column.
/// Years: `1969`, `-44`, `44 BC`, `44 BCE`, `AD 800`, `c. 1500`, `1969.0`, and dates such as
/// `1969-07-20`, `1969-07-20T20:17:00Z`, `20/07/1969`, `July 20, 1969` or `20 July 1969` give
/// their year; negative years count BC (historical numbering: -44 is 44 BC, year 0 is refused).
/// An `is_test` column (true/false, 1/0, yes/no, y/n, t/f; empty = false) becomes
/// `Dataset::is_test`; every other column becomes a group keyed by its lower-case header.
///
/// A row is bad when it has the wrong number of fields, an empty name, the name and targets of
/// an earlier row (names compared exactly, after trimming spaces; the same name with other
/// targets is a homonym and is kept), or a missing, non-numeric or out-of-range latitude (±90),
/// longitude (±180) or year. Rows whose fields are all empty are ignored. With
/// [`OnBadRows::Stop`] any bad row makes this an error that lists them with their line numbers
/// (the header is line 1, and a quoted field with line breaks spans several lines); with
/// [`OnBadRows::Skip`] they are dropped and returned. Empty, header-only and headerless files,
/// non-UTF-8 bytes and files without the needed columns are errors that say so. A UTF-8 BOM
/// and CRLF line ends are fine; a first line with semicolons or tabs and no commas sets the
/// delimiter.
pub fn read_dataset_csv(
    name: &str,
    bytes: &[u8],
    on_bad: OnBadRows,
) -> Result<(Dataset, Vec<RowProblem>)> {
    let text = utf8_text(bytes)?;
    if text.trim().is_empty() {
        return Err(Error::Dataset("the file is empty".into()));
    }
    let delimiter = sniff_delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());

    let mut records = reader.records();
    let header = loop {
        match records.next() {
            None => return Err(Error::Dataset("the file is empty".into())),
            Some(Err(e)) => return Err(Error::Dataset(format!("reading the header line: {e}"))),
            Some(Ok(r)) if is_blank(&r) => continue,
            Some(Ok(r)) => break r,
        }
    };
    let mut lines = LineCounter::new(text);
    let header_line = lines.line_of(header.position());
    let headers: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let columns = find_columns(&headers, header_line)?;

    let mut names = Vec::new();
    let mut targets = Vec::new();
    let mut group_values: Vec<Vec<String>> = vec![Vec::new(); columns.groups.len()];
    let mut is_test = Vec::new();
    let mut first_line_of: HashMap<String, Vec<(usize, Vec<f64>)>> = HashMap::new();
    let mut problems = Vec::new();
    let mut data_rows = 0usize;

    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = lines.line_of(e.position());
                problems.push(RowProblem {
                    line,
                    message: format!("unreadable row: {e}"),
                });
                data_rows += 1;
                continue;
            }
        };
        if is_blank(&record) {
            continue;
        }
        data_rows += 1;
        let line = lines.line_of(record.position());
        match parse_row(&record, &columns, headers.len()) {
            Err(messages) => problems.push(RowProblem {
                line,
                message: messages.join("; "),
            }),
            Ok(row) => {
                // A name seen before with other targets is a homonym ("Springfield"): real
                // data, kept as its own entity. With the same targets it is the same row twice.
                let earlier = first_line_of.entry(row.name.clone()).or_default();
                if let Some((first, _)) = earlier.iter().find(|(_, t)| *t == row.targets) {
                    problems.push(RowProblem {
                        line,
                        message: format!(
                            "duplicate row: '{}' with the same {} as line {first}",
                            row.name,
                            if row.targets.len() == 1 {
                                "year"
                            } else {
                                "position"
                            }
                        ),
                    });
                    continue;
                }
                earlier.push((line, row.targets.clone()));
                names.push(row.name);
                targets.push(row.targets);
                is_test.push(row.is_test);
                for (values, &(_, col)) in group_values.iter_mut().zip(&columns.groups) {
                    values.push(cell_text(record.get(col).unwrap_or("")));
                }
            }
        }
    }

    if data_rows == 0 {
        return Err(Error::Dataset(format!(
            "the file has a header line ({}) but no data rows",
            header.iter().collect::<Vec<_>>().join(",")
        )));
    }
    if !problems.is_empty() && (on_bad == OnBadRows::Stop || names.is_empty()) {
        let what = if names.is_empty() {
            format!("no usable rows: all {data_rows} data rows have problems")
        } else {
            format!("{} of {data_rows} data rows have problems", problems.len())
        };
        return Err(Error::Dataset(format!(
            "{what}:\n{}",
            list_problems(&problems)
        )));
    }

    let groups = columns
        .groups
        .iter()
        .map(|(key, _)| key.clone())
        .zip(group_values)
        .collect();
    let dataset = Dataset {
        name: name.to_string(),
        kind: columns.kind,
        names,
        targets,
        groups,
        is_test: columns.is_test.map(|_| is_test),
    };
    Ok((dataset, problems))
}

/// "line 3: …" lines for the first `MAX_LISTED_PROBLEMS` problems, then a count of the rest.
pub fn list_problems(problems: &[RowProblem]) -> String {
    let mut out: Vec<String> = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|p| format!("  {p}"))
        .collect();
    if problems.len() > MAX_LISTED_PROBLEMS {
        out.push(format!(
            "  … and {} more",
            problems.len() - MAX_LISTED_PROBLEMS
        ));
    }
    out.join("\n")
}

/// A stable SHA-256 (hex) over a dataset's names and targets, in order: for each entity its
/// name's UTF-8 length (u64 LE) and bytes, its target count (u64 LE) and each target's f64 bits
/// (LE, -0.0 as 0.0). The dataset's name, groups and split do not enter it.
pub fn dataset_hash(dataset: &Dataset) -> String {
    let mut h = Sha256::new();
    for (name, target) in dataset.names.iter().zip(&dataset.targets) {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((target.len() as u64).to_le_bytes());
        for &v in target {
            h.update((v + 0.0).to_bits().to_le_bytes());
        }
    }
    crate::model::gguf::hex(&h.finalize())
}

/// Names of the built-in datasets, for [`builtin`] and [`load_builtin`].
pub const BUILTIN_NAMES: [&str; 4] = [
    "world-places",
    "world-places-200",
    "historical-years",
    "historical-years-200",
];

/// The CSV text of a built-in dataset (see `datasets/README.md` for sources and licences):
/// `world-places` (6,000 GeoNames places, 1,000 per inhabited continent), `world-places-200`
/// (its first 200 rows, continent-balanced), `historical-years` (people, events and works
/// dated by WordNet 3.1) and `historical-years-200` (a century-stratified subset).
pub fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "world-places" => Some(include_str!("../../datasets/world_places.csv")),
        "world-places-200" => Some(include_str!("../../datasets/world_places_200.csv")),
        "historical-years" => Some(include_str!("../../datasets/historical_years.csv")),
        "historical-years-200" => Some(include_str!("../../datasets/historical_years_200.csv")),
        _ => None,
    }
}

/// A built-in dataset, read with [`read_dataset_csv`] (built-ins have no bad rows).
pub fn load_builtin(name: &str) -> Result<Dataset> {
    let text = builtin(name).ok_or_else(|| {
        Error::Dataset(format!(
            "no built-in dataset '{name}'; built-in datasets are {}",
            BUILTIN_NAMES.join(", ")
        ))
    })?;
    read_dataset_csv(name, text.as_bytes(), OnBadRows::Stop).map(|(d, _)| d)
}

/// The year in a year or date cell, or why not. Negative years and `BC`/`BCE` count before
/// year 1 (historical numbering); year 0 is refused.
pub fn parse_year(cell: &str) -> std::result::Result<i64, String> {
    let original = cell.trim();
    if original.is_empty() {
        return Err("missing year".into());
    }
    let bad =
        || format!("year '{original}' is not a year or date (examples: 1969, 1969-07-20, 44 BC)");
    let mut s = original;
    // Era markers.
    let mut bc = false;
    for suffix in [" B.C.E.", " B.C.", " BCE", " BC", "BCE", "BC"] {
        if let Some(rest) = strip_suffix_ci(s, suffix) {
            bc = true;
            s = rest;
            break;
        }
    }
    if !bc {
        for suffix in [" A.D.", " AD", " C.E.", " CE"] {
            if let Some(rest) = strip_suffix_ci(s, suffix) {
                s = rest;
                break;
            }
        }
        for prefix in ["A.D. ", "AD "] {
            if let Some(rest) = strip_prefix_ci(s, prefix) {
                s = rest;
                break;
            }
        }
    }
    // "circa".
    let lower = s.trim().to_lowercase();
    let mut body = lower.as_str();
    for prefix in ["circa ", "ca. ", "ca ", "c. ", "c.", "~"] {
        if let Some(rest) = body.strip_prefix(prefix) {
            body = rest.trim_start();
            break;
        }
    }
    let body = body.trim();
    let year = year_from_body(body).ok_or_else(bad)?;
    let year = if bc {
        if year <= 0 {
            return Err(bad());
        }
        -year
    } else {
        year
    };
    if year == 0 {
        return Err(format!(
            "year '{original}' is year 0, which historical numbering does not have (1 BC is -1)"
        ));
    }
    Ok(year)
}

/// The year of a lower-case, era- and circa-free cell.
fn year_from_body(body: &str) -> Option<i64> {
    if body.is_empty() {
        return None;
    }
    // Plain integer, with sign: "1969", "-44", "+1969".
    if let Some(y) = parse_int(body) {
        return Some(y);
    }
    // A float with a zero fraction, as spreadsheets and pandas write integers: "1969.0".
    if let Some((int, frac)) = body.split_once('.') {
        if !frac.is_empty() && frac.bytes().all(|b| b == b'0') {
            if let Some(y) = parse_int(int) {
                return Some(y);
            }
        }
    }
    // ISO-like, year first: "1969-07-20", "1969-07", "-0044-03-15", "1969/07/20",
    // "1969-07-20t20:17:00z" (the cell is lower-cased).
    let (sign, rest) = match body.as_bytes()[0] {
        b'-' => (-1, &body[1..]),
        b'+' => (1, &body[1..]),
        _ => (1, body),
    };
    let date = rest.split(['t', ' ']).next().unwrap_or(rest);
    for sep in ['-', '/', '.'] {
        let parts: Vec<&str> = date.split(sep).collect();
        // "1969.5" is no date: dots only in full dates ("1969.07.20", "20.07.1969").
        let min_parts = if sep == '.' { 3 } else { 2 };
        if (min_parts..=3).contains(&parts.len()) && parts.iter().all(|p| is_digits(p)) {
            let (y, m, d) = (parts[0], parts[1], parts.get(2).copied());
            if y.len() >= 3 && valid_month_day(m, d) && (date.len() == rest.len() || sep == '-') {
                return parse_int(y).map(|y| sign * y);
            }
            // Year last: "20/07/1969", "07/20/1969", "20.07.1969".
            if sign == 1 && parts.len() == 3 && parts[2].len() == 4 && date.len() == rest.len() {
                let (a, b) = (parts[0], parts[1]);
                if a.len() <= 2
                    && b.len() <= 2
                    && (valid_month_day(a, Some(b)) || valid_month_day(b, Some(a)))
                {
                    return parse_int(parts[2]);
                }
            }
        }
    }
    // Month names: "july 20, 1969", "20 july 1969", "jul 1969".
    let tokens: Vec<&str> = body
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.len() >= 2 && tokens.len() <= 3 {
        let mut year = None;
        let mut month = false;
        for t in &tokens {
            let t = t.trim_end_matches('.');
            if is_month(t) && !month {
                month = true;
            } else if is_digits(t) && t.len() >= 3 && year.is_none() {
                year = parse_int(t);
            } else if is_digits(t) && t.len() <= 2 {
                let day: u32 = t.parse().ok()?;
                if !(1..=31).contains(&day) {
                    return None;
                }
            } else {
                return None;
            }
        }
        if month {
            return year;
        }
    }
    None
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let n = prefix.len();
    (s.len() >= n && s.is_char_boundary(n) && s[..n].eq_ignore_ascii_case(prefix)).then(|| &s[n..])
}

fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !is_digits(digits) || digits.len() > 6 {
        return None;
    }
    s.parse().ok()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_month_day(month: &str, day: Option<&str>) -> bool {
    if month.len() > 2 {
        return false;
    }
    let ok_month = month.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m));
    let ok_day = match day {
        None => true,
        Some(d) => d.len() <= 2 && d.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)),
    };
    ok_month && ok_day
}

fn is_month(t: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS.iter().any(|m| {
        *m == t || (t.len() >= 3 && m.starts_with(t)) || (t == "sept" && *m == "september")
    })
}

/// Latitude or longitude in degrees, or why not.
fn parse_degrees(cell: &str, what: &str, limit: f64) -> std::result::Result<f64, String> {
    let s = cell.trim();
    if s.is_empty() {
        return Err(format!("missing {what}"));
    }
    let v: f64 = s
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("{what} '{s}' is not a number"))?;
    if v.abs() > limit {
        return Err(format!("{what} {s} is outside -{limit}..{limit}"));
    }
    Ok(v)
}

fn parse_bool(cell: &str) -> std::result::Result<bool, String> {
    match cell.trim().to_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "f" | "" => Ok(false),
        other => Err(format!(
            "is_test '{other}' is not one of true/false, 1/0, yes/no"
        )),
    }
}

struct Row {
    name: String,
    targets: Vec<f64>,
    is_test: bool,
}

fn parse_row(
    record: &csv::StringRecord,
    columns: &Columns,
    n_fields: usize,
) -> std::result::Result<Row, Vec<String>> {
    if record.len() != n_fields {
        let mut msg = format!(
            "expected {n_fields} fields (as in the header), found {}",
            record.len()
        );
        if record.iter().any(|f| f.contains('\n')) {
            msg.push_str("; a quoted field runs over several lines: is a closing quote missing?");
        }
        return Err(vec![msg]);
    }
    let mut messages = Vec::new();
    let name = cell_text(record.get(columns.name).unwrap_or(""));
    if name.is_empty() {
        messages.push("empty name".to_string());
    }
    let mut targets = Vec::new();
    match columns.kind {
        TargetKind::Space => {
            for (&col, (what, limit)) in columns
                .targets
                .iter()
                .zip([("latitude", 90.0), ("longitude", 180.0)])
            {
                match parse_degrees(record.get(col).unwrap_or(""), what, limit) {
                    Ok(v) => targets.push(v),
                    Err(m) => messages.push(m),
                }
            }
        }
        TargetKind::Time => match parse_year(record.get(columns.targets[0]).unwrap_or("")) {
            Ok(y) => targets.push(y as f64),
            Err(m) => messages.push(m),
        },
    }
    let is_test = match columns.is_test {
        None => false,
        Some(col) => match parse_bool(record.get(col).unwrap_or("")) {
            Ok(b) => b,
            Err(m) => {
                messages.push(m);
                false
            }
        },
    };
    if messages.is_empty() {
        Ok(Row {
            name,
            targets,
            is_test,
        })
    } else {
        Err(messages)
    }
}

fn find_columns(headers: &[String], header_line: usize) -> Result<Columns> {
    let seen = || format!("[{}]", headers.join(", "));
    // A first line that looks like data: a number or a date where a header should be.
    if let Some(cell) = headers.iter().find(|h| {
        let h = h.trim();
        !h.is_empty()
            && (h.parse::<f64>().is_ok_and(f64::is_finite)
                || (h.contains(['-', '/']) && parse_year(h).is_ok()))
    }) {
        return Err(Error::Dataset(format!(
            "line {header_line} looks like data, not a header ('{cell}' is a number): the file \
             has no header line; add one, e.g. 'name,latitude,longitude' or 'name,year' \
             (headers seen: {})",
            seen()
        )));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for h in headers.iter().filter(|h| !h.is_empty()) {
        *counts.entry(h.as_str()).or_default() += 1;
    }
    let mut dups: Vec<&str> = counts
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(h, _)| *h)
        .collect();
    if !dups.is_empty() {
        dups.sort_unstable();
        return Err(Error::Dataset(format!(
            "the header names a column more than once ({}); headers seen: {}",
            dups.join(", "),
            seen()
        )));
    }
    let find = |aliases: &[&str]| -> Result<Option<usize>> {
        let hits: Vec<usize> = (0..headers.len())
            .filter(|&i| aliases.contains(&headers[i].as_str()))
            .collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(Some(hits[0])),
            _ => Err(Error::Dataset(format!(
                "columns {} mean the same thing; keep one (headers seen: {})",
                hits.iter()
                    .map(|&i| format!("'{}'", headers[i]))
                    .collect::<Vec<_>>()
                    .join(" and "),
                seen()
            ))),
        }
    };
    // The name column: the first alias, in order of preference, that a header matches.
    let name = NAME_ALIASES
        .iter()
        .chain(&MORE_NAME_ALIASES)
        .find_map(|alias| headers.iter().position(|h| h == alias))
        .ok_or_else(|| {
            Error::Dataset(format!(
                "no name column: name one column 'name' (or entity, place, city, title, \
                 label); headers seen: {}",
                seen()
            ))
        })?;
    let lat = find(&LATITUDE_ALIASES)?;
    let lon = find(&LONGITUDE_ALIASES)?;
    let year = find(&YEAR_ALIASES)?;
    let (kind, targets) = match (lat, lon, year) {
        (Some(lat), Some(lon), _) => (TargetKind::Space, vec![lat, lon]),
        (Some(_), None, _) => {
            return Err(Error::NoTargets(format!(
                "a latitude column but no longitude column (lon, lng, long or longitude); \
                 headers seen: {}",
                seen()
            )))
        }
        (None, Some(_), _) => {
            return Err(Error::NoTargets(format!(
                "a longitude column but no latitude column (lat or latitude); headers seen: {}",
                seen()
            )))
        }
        (None, None, Some(year)) => (TargetKind::Time, vec![year]),
        (None, None, None) => {
            return Err(Error::NoTargets(format!(
                "no target columns: a space dataset needs 'latitude' and 'longitude' (or \
                 lat/lon/lng), a time dataset a 'year' or 'date' column; headers seen: {}",
                seen()
            )))
        }
    };
    let is_test = headers.iter().position(|h| h == IS_TEST_HEADER);
    let groups = headers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != name && !targets.contains(i) && Some(*i) != is_test)
        .map(|(i, h)| {
            let key = if h.is_empty() {
                format!("column_{}", i + 1)
            } else {
                h.clone()
            };
            (key, i)
        })
        .collect();
    Ok(Columns {
        name,
        kind,
        targets,
        is_test,
        groups,
    })
}

fn utf8_text(bytes: &[u8]) -> Result<&str> {
    // UTF-16 (what some spreadsheets call "Unicode text") is valid UTF-8 byte by byte when it
    // is ASCII, with a NUL after every letter: catch it before it reads as "n a m e".
    let nuls = bytes.iter().take(4096).filter(|&&b| b == 0).count();
    if bytes.starts_with(&[0xff, 0xfe])
        || bytes.starts_with(&[0xfe, 0xff])
        || nuls * 4 > bytes.len().min(4096)
    {
        return Err(Error::Dataset(
            "the file looks like UTF-16 text, not UTF-8; save it as UTF-8 (spreadsheets: 'CSV UTF-8')".into(),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Dataset(format!(
            "the file is not UTF-8 text: byte {at} (line {line}) is not valid UTF-8; save it \
             as UTF-8 (spreadsheets: 'CSV UTF-8')"
        ))
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// ',' unless the first non-empty line has no comma but a semicolon or a tab.
fn sniff_delimiter(text: &str) -> u8 {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.contains(',') {
        b','
    } else if first.contains(';') {
        b';'
    } else if first.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

/// A text cell: trimmed, with CRLF inside quoted fields read as LF.
fn cell_text(cell: &str) -> String {
    cell.trim().replace("\r\n", "\n")
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// Line numbers as an editor shows them, from records' byte offsets (csv's own line count is
/// one short after CRLF line ends). Offsets must come in increasing order.
struct LineCounter<'a> {
    text: &'a [u8],
    byte: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            byte: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, position: Option<&csv::Position>) -> usize {
        let Some(position) = position else {
            return self.line;
        };
        // A record's offset can point at the line end before it.
        let mut start = (position.byte() as usize).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.byte {
            self.line += self.text[self.byte..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.byte = start;
        }
        self.line
    }
}
