//! What a name gives away before any model reads it: each entity is flagged by the form of its
//! name, so the report can say whether a subset of names carries the score. Many names in the
//! paper's data carry their answer: a qualifier ("Melbourne's Chapel Street"), a ZIP code, a
//! country inside the name; and homonyms ("Springfield") share one activation with different
//! targets.

use std::collections::HashMap;

/// The flags, in report order: `(key, what it means)`.
pub const FLAGS: [(&str, &str); 5] = [
    (
        "qualifier",
        "carry a qualifier (\", X\", \"(X)\" or \"X's Y\")",
    ),
    (
        "code",
        "are numbers or codes (half or more of their letters and digits are digits)",
    ),
    (
        "names_a_place",
        "contain the name of a group or country from the dataset (e.g. \"Paris, France\")",
    ),
    ("non_ascii", "are not plain ASCII"),
    (
        "homonym",
        "are shared by other entities with other targets (homonyms)",
    ),
];

/// Each entity's flags (keys of [`FLAGS`], in that order). `places` are the names a name may
/// contain (the breakdown column's groups, a `country` column's values); `targets` tell
/// homonyms from one entity listed twice.
pub fn name_flags(
    names: &[String],
    targets: &[Vec<f64>],
    places: &[String],
) -> Vec<Vec<&'static str>> {
    let places: Vec<String> = places
        .iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| p.chars().count() >= 3)
        .collect();
    let mut targets_of: HashMap<&str, Vec<&Vec<f64>>> = HashMap::new();
    for (n, t) in names.iter().zip(targets) {
        targets_of.entry(n.as_str()).or_default().push(t);
    }
    names
        .iter()
        .map(|name| {
            let lower = name.to_lowercase();
            let mut out = Vec::new();
            if has_qualifier(name) {
                out.push("qualifier");
            }
            if is_code(name) {
                out.push("code");
            }
            if places
                .iter()
                .any(|p| *p != lower.trim() && contains_word(&lower, p))
            {
                out.push("names_a_place");
            }
            if !name.is_ascii() {
                out.push("non_ascii");
            }
            let same = &targets_of[name.as_str()];
            if same.iter().any(|t| *t != same[0]) {
                out.push("homonym");
            }
            out
        })
        .collect()
}

/// ", X", "(X)" or a possessive "X's Y" (straight or curly apostrophe, followed by a word).
fn has_qualifier(name: &str) -> bool {
    if name.contains(", ") || (name.contains('(') && name.contains(')')) {
        return true;
    }
    ["'s ", "\u{2019}s "].iter().any(|p| {
        name.find(p)
            .is_some_and(|i| i > 0 && i + p.len() < name.len())
    })
}

/// Half or more of the name's letters and digits are digits ("10001", "B-52", "M25").
fn is_code(name: &str) -> bool {
    let (digits, alnum) = name.chars().fold((0, 0), |(d, a), c| {
        (
            d + usize::from(c.is_numeric()),
            a + usize::from(c.is_alphanumeric()),
        )
    });
    digits > 0 && 2 * digits >= alnum
}

/// `needle` occurs in `hay` between word boundaries (both lower-cased).
fn contains_word(hay: &str, needle: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    hay.match_indices(needle).any(|(i, m)| {
        boundary(hay[..i].chars().next_back()) && boundary(hay[i + m.len()..].chars().next())
    })
}
