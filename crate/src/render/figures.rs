//! Report → figures: the scenes a run draws (map or time scatter, and score by layer with every
//! control beside the probe) and the files a run writes. The browser draws the same scenes on a
//! canvas; the command line writes them as PNG.

use std::collections::HashMap;

use crate::data::TargetKind;
use crate::error::{Error, Result};
use crate::probe::analysis::{self, Report};
use crate::probe::metrics;
use crate::render::{
    self, ColorBy, LayerCurve, MapOptions, MapPoint, MoveKind, MovedPoint, MovesOptions, Scene,
    Series, SeriesStyle, TimeScatterOptions, XAxis,
};

fn fmt_p(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("p = {p:.3}"),
        None => "p not computed".into(),
    }
}

/// A longitude in [-180, 180); one already there is kept bit for bit.
fn wrap_longitude(lon: f64) -> f64 {
    if (-180.0..180.0).contains(&lon) {
        lon
    } else {
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }
}

/// "What survives the controls", in plain words: the selected layer's held-out score, its
/// p-value after choosing the layer, the margin over each baseline and control, and the
/// worst-served groups. The page shows it above the figures; the command line prints it.
fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

pub fn summary(report: &Report) -> String {
    let f = |v: Option<f64>, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "n/a".into(),
    };
    let s = &report.selected;
    let b = &report.baselines;
    let space = report.dataset.target == TargetKind::Space;
    let (what, error) = if space {
        (
            "latitude and longitude",
            format!("median error {} km", f(s.km_median, 0)),
        )
    } else {
        (
            "the year",
            format!("mean error {} years", f(s.years_mae, 0)),
        )
    };
    let margin = |base: Option<f64>| match base {
        Some(v) if v.is_finite() => format!(" (the probe is {:+.2} above it)", s.r2_test - v),
        _ => String::new(),
    };
    // A control that wins, at any layer, is the first thing said.
    let mut out = crate::render::verdict::rivals_sentence(report)
        .map(|w| w + " ")
        .unwrap_or_default();
    // A score from a plan tried after another was scored on the same test set is read so.
    if let Some(p) = &report.plan {
        out += &format!("{}. ", upper_first(&p.sentence()));
    }
    out += &format!(
        "Layer {} (chosen on the training set's validation folds) predicts {what} of held-out \
         entities with R² {} ({error}); {} against {} shuffled-target refits, paying for the \
         choice of {}. ",
        s.layer,
        f(Some(s.r2_test), 2),
        fmt_p(s.p_value),
        s.n_permutations,
        if report.prompts.is_empty() {
            "layer"
        } else {
            "prompt and layer"
        }
    );
    out += &format!(
        "Baselines: layer 0 (token embeddings) R² {}{}; names alone (character n-grams, no \
         model) R² {}{}",
        f(Some(b.layer0_r2_test), 2),
        margin(Some(b.layer0_r2_test)),
        f(b.ngram_r2_test, 2),
        margin(b.ngram_r2_test)
    );
    if let (Some(r), Some(k)) = (b.knn_r2_test, b.knn_neighbours) {
        out += &format!(
            "; the {k} most similar training names' mean R² {}{}",
            f(Some(r), 2),
            margin(Some(r))
        );
    }
    out += ". ";
    if let (Some(g), Some(p)) = (s.gain_over_names, s.gain_p_value) {
        out += &format!(
            "Beyond the name: fitted to what the n-gram model gets wrong, layer {} adds R² \
             {g:+.2} to it ({}, against shuffled residuals, the layer chosen again for each). ",
            s.layer,
            fmt_p(Some(p))
        );
    }
    if let Some(sp) = &report.seed_spread {
        out += &format!("{}. ", upper_first(&sp.sentence()));
    }
    if let Some(p) = &report.prompt_spread {
        out += &prompt_sentence(report, p);
    }
    for w in flag_sentences(report) {
        out += &w;
        out += " ";
    }
    out += &match s.random_init_r2 {
        Some(r) => format!(
            "Random-initialised model at the same layer: R² {}{}. ",
            f(Some(r), 2),
            margin(Some(r))
        ),
        None => "The random-initialised model control was not run. ".into(),
    };
    if s.selectivity.is_some() {
        out += &format!(
            "Control task (first token → random target) selectivity {}. ",
            f(s.selectivity, 2)
        );
    }
    for c in &report.coverage {
        out += &coverage_sentence(c, space);
    }
    if let Some(l) = &report.learning {
        out += &learning_sentence(l);
    }
    if let Some(c) = &report.causal {
        out += &causal_sentence(c, space);
        out += " ";
    }
    // Worst served = largest mean error (km or years): a group's own R² compares it with its
    // own mean, which for one continent is near the truth already, so it misleads here.
    let error = |g: &analysis::GroupReport| if space { g.km_mean } else { g.years_mae };
    let mut groups: Vec<_> = report
        .by_group
        .iter()
        .filter(|g| g.n_test > 0)
        .filter_map(|g| error(g).filter(|e| e.is_finite()).map(|e| (e, g)))
        .collect();
    groups.sort_by(|a, b| b.0.total_cmp(&a.0));
    if groups.len() > 1 {
        let unit = if space { "km" } else { "years" };
        let worst: Vec<String> = groups
            .iter()
            .take(2)
            .map(|(e, g)| {
                format!(
                    "{} (mean error {e:.0} {unit}, {} test entities)",
                    g.group, g.n_test
                )
            })
            .collect();
        let best = groups
            .last()
            .map(|(e, g)| format!("{} ({e:.0} {unit})", g.group));
        out += &format!("Worst served: {}", worst.join(", "));
        out += &best
            .map(|b| format!("; best: {b}."))
            .unwrap_or_else(|| ".".into());
    }
    out.trim_end().to_string()
}

/// Does the model use the direction: whether its answers follow the probe's edits beyond the
/// null edits, how much erasing the direction costs, and the side effects; or, when the model
/// cannot answer the question, that the test cannot be read.
pub fn causal_sentence(c: &analysis::CausalReport, space: bool) -> String {
    let b = &c.baseline;
    if !b.answerable {
        return format!(
            "Does the model use it? Asked \"{}\", the model picks the right answer for {:.0}% \
             of {} test entities against {:.0}% by chance ({}), so editing {} cannot show \
             whether it uses the probe's direction.",
            c.readout,
            100.0 * b.accuracy,
            c.n_entities,
            100.0 * b.chance,
            fmt_p(Some(b.p_value)),
            c.layers_text()
        );
    }
    let unit = if space { "°" } else { " years" };
    let axes: Vec<String> = c
        .axes
        .iter()
        .map(|a| {
            let top = a.doses.iter().fold(0.0f64, |m, d| m.max(d.dose.abs()));
            format!(
                "{}: the answer moves {:+.2}{unit} for an edit of +{top:.0}{unit} ({} against \
                 {} null edits)",
                a.target,
                a.effect * top,
                fmt_p(Some(a.p_value)),
                a.null_random.len() + a.null_orthogonal.len() + a.null_control_task.iter().count()
            )
        })
        .collect();
    let beyond = c
        .axes
        .iter()
        .filter(|a| a.p_value < 0.05 && a.effect > 0.0)
        .count();
    let verdict = match beyond {
        0 => "do not follow the probe's direction beyond null edits of the same size",
        n if n == c.axes.len() => "follow the probe's direction beyond null edits of the same size",
        _ => "follow the probe's direction beyond the nulls on some axes only",
    };
    let median = |v: &[f64]| crate::probe::metrics::median(v.to_vec()).unwrap_or(f64::NAN);
    format!(
        "Does the model use it? Edited at {} (asked \"{}\", right {:.0}% of the time \
             against {:.0}% by chance), its answers {verdict}: {}. Erasing the direction lowers the \
             true answer's probability by {:.3} (random subspaces: median {:.3}, {}). Unrelated \
             completions move by {:.3} nats per token under the probe's largest edits, {:.3} under \
             random ones.",
        c.layers_text(),
        c.readout,
        100.0 * b.accuracy,
        100.0 * b.chance,
        axes.join("; "),
        c.erasure.drop_p_true,
        median(&c.erasure.null_drops),
        fmt_p(Some(c.erasure.p_value)),
        c.side_effects.probe_mean_abs_change,
        c.side_effects.random_mean_abs_change
    )
}

/// Where a subset of names carries the score: for a flag on at least 5 test names and 10% of
/// them, a baseline that matches the trained model on those names, or a held-out R² that falls
/// by 0.1 or more without them; and how much of the error homonyms account for.
pub fn flag_sentences(report: &Report) -> Vec<String> {
    let n_test = report.split.n_test.max(1) as f64;
    let mut out = Vec::new();
    for f in &report.name_flags {
        let pct = 100.0 * f.n_test as f64 / n_test;
        if f.flag == "homonym" {
            if let Some(share) = f.share_of_error {
                out.push(format!(
                    "{} entities share their name with another entity at another {} \
                     (homonyms, one activation for two answers); {} of them are test entities, \
                     with {:.0}% of the test set's squared error.",
                    f.n,
                    if report.dataset.target == TargetKind::Space {
                        "place"
                    } else {
                        "date"
                    },
                    f.n_test,
                    100.0 * share
                ));
            }
            continue;
        }
        if f.n_test < 5 || pct < 10.0 {
            continue;
        }
        let Some(m) = f.r2_test else { continue };
        let rival = [
            ("the random-initialised model", f.random_init_r2_test),
            ("the names' n-grams", f.ngram_r2_test),
            ("the most similar training names", f.knn_r2_test),
        ]
        .into_iter()
        .filter_map(|(what, r)| r.filter(|&r| r >= m).map(|r| (what, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((what, r)) = rival {
            out.push(format!(
                "{pct:.0}% of the test names {}; on them {what} matches the trained model (R² \
                 {r:.2} against {m:.2}).",
                f.description
            ));
        } else if let Some(o) = f
            .r2_test_others
            .filter(|&o| o <= report.selected.r2_test - 0.1)
        {
            out.push(format!(
                "{pct:.0}% of the test names {}; without them the held-out R² falls from {:.2} \
                 to {o:.2}.",
                f.description, report.selected.r2_test
            ));
        }
    }
    out
}

/// Whom the map serves, in one sentence: the held-out error against a "how well known" column.
pub fn coverage_sentence(c: &analysis::CoverageReport, space: bool) -> String {
    let [lo, hi] = c.ci95;
    let who = if space { "places" } else { "entities" };
    let reading = if hi < 0.0 {
        format!(": {who} with more of it are placed better")
    } else if lo > 0.0 {
        format!(": {who} with more of it are placed worse")
    } else {
        "; no clear relation".into()
    };
    format!(
        "Whom the map serves: the held-out error against {}, Spearman ρ {:+.2} (95% CI {lo:+.2} \
         to {hi:+.2}, {} test {who}){reading}. ",
        c.column, c.spearman, c.n_test
    )
}

/// How much data the probe needs, in one sentence: the code's compression beside the
/// controls', and the test R² at the smallest and the full training set.
fn learning_sentence(l: &analysis::LearningReport) -> String {
    let mut out = String::new();
    if let Some(c) = &l.code {
        let others: Vec<String> = [
            ("the random-initialised model", &l.random_init_code),
            ("the n-grams", &l.ngram_code),
        ]
        .iter()
        .filter_map(|(what, c)| c.as_ref().map(|c| format!("{what} {:.2}×", c.compression)))
        .collect();
        out += &format!(
            "Description length: sent block by block, the probe compresses the training targets \
             {:.2}× over a uniform code{}. ",
            c.compression,
            if others.is_empty() {
                String::new()
            } else {
                format!(" ({})", others.join(", "))
            }
        );
    }
    if let (Some(&n0), Some(&r0), Some(&n1), Some(&r1)) = (
        l.n_train.first(),
        l.r2_test.first(),
        l.n_train.last(),
        l.r2_test.last(),
    ) {
        if l.n_train.len() > 1 {
            out += &format!(
                "Learning curve: held-out R² {r0:.2} from {n0} training entities, {r1:.2} from \
                 {n1}. "
            );
        }
    }
    out
}

/// A prompt sweep in words: which template was chosen, the range of held-out R² the choice of
/// template alone spans, and what the p-value paid for.
fn prompt_sentence(report: &Report, p: &analysis::PromptSpread) -> String {
    format!(
        "The prompt \"{}\" was chosen from {} templates with the layer; the template alone \
         moves held-out R² from {:.2} (\"{}\") to {:.2} (\"{}\"), each at its own chosen \
         layer, and the p-value pays for choosing among all {} templates × {} layers. ",
        report.prompt,
        report.prompts.len(),
        p.r2_test_min,
        p.template_min,
        p.r2_test_max,
        p.template_max,
        report.prompts.len(),
        report.layers.len()
    )
}

/// Score by layer: the probe's held-out R² with every control on the same axes (960 × 480, the
/// size the command line writes).
pub fn layer_scene(report: &Report) -> Scene {
    layer_scene_sized(report, 960.0, 480.0)
}

/// [`layer_scene`] for a page column `width` CSS pixels wide: that width (within 300–1400), and
/// 0.6 of it in height (within 300–520).
pub fn layer_scene_for_width(report: &Report, width: f32) -> Scene {
    let w = width.clamp(300.0, 1400.0);
    layer_scene_sized(report, w, (w * 0.6).clamp(300.0, 520.0))
}

/// [`layer_scene`] laid out for `width` × `height` scene units: the page asks for the width it
/// shows the chart at, so its text is drawn at its own size rather than scaled down.
pub fn layer_scene_sized(report: &Report, width: f32, height: f32) -> Scene {
    let layers: Vec<usize> = report.layers.iter().map(|l| l.layer).collect();
    let per_layer = |f: &dyn Fn(&analysis::LayerReport) -> Option<f64>| -> Vec<Option<f64>> {
        report.layers.iter().map(f).collect()
    };
    let constant = |v: Option<f64>| vec![v; layers.len()];
    let n_perm = report.selected.n_permutations;
    let mut series = vec![
        Series {
            label: format!("shuffled targets (mean to max of {n_perm})"),
            values: per_layer(&|l| l.controls.shuffled_r2_mean),
            style: SeriesStyle::Band {
                lower: per_layer(&|l| l.controls.shuffled_r2_mean),
                upper: per_layer(&|l| l.controls.shuffled_r2_max),
            },
            color: "#9aa3b2".into(),
        },
        Series {
            label: "probe, held-out test R²".into(),
            values: per_layer(&|l| Some(l.r2_test)),
            style: SeriesStyle::Line,
            color: "#0072b2".into(),
        },
        Series {
            label: "control task (first token → random target)".into(),
            values: per_layer(&|l| l.controls.control_task_r2),
            style: SeriesStyle::Dashed,
            color: "#cc79a7".into(),
        },
        Series {
            label: "random-init model".into(),
            values: per_layer(&|l| l.controls.random_init_r2),
            style: SeriesStyle::Dashed,
            color: "#009e73".into(),
        },
        Series {
            label: "layer 0 (token embeddings)".into(),
            values: constant(Some(report.baselines.layer0_r2_test)),
            style: SeriesStyle::Dashed,
            color: "#e69f00".into(),
        },
        Series {
            label: "names only (character n-grams, no model)".into(),
            values: constant(report.baselines.ngram_r2_test),
            style: SeriesStyle::Dashed,
            color: "#d55e00".into(),
        },
        Series {
            label: match report.baselines.knn_neighbours {
                Some(k) => format!("{k} most similar names (no model)"),
                None => "most similar names (no model)".into(),
            },
            values: constant(report.baselines.knn_r2_test),
            style: SeriesStyle::Dashed,
            color: "#7f3c00".into(),
        },
        Series {
            label: "n-grams + probe of what they miss".into(),
            values: per_layer(&|l| l.controls.r2_beside_names),
            style: SeriesStyle::Line,
            color: "#56b4e9".into(),
        },
    ];
    // A prompt sweep: every template's held-out R² lies in this band.
    if let Some(spread) = &report.prompt_spread {
        let lower: Vec<Option<f64>> = spread
            .by_layer
            .iter()
            .map(|l| Some(l.r2_test_min))
            .collect();
        series.insert(
            1,
            Series {
                label: format!(
                    "the {} prompt templates (lowest to highest)",
                    report.prompts.len()
                ),
                values: lower.clone(),
                style: SeriesStyle::Band {
                    lower,
                    upper: spread
                        .by_layer
                        .iter()
                        .map(|l| Some(l.r2_test_max))
                        .collect(),
                },
                color: "#56b4e9".into(),
            },
        );
    }
    // A control that was not run has no line; leave it out of the legend too.
    series.retain(|s| s.values.iter().any(Option::is_some));
    let curve = LayerCurve {
        layers,
        series,
        selected_layer: Some(report.selected.layer),
        y_label: "R² on held-out entities".into(),
        x_label: "layer".into(),
        title: format!(
            "{}: layer {} selected, test R² {:.2}, {} after choosing the {}",
            report.dataset.name,
            report.selected.layer,
            report.selected.r2_test,
            fmt_p(report.selected.p_value),
            if report.prompts.is_empty() {
                "layer"
            } else {
                "prompt and layer"
            }
        ),
        y_range: None,
        x_axis: XAxis::Layer,
    };
    render::layer_curve_scene(&curve, width, height)
}

/// How much data the probe needs (720 × 400): held-out R² against training entities at the
/// selected layer for the probe, the random-init model and the n-grams, the online code's
/// compression in the legend. None without a learning step.
pub fn learning_scene(report: &Report) -> Option<Scene> {
    let l = report.learning.as_ref()?;
    let points = |v: Option<&Vec<f64>>| -> Vec<Option<f64>> {
        v.into_iter().flatten().map(|&x| Some(x)).collect()
    };
    let with_code = |what: &str, c: &Option<analysis::CodeLength>| match c {
        Some(c) => format!("{what} (code {:.2}× over uniform)", c.compression),
        None => what.to_string(),
    };
    let mut series = vec![
        Series {
            label: with_code(&format!("probe, layer {}", l.layer), &l.code),
            values: points(Some(&l.r2_test)),
            style: SeriesStyle::Line,
            color: "#0072b2".into(),
        },
        Series {
            label: with_code("random-init model", &l.random_init_code),
            values: points(l.random_init_r2_test.as_ref()),
            style: SeriesStyle::Dashed,
            color: "#009e73".into(),
        },
        Series {
            label: with_code("names alone (character n-grams)", &l.ngram_code),
            values: points(l.ngram_r2_test.as_ref()),
            style: SeriesStyle::Dashed,
            color: "#d55e00".into(),
        },
    ];
    series.retain(|s| s.values.iter().any(Option::is_some));
    // A probe on a handful of rows can score far below zero; below −0.5 is drawn on the edge so
    // the rest of the curve keeps its resolution.
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let lo = values.iter().copied().fold(0.0, f64::min).max(-0.5);
    let hi = values.iter().copied().fold(0.1, f64::max);
    let curve = LayerCurve {
        layers: l.n_train.clone(),
        series,
        selected_layer: None,
        y_label: "R² on held-out entities".into(),
        x_label: "training entities".into(),
        title: format!("How much data the probe needs (layer {})", l.layer),
        y_range: Some([lo - 0.05, hi + 0.05]),
        x_axis: XAxis::Count,
    };
    Some(render::layer_curve_scene(&curve, 720.0, 400.0))
}

/// A signed number with at least two significant digits (and at least two decimals, at most
/// six) and a real minus sign: the causal test's effects can be tiny.
fn signed(v: f64) -> String {
    let decimals = if v.is_finite() && v != 0.0 {
        ((-v.abs().log10()).ceil() + 1.0).clamp(2.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:+.decimals$}").replace('-', "\u{2212}")
}

/// The warning a causal figure carries when the model cannot answer its question.
const UNANSWERED: &str = "The model does not answer the question: read nothing into this";

/// The `q` quantile (0..=1) of `v` by linear interpolation; `None` when `v` has no finite
/// value.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (i, f) = (at.floor() as usize, at.fract());
    Some(v[i] + (v[(i + 1).min(v.len() - 1)] - v[i]) * f)
}

/// Does the model use the direction, as a chart (720 × 400): for each axis the probe was
/// edited along, the mean change of the answer's expected position on that axis against the
/// dose asked (negative to positive, with the exact zero of no edit), its 95% interval as a
/// band, and the axis's effect and p-value in the legend; under them a grey band where the
/// null edits' effects (5–95% of every null edit on every axis, as per-unit slopes) would put
/// the answer. When the model does not answer the question, a warning across the top. None
/// without a causal block.
pub fn causal_dose_scene(report: &Report) -> Option<Scene> {
    let c = report.causal.as_ref()?;
    let space = report.dataset.target == TargetKind::Space;
    let (unit, per) = if space {
        ("°", "° per ° asked")
    } else {
        (" years", " years per year asked")
    };
    // Every dose any axis asked for, and 0 (no edit, no change).
    let mut doses: Vec<f64> = c
        .axes
        .iter()
        .flat_map(|a| a.doses.iter().map(|d| d.dose))
        .filter(|d| d.is_finite())
        .chain([0.0])
        .collect();
    doses.sort_by(f64::total_cmp);
    doses.dedup();
    let colors = ["#0072b2", "#d55e00", "#009e73", "#cc79a7"];
    let nulls: Vec<f64> = c
        .axes
        .iter()
        .flat_map(|a| {
            a.null_random
                .iter()
                .chain(&a.null_orthogonal)
                .chain(&a.null_control_task)
        })
        .copied()
        .collect();
    let mut series = Vec::new();
    if let (Some(lo), Some(mid), Some(hi)) = (
        quantile(&nulls, 0.05),
        quantile(&nulls, 0.5),
        quantile(&nulls, 0.95),
    ) {
        let at = |k: f64| doses.iter().map(|d| Some(k * d)).collect();
        series.push(Series {
            label: format!(
                "null edits of the same size (5–95% of {}: random, orthogonal, control task)",
                nulls.len()
            ),
            values: at(mid),
            style: SeriesStyle::Band {
                lower: at(lo),
                upper: at(hi),
            },
            color: "#9aa3b2".into(),
        });
    }
    for (i, a) in c.axes.iter().enumerate() {
        let color = colors[i % colors.len()].to_string();
        let at = |f: &dyn Fn(&crate::probe::report::DoseEffect) -> f64| -> Vec<Option<f64>> {
            doses
                .iter()
                .map(|&d| {
                    if d == 0.0 {
                        Some(0.0)
                    } else {
                        a.doses.iter().find(|e| e.dose == d).map(f)
                    }
                })
                .collect()
        };
        // The interval under the line, without a legend entry of its own.
        series.push(Series {
            label: String::new(),
            values: at(&|e| e.mean_change),
            style: SeriesStyle::Band {
                lower: at(&|e| e.ci_low),
                upper: at(&|e| e.ci_high),
            },
            color: color.clone(),
        });
        series.push(Series {
            label: format!(
                "{} edits (band: 95% CI): {}{per}, {}",
                a.target,
                signed(a.effect),
                fmt_p(Some(a.p_value))
            ),
            values: at(&|e| e.mean_change),
            style: SeriesStyle::Line,
            color,
        });
    }
    let curve = LayerCurve {
        layers: Vec::new(),
        series,
        selected_layer: None,
        y_label: if space {
            "change of the answer's position (°)".into()
        } else {
            "change of the answer's year (years)".into()
        },
        x_label: if space {
            format!("edit asked along the probe's direction ({unit}; − south/west, + north/east)")
        } else {
            "edit asked along the probe's direction (years; − earlier, + later)".into()
        },
        title: format!(
            "Editing {} along the probe's direction: the model's answer ({} entities)",
            c.layers_text(),
            c.n_entities
        ),
        y_range: None,
        x_axis: XAxis::Value { x: doses },
    };
    let mut scene = render::layer_curve_scene(&curve, 720.0, 400.0);
    if !c.baseline.answerable {
        render::plot::warning(&mut scene, 360.0, 62.0, UNANSWERED);
    }
    Some(scene)
}

/// Space: where the edited entities' answers move (720 × 440, the legend under the map). On
/// the world map, each edited entity's true place, its answer's expected position before any
/// edit (ring), and an arrow from there to where it moves under the largest edits along each
/// axis (−D and +D, one colour each). With the warning of [`causal_dose_scene`] when the model
/// does not answer. `Ok(None)` without a causal block or without a latitude and a longitude
/// axis; an error for a time dataset.
pub fn causal_map_scene(report: &Report) -> Result<Option<Scene>> {
    if report.dataset.target != TargetKind::Space {
        return Err(Error::Input(
            "a map needs a space (latitude/longitude) dataset".into(),
        ));
    }
    let Some(c) = report.causal.as_ref() else {
        return Ok(None);
    };
    let axis = |name: &str| c.axes.iter().position(|a| a.target == name);
    let (Some(lat), Some(lon)) = (axis("latitude"), axis("longitude")) else {
        return Ok(None);
    };
    let top = |t: usize| {
        c.axes[t]
            .doses
            .iter()
            .fold(0.0f64, |m, d| m.max(d.dose.abs()))
    };
    // [axis, 0 = −D / 1 = +D, colour, words]
    let kinds = [
        (
            lat,
            1,
            "#0072b2",
            format!("latitude +{:.0}° (north)", top(lat)),
        ),
        (
            lat,
            0,
            "#56b4e9",
            format!("latitude −{:.0}° (south)", top(lat)),
        ),
        (
            lon,
            1,
            "#d55e00",
            format!("longitude +{:.0}° (east)", top(lon)),
        ),
        (
            lon,
            0,
            "#e69f00",
            format!("longitude −{:.0}° (west)", top(lon)),
        ),
    ];
    let pos = |v: &[f64]| -> Option<[f64; 2]> { Some([*v.get(lat)?, *v.get(lon)?]) };
    let points: Vec<MovedPoint> = c
        .entities
        .iter()
        .filter_map(|e| {
            let [true_lat, true_lon] = [*e.truth.first()?, *e.truth.get(1)?];
            let [before_lat, before_lon] = pos(&e.expected)?;
            Some(MovedPoint {
                name: e.name.clone(),
                group: e.true_answer.clone().unwrap_or_default(),
                true_lat,
                true_lon,
                lat: before_lat,
                lon: before_lon,
                moved: kinds
                    .iter()
                    .map(|&(t, sign, _, _)| e.moved.get(t).and_then(|m| pos(&m[sign])))
                    .collect(),
            })
        })
        .collect();
    // How far the farthest answer moves: arrows under a pixel are not drawn, so say it.
    let at = |lat: f64, lon: f64| metrics::LatLon { lat, lon };
    let largest = points
        .iter()
        .flat_map(|p| {
            p.moved
                .iter()
                .flatten()
                .map(|m| metrics::great_circle_km(at(p.lat, p.lon), at(m[0], m[1])))
        })
        .filter(|km| km.is_finite())
        .fold(None, |m: Option<f64>, km| Some(m.map_or(km, |m| m.max(km))));
    let opts = MovesOptions {
        width: 720.0,
        height: 440.0,
        title: format!(
            "Where edits at {} move the model's answer ({} entities{})",
            c.layers_text(),
            points.len(),
            match largest {
                Some(km) if km < 10.0 => format!("; largest move {km:.1} km"),
                Some(km) => format!("; largest move {km:.0} km"),
                None => String::new(),
            }
        ),
        before_label: "answer before any edit (expected position)".into(),
        kinds: kinds
            .into_iter()
            .map(|(_, _, color, label)| MoveKind {
                label: format!("edit {label}"),
                color: color.into(),
            })
            .collect(),
        note: if c.baseline.answerable {
            String::new()
        } else {
            UNANSWERED.into()
        },
    };
    Ok(Some(render::moves_map_scene(&points, &opts)))
}

/// Space: true places and the probe's predictions at the selected layer on a world map.
pub fn map_scene(report: &Report, show_train: bool, color_by: ColorBy) -> Result<Scene> {
    if report.dataset.target != TargetKind::Space {
        return Err(Error::Input(
            "a map needs a space (latitude/longitude) dataset".into(),
        ));
    }
    let points: Vec<MapPoint> = report
        .entities
        .iter()
        .filter(|e| e.truth.len() == 2 && e.predicted.len() == 2)
        .map(|e| MapPoint {
            name: e.name.clone(),
            true_lat: e.truth[0],
            true_lon: e.truth[1],
            // The probe's raw output can overshoot the globe: clamp latitude, wrap longitude.
            pred_lat: e.predicted[0].clamp(-90.0, 90.0),
            pred_lon: wrap_longitude(e.predicted[1]),
            group: e.group.clone().unwrap_or_default(),
            is_test: e.split == "test",
            surprisal: e.surprisal,
        })
        .collect();
    let s = &report.selected;
    let opts = MapOptions {
        width: 1100.0,
        height: 600.0,
        color_by,
        show_train,
        title: format!(
            "Where the probe puts {} places: layer {}, test R² {:.2}, median error {:.0} km",
            points.iter().filter(|p| p.is_test).count(),
            s.layer,
            s.r2_test,
            s.km_median.unwrap_or(f64::NAN)
        ),
    };
    Ok(render::map_scene(&points, &opts))
}

/// Space, one layer: the held-out places and where that layer's probe puts them (from
/// `report.layer_predictions`), for a layer slider; with `show_train` also the training places
/// (faded) and that layer's in-sample predictions for them, where the report has them (not
/// under leave-one-group-out, nor in reports written before they were stored, except at the
/// selected layer). `None` when the report has no per-layer predictions or no such layer.
pub fn map_scene_at_layer(
    report: &Report,
    layer: usize,
    color_by: ColorBy,
    show_train: bool,
) -> Result<Option<Scene>> {
    if report.dataset.target != TargetKind::Space {
        return Err(Error::Input(
            "a map needs a space (latitude/longitude) dataset".into(),
        ));
    }
    let (Some(lp), Some(li)) = (
        report.layer_predictions.as_ref(),
        report.layers.iter().position(|l| l.layer == layer),
    ) else {
        return Ok(None);
    };
    let lr = &report.layers[li];
    let Some(rows) = lp.predicted.get(li) else {
        return Ok(None);
    };
    let by_index: HashMap<usize, &analysis::EntityPrediction> =
        report.entities.iter().map(|e| (e.index, e)).collect();
    let point = |i: usize, pred: &[f64], is_test: bool| -> Option<MapPoint> {
        let e = by_index.get(&i)?;
        (e.truth.len() == 2 && pred.len() == 2).then(|| MapPoint {
            name: e.name.clone(),
            true_lat: e.truth[0],
            true_lon: e.truth[1],
            pred_lat: pred[0].clamp(-90.0, 90.0),
            pred_lon: wrap_longitude(pred[1]),
            group: e.group.clone().unwrap_or_default(),
            is_test,
            surprisal: e.surprisal,
        })
    };
    let mut points: Vec<MapPoint> = lp
        .entities
        .iter()
        .zip(rows)
        .filter_map(|(&i, pred)| point(i, pred, true))
        .collect();
    let n_test = points.len();
    if show_train {
        match lp.train_predicted.get(li) {
            Some(train) => points.extend(
                lp.train_entities
                    .iter()
                    .zip(train)
                    .filter_map(|(&i, pred)| point(i, pred, false)),
            ),
            // An older report: the entities' own predictions are the selected layer's.
            None if layer == report.selected.layer => points.extend(
                report
                    .entities
                    .iter()
                    .filter(|e| e.split == "train")
                    .filter_map(|e| point(e.index, &e.predicted, false)),
            ),
            None => {}
        }
    }
    let n_train = points.len() - n_test;
    let opts = MapOptions {
        width: 1100.0,
        height: 600.0,
        color_by,
        show_train: n_train > 0,
        title: format!(
            "Layer {layer}{}: {n_test} held-out places{}, test R² {:.2}, median error {:.0} km",
            if layer == report.selected.layer {
                " (selected)"
            } else {
                ""
            },
            if n_train > 0 {
                format!(" + {n_train} training (faded)")
            } else {
                String::new()
            },
            lr.r2_test,
            lr.km_median.unwrap_or(f64::NAN)
        ),
    };
    Ok(Some(render::map_scene(&points, &opts)))
}

/// Time: predicted against true year for the held-out entities at the selected layer.
pub fn time_scene(report: &Report) -> Result<Scene> {
    if report.dataset.target != TargetKind::Time {
        return Err(Error::Input(
            "a time scatter needs a time (year) dataset".into(),
        ));
    }
    let points: Vec<(f64, f64, String)> = report
        .entities
        .iter()
        .filter(|e| e.split == "test" && !e.truth.is_empty() && !e.predicted.is_empty())
        .map(|e| (e.truth[0], e.predicted[0], e.name.clone()))
        .collect();
    let s = &report.selected;
    let opts = TimeScatterOptions {
        title: format!(
            "Predicted against true year: layer {}, test R² {:.2}, mean error {:.0} years",
            s.layer,
            s.r2_test,
            s.years_mae.unwrap_or(f64::NAN)
        ),
        label_outliers: 8,
        ..TimeScatterOptions::default()
    };
    Ok(render::time_scatter_scene(&points, &opts))
}

/// A report's figures by name: `layers` (the score by layer), `map` (space) or `time` (time),
/// `learning` when the report has a learning step, and with a causal block `causal` (the
/// dose-response chart) and, for space, `causal_map`. The one place that chooses them.
pub fn scenes(report: &Report) -> Result<Vec<(&'static str, Scene)>> {
    let space = report.dataset.target == TargetKind::Space;
    let second = if space {
        ("map", map_scene(report, true, ColorBy::ByGroup)?)
    } else {
        ("time", time_scene(report)?)
    };
    let mut out = vec![("layers", layer_scene(report)), second];
    if let Some(learning) = learning_scene(report) {
        out.push(("learning", learning));
    }
    if let Some(causal) = causal_dose_scene(report) {
        out.push(("causal", causal));
    }
    if space {
        if let Some(map) = causal_map_scene(report)? {
            out.push(("causal_map", map));
        }
    }
    Ok(out)
}

/// The files a run writes, by name: report.json, predictions.csv, layers.png, map.png (space)
/// or time.png (time), learning.png (with one training set), and with the causal test
/// causal.png and (space) causal_map.png.
pub fn run_files(report: &Report) -> Result<Vec<(String, Vec<u8>)>> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Compute(e.to_string()))?;
    let mut files = vec![
        ("report.json".to_string(), json),
        (
            "predictions.csv".to_string(),
            analysis::predictions_csv(report)?.into_bytes(),
        ),
    ];
    for (name, scene) in scenes(report)? {
        files.push((format!("{name}.png"), render::to_png(&scene)?));
    }
    Ok(files)
}
