//! The model's own answer: a question prompt with the entity in it, scored over candidate
//! answers, and the answer's expected position: Σ p(answer) × the answer's centroid over the
//! training entities.
//!
//! An answer is scored as the model would write it, token by token, kept to the candidates
//! ([`AnswerTree`]): wherever candidates part ways, the model's choice among the tokens that
//! continue some candidate (and stopping, where one candidate ends and another goes on) is a
//! softmax over those options alone, and a candidate's probability is the product of the
//! choices along its tokens. When every candidate begins with its own token this is the softmax
//! over the first tokens' logits at the question's end (one read per entity); answers that share
//! a first token ("7th century", "7th century BC", "17th century" under a tokenizer that splits
//! digits) are read further along, one sequence per branch.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::{Dataset, TargetKind};
use crate::error::{Error, Result};
use crate::model::forward::log_sum_exp;
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

/// Candidate answers with their tokens, how they are read, and their centroids.
#[derive(Clone, Debug)]
pub struct Candidates {
    pub names: Vec<String>,
    /// Each candidate's tokens as it follows the prompt.
    pub tokens: Vec<Vec<u32>>,
    /// Those tokens as the vocabulary spells them, separated by spaces.
    pub token_texts: Vec<String>,
    /// Where the model's choices among them are read.
    pub tree: AnswerTree,
    /// Per candidate, the mean targets (latitude/longitude or year) of the training entities
    /// with that answer.
    pub centroids: Vec<Vec<f64>>,
    /// Per entity, the index of its true answer (None when its value is not a candidate).
    pub truth: Vec<Option<usize>>,
}

impl Candidates {
    /// `given` candidates (or, when empty, every value of `column` among the training rows),
    /// tokenized to follow `template` (with a leading space unless the template ends in
    /// whitespace). Errors name the problem: too few candidates, two with the same tokens, a
    /// candidate that is not a value of the column, or one no training entity has.
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
                    return Err(Error::Input(format!(
                        "the candidate '{}' is listed twice",
                        c.trim()
                    )));
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
        let mut tokens: Vec<Vec<u32>> = Vec::with_capacity(names.len());
        for c in &names {
            let ids = tok.encode_text(&format!("{lead}{c}"))?;
            if ids.is_empty() {
                return Err(Error::Input(format!("the candidate '{c}' has no tokens")));
            }
            if let Some(j) = tokens.iter().position(|t| *t == ids) {
                return Err(Error::Input(format!(
                    "the candidates '{}' and '{c}' are the same tokens, so the readout cannot \
                     tell them apart; leave one out (--candidates)",
                    names[j]
                )));
            }
            tokens.push(ids);
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
                .map(|ids| {
                    ids.iter()
                        .map(|&t| tok.id_to_token(t).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
            tree: AnswerTree::new(&tokens),
            names,
            tokens,
            centroids,
            truth,
        })
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

/// The points where the candidates' tokens part ways, and the sequences that reach them.
///
/// A node is a prefix of some candidates' tokens at which the model has a choice: two or more
/// next tokens continue a candidate, or one candidate ends there while another goes on. Tokens
/// that no other candidate contests are forced and need no read. Each node is read at the last
/// token of the question followed by its prefix; the prefixes that are not part of a longer one
/// (`contexts`) are the sequences each entity runs as.
#[derive(Clone, Debug)]
pub struct AnswerTree {
    /// Token suffixes appended to the question: one sequence each per entity (the empty suffix
    /// when the first tokens already tell every candidate apart).
    pub contexts: Vec<Vec<u32>>,
    /// In (context, offset) order, the order the sequences' reads come back in.
    nodes: Vec<Node>,
    /// Every token that continues a candidate at some node: the LM head rows the readout needs.
    pub head_tokens: Vec<u32>,
    /// Per candidate, its choice at each node on its way: (node, option; `options.len()` is
    /// stopping).
    paths: Vec<Vec<(usize, usize)>>,
}

#[derive(Clone, Debug)]
struct Node {
    context: usize,
    /// Suffix tokens before the read: the read is at the question's last token plus this.
    offset: usize,
    /// Indices into `head_tokens`.
    options: Vec<usize>,
    /// A candidate ends here while others go on: stopping is an option, whose probability is
    /// what the full vocabulary leaves after the continuing tokens.
    stops: bool,
}

impl AnswerTree {
    /// The tree of distinct, non-empty token sequences.
    pub fn new(candidates: &[Vec<u32>]) -> Self {
        // Every prefix at which the model has a choice, with its options.
        let mut choices: BTreeMap<&[u32], (BTreeSet<u32>, bool)> = BTreeMap::new();
        for c in candidates {
            for j in 0..=c.len() {
                let prefix = &c[..j];
                let entry = choices.entry(prefix).or_default();
                match c.get(j) {
                    Some(&t) => {
                        entry.0.insert(t);
                    }
                    None => entry.1 = true,
                }
            }
        }
        choices.retain(|_, (next, stops)| next.len() + usize::from(*stops) > 1);
        let prefixes: Vec<&[u32]> = choices.keys().copied().collect();
        let mut contexts: Vec<Vec<u32>> = prefixes
            .iter()
            .filter(|p| {
                !prefixes
                    .iter()
                    .any(|q| q.len() > p.len() && q.starts_with(p))
            })
            .map(|p| p.to_vec())
            .collect();
        if contexts.is_empty() {
            contexts.push(Vec::new());
        }
        let head_tokens: Vec<u32> = choices
            .values()
            .flat_map(|(next, _)| next.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let head_index = |t: u32| head_tokens.binary_search(&t).expect("collected above");
        let mut nodes: Vec<(Vec<u32>, Node)> = choices
            .iter()
            .map(|(prefix, (next, stops))| {
                let context = contexts
                    .iter()
                    .position(|c| c.starts_with(prefix))
                    .expect("every prefix lies on a context");
                let node = Node {
                    context,
                    offset: prefix.len(),
                    options: next.iter().map(|&t| head_index(t)).collect(),
                    stops: *stops,
                };
                (prefix.to_vec(), node)
            })
            .collect();
        nodes.sort_by_key(|(_, n)| (n.context, n.offset));
        let paths = candidates
            .iter()
            .map(|c| {
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, (prefix, _))| c.starts_with(prefix))
                    .map(|(i, (prefix, node))| {
                        let option = match c.get(prefix.len()) {
                            Some(&t) => node
                                .options
                                .iter()
                                .position(|&o| head_tokens[o] == t)
                                .expect("the candidate's own token is an option"),
                            None => node.options.len(),
                        };
                        (i, option)
                    })
                    .collect()
            })
            .collect();
        Self {
            contexts,
            nodes: nodes.into_iter().map(|(_, n)| n).collect(),
            head_tokens,
            paths,
        }
    }

    /// Reads per entity, one per node.
    pub fn n_reads(&self) -> usize {
        self.nodes.len()
    }

    /// The offsets read in a context's sequence, in order.
    pub fn offsets_in(&self, context: usize) -> Vec<usize> {
        self.nodes
            .iter()
            .filter(|n| n.context == context)
            .map(|n| n.offset)
            .collect()
    }

    /// Whether a read (node) needs the log-sum-exp of the whole vocabulary's logits.
    pub fn stops(&self, read: usize) -> bool {
        self.nodes[read].stops
    }

    /// The candidates' probabilities from one entity's reads: per node, the logits of
    /// `head_tokens` and, where the node [`stops`](Self::stops), the log-sum-exp over the whole
    /// vocabulary (ignored elsewhere).
    pub fn probabilities(&self, logits: &[Vec<f32>], full_lse: &[f64]) -> Vec<f64> {
        let log_choices: Vec<Vec<f64>> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut options: Vec<f64> =
                    node.options.iter().map(|&o| logits[i][o] as f64).collect();
                if node.stops {
                    options.push(rest_of(full_lse[i], &options));
                }
                log_softmax(&options)
            })
            .collect();
        self.paths
            .iter()
            .map(|path| {
                path.iter()
                    .map(|&(node, option)| log_choices[node][option])
                    .sum::<f64>()
                    .exp()
            })
            .collect()
    }
}

/// log(Σ_vocab e^l − Σ_options e^l): the log-probability mass outside the options.
fn rest_of(full_lse: f64, options: &[f64]) -> f64 {
    let inside = log_sum_exp(options.iter().copied());
    let share = (inside - full_lse).exp();
    if share >= 1.0 {
        f64::NEG_INFINITY
    } else {
        full_lse + (-share).ln_1p()
    }
}

fn log_softmax(v: &[f64]) -> Vec<f64> {
    let lse = log_sum_exp(v.iter().copied());
    v.iter().map(|x| x - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(v: &[f64]) -> Vec<f64> {
        let z: f64 = v.iter().map(|x| x.exp()).sum();
        v.iter().map(|x| x.exp() / z).collect()
    }

    #[test]
    fn distinct_first_tokens_are_one_read_at_the_question() {
        let tree = AnswerTree::new(&[vec![7], vec![3, 9], vec![5]]);
        assert_eq!(tree.contexts, vec![Vec::<u32>::new()]);
        assert_eq!(tree.n_reads(), 1);
        assert_eq!(tree.head_tokens, vec![3, 5, 7]);
        let p = tree.probabilities(&[vec![0.5, -1.0, 2.0]], &[f64::NAN]);
        let want = softmax(&[0.5, -1.0, 2.0]);
        // Candidates in their own order: 7, then 3, then 5.
        for (got, want) in p.iter().zip([want[2], want[0], want[1]]) {
            assert!((got - want).abs() < 1e-12, "{p:?}");
        }
    }

    /// Candidates A = [1], B = [2, 3], C = [2, 4], D = [2] (ends where B and C go on) and
    /// E = [5, 6, 7] (6 and 7 forced): two reads, at the question (options 1, 2, 5) and after
    /// token 2 (options 3, 4, or stopping against the whole vocabulary).
    #[test]
    fn shared_prefixes_are_read_where_they_part_and_stopping_is_priced() {
        let tree = AnswerTree::new(&[vec![1], vec![2, 3], vec![2, 4], vec![2], vec![5, 6, 7]]);
        assert_eq!(tree.contexts, vec![vec![2]]);
        assert_eq!(tree.offsets_in(0), vec![0, 1]);
        assert!(!tree.stops(0) && tree.stops(1));
        assert_eq!(tree.head_tokens, vec![1, 2, 3, 4, 5]);
        let (root, after) = ([0.3, 1.1, -0.4], [0.9, -0.2]);
        let full_lse = 2.5f64;
        let mut logits = vec![vec![0f32; 5]; 2];
        for (slot, v) in [0, 1, 4].into_iter().zip(root) {
            logits[0][slot] = v as f32;
        }
        for (slot, v) in [2, 3].into_iter().zip(after) {
            logits[1][slot] = v as f32;
        }
        let p = tree.probabilities(&logits, &[f64::NAN, full_lse]);
        let r = softmax(&root.map(|v| v as f32 as f64));
        // After token 2 the vocabulary's own probabilities hold, stopping taking the rest.
        let q: Vec<f64> = after
            .iter()
            .map(|&v| (v as f32 as f64 - full_lse).exp())
            .collect();
        let want = [
            r[0],
            r[1] * q[0],
            r[1] * q[1],
            r[1] * (1.0 - q[0] - q[1]),
            r[2],
        ];
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{p:?} against {want:?}");
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
