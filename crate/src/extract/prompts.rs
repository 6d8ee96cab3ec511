//! Prompt sets for a sweep: the templates one run extracts and fits side by side, so that the
//! p-value can pay for choosing the prompt as it pays for choosing the layer.
//!
//! The shipped sets follow Gurnee & Tegmark (2023, "Language Models Represent Space and
//! Time"), who tried several prompts per dataset: the name alone, a question about it, the name
//! in capitals and a prefix of random tokens.

use crate::data::TargetKind;
use crate::error::{Error, Result};
use crate::extract::Template;

/// The shipped templates for places, besides the random-token prefix.
pub const PLACES: &[&str] = &[
    "{name}",
    "What are the lat/lon coordinates of {name}",
    "Where is {name}",
    "{NAME}",
];

/// The shipped templates for dates, besides the random-token prefix.
pub const TIME: &[&str] = &["{name}", "When did {name}", "{NAME}"];

/// Tokens in the random prefix, and its fixed seed: the same vocabulary gives the same prefix.
pub const RANDOM_PREFIX_TOKENS: usize = 10;
pub const RANDOM_PREFIX_SEED: u64 = 0x5EED_0010;

/// The names `--prompt-set` and the page know the shipped sets by.
pub const SHIPPED_NAMES: &[&str] = &["places", "time"];

/// The shipped set's target kind by its name.
pub fn shipped_kind(name: &str) -> Result<TargetKind> {
    match name {
        "places" => Ok(TargetKind::Space),
        "time" => Ok(TargetKind::Time),
        other => Err(Error::Input(format!(
            "no shipped prompt set '{other}'; the shipped sets are {}",
            SHIPPED_NAMES.join(", ")
        ))),
    }
}

/// The shipped templates for a target kind: the fixed ones, then `random_prefix` (see
/// [`crate::run::random_token_prefix`]) before the name.
pub fn shipped(kind: TargetKind, random_prefix: &str) -> Vec<String> {
    let fixed = match kind {
        TargetKind::Space => PLACES,
        TargetKind::Time => TIME,
    };
    let mut set: Vec<String> = fixed.iter().map(|t| t.to_string()).collect();
    set.push(format!("{random_prefix} {{name}}"));
    set
}

/// The templates of a sweep, checked: at least one, each with one `{name}` (or `{NAME}`), no
/// template twice.
pub fn prompt_set(texts: &[String]) -> Result<Vec<Template>> {
    if texts.is_empty() {
        return Err(Error::Input(
            "the prompt set is empty: give at least one template with {name}".into(),
        ));
    }
    if let Some((i, j)) = first_repeat(texts) {
        return Err(Error::Input(format!(
            "prompt template '{}' is given twice (templates {} and {}); give each template \
             once",
            texts[j],
            i + 1,
            j + 1
        )));
    }
    texts.iter().map(|t| Template::new(t)).collect()
}

/// The first template given again, as (its first position, the repeat's), 0-based.
pub fn first_repeat(texts: &[String]) -> Option<(usize, usize)> {
    (0..texts.len()).find_map(|j| {
        texts[..j]
            .iter()
            .position(|u| *u == texts[j])
            .map(|i| (i, j))
    })
}

/// One template per line of a prompts file; blank lines are skipped, line ends (`\r\n` too)
/// are not part of a template.
pub fn read_prompt_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}
