//! The model's own answer: a question prompt with the entity in it, scored over candidate
//! answers by the logit of each candidate's first token (softmax over the candidates only), and
//! the answer's expected position: Σ p(answer) × the answer's centroid over training entities.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::{Dataset, TargetKind};
use crate::error::{Error, Result};
use crate::model::tokenizer::Tokenizer;

/// The default question for places: its answers are the continents of world-places. Of five
/// phrasings tried on the default model and world-places-200 ("{name} is a place on the
/// continent of", "{name} is located in", "{name} is a city in", a Q/A form and this one), this
/// is the one it answers best before any edit (50% against 25% by chance); the others are
/// 32–40%. A question the model cannot answer cannot show whether it uses a direction.
pub const PLACE_READOUT: &str = "The continent where {name} is located is";
/// The default question for dates, answered by the `century` column.
pub const TIME_READOUT: &str = "{name} is from the";

/// The default readout template and answer column for a dataset's kind.
pub fn default_readout(kind: TargetKind) -> (&'static str, &'static str) {
    match kind {
        TargetKind::Space => (PLACE_READOUT, "continent"),
        TargetKind::Time => (TIME_READOUT, "century"),
    }
}

/// Candidate answers with the token that scores each and its centroid.
#[derive(Clone, Debug)]
pub struct Candidates {
    pub names: Vec<String>,
    /// The first token of each candidate as it follows the prompt.
    pub tokens: Vec<u32>,
    /// Those tokens as the vocabulary spells them.
    pub token_texts: Vec<String>,
    /// Per candidate, the mean targets (latitude/longitude or year) of the training entities
    /// with that answer.
    pub centroids: Vec<Vec<f64>>,
    /// Per entity, the index of its true answer (None when its value is not a candidate).
    pub truth: Vec<Option<usize>>,
}

impl Candidates {
    /// `given` candidates (or, when empty, every value of `column` among the training rows),
    /// tokenized to follow `template` (with a leading space unless the template ends in
    /// whitespace). Errors name the problem: too few candidates, two whose first tokens collide,
    /// a candidate that is not a value of the column, or one no training entity has.
    pub fn new(
        tok: &Tokenizer,
        dataset: &Dataset,
        column: &str,
        given: &[String],
        template: &str,
        train: &[usize],
    ) -> Result<Self> {
        let values = dataset.groups.get(&column.to_lowercase()).ok_or_else(|| {
            Error::Input(format!(
                "the readout's answers come from a column '{column}', which dataset '{}' does \
                 not have (its columns: {})",
                dataset.name,
                dataset
                    .groups
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let names: Vec<String> = if given.is_empty() {
            train
                .iter()
                .map(|&i| values[i].clone())
                .filter(|v| !v.trim().is_empty())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            let mut seen = BTreeSet::new();
            for c in given {
                if !seen.insert(c.trim()) {
                    return Err(Error::Input(format!("the candidate '{c}' is listed twice")));
                }
            }
            given.iter().map(|c| c.trim().to_string()).collect()
        };
        if names.len() < 2 {
            return Err(Error::Input(format!(
                "the readout needs at least two candidate answers; got {}",
                match names.first() {
                    Some(c) => format!("only '{c}'"),
                    None => "none".into(),
                }
            )));
        }
        let lead = if template.ends_with(char::is_whitespace) {
            ""
        } else {
            " "
        };
        let mut tokens = Vec::with_capacity(names.len());
        let mut by_token: BTreeMap<u32, &str> = BTreeMap::new();
        for c in &names {
            let ids = tok.encode_text(&format!("{lead}{c}"))?;
            let first = *ids
                .first()
                .ok_or_else(|| Error::Input(format!("the candidate '{c}' has no tokens")))?;
            if let Some(other) = by_token.insert(first, c) {
                return Err(Error::Input(format!(
                    "the candidates '{other}' and '{c}' begin with the same token '{}', so the \
                     readout (which scores each candidate's first token) cannot tell them apart; \
                     rename one, leave it out (--candidates), or answer from another column \
                     (--answer-column)",
                    tok.id_to_token(first).unwrap_or_default()
                )));
            }
            tokens.push(first);
        }
        let k = dataset.kind.target_names().len();
        let mut centroids = Vec::with_capacity(names.len());
        for c in &names {
            let rows: Vec<usize> = train.iter().copied().filter(|&i| &values[i] == c).collect();
            if rows.is_empty() {
                let known: BTreeSet<&String> = values.iter().collect();
                return Err(Error::Input(if known.contains(c) {
                    format!(
                        "no training entity has the answer '{c}', so it has no position to \
                         move toward; leave it out of the candidates"
                    )
                } else {
                    format!(
                        "the candidate '{c}' is not a value of column '{column}' (its values: \
                         {})",
                        known.into_iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                }));
            }
            centroids.push(centroid(dataset, &rows, k));
        }
        let truth = values
            .iter()
            .map(|v| names.iter().position(|c| c == v))
            .collect();
        Ok(Self {
            token_texts: tokens
                .iter()
                .map(|&t| tok.id_to_token(t).unwrap_or_default())
                .collect(),
            names,
            tokens,
            centroids,
            truth,
        })
    }

    /// Candidate probabilities from their logits (softmax in f64).
    pub fn probabilities(logits: &[f32]) -> Vec<f64> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|v| v / z).collect()
    }

    /// The expected position of an answer distribution: Σ p × centroid, per target.
    pub fn expected(&self, probs: &[f64]) -> Vec<f64> {
        let k = self.centroids[0].len();
        (0..k)
            .map(|t| {
                probs
                    .iter()
                    .zip(&self.centroids)
                    .map(|(p, c)| p * c[t])
                    .sum()
            })
            .collect()
    }
}

/// Mean targets of `rows`; longitude as a circular mean, so a group spanning the date line
/// is not placed on the far side of the globe.
fn centroid(dataset: &Dataset, rows: &[usize], k: usize) -> Vec<f64> {
    let n = rows.len() as f64;
    if dataset.kind == TargetKind::Space && k == 2 {
        let lat = rows.iter().map(|&i| dataset.targets[i][0]).sum::<f64>() / n;
        let (s, c) = rows.iter().fold((0.0, 0.0), |(s, c), &i| {
            let r = dataset.targets[i][1].to_radians();
            (s + r.sin(), c + r.cos())
        });
        vec![lat, s.atan2(c).to_degrees()]
    } else {
        (0..k)
            .map(|t| rows.iter().map(|&i| dataset.targets[i][t]).sum::<f64>() / n)
            .collect()
    }
}
