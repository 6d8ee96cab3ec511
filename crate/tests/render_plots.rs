//! The layer curve and the time scatter: their scenes carry what a reader needs (one legend
//! entry per series, the layer axis explained, the null band, the y = x diagonal), round-trip
//! through JSON and rasterize; sample PNGs are written to the temp folder.

use probelab::render::{
    self, layer_curve_scene, time_scatter_scene, Item, LayerCurve, Scene, Series, SeriesStyle,
    TimeScatterOptions, LAYER_AXIS_NOTE,
};

fn texts(s: &Scene) -> Vec<&str> {
    s.items
        .iter()
        .filter_map(|i| match i {
            Item::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn sample_curve() -> LayerCurve {
    let layers: Vec<usize> = (0..=30).collect();
    let probe: Vec<Option<f64>> = layers
        .iter()
        .map(|&l| {
            let x = l as f64 / 30.0;
            Some(0.15 + 0.65 * (1.0 - (-5.0 * x).exp()) - 0.12 * x * x)
        })
        .collect();
    let control: Vec<Option<f64>> = layers
        .iter()
        .map(|&l| {
            if l == 7 {
                None
            } else {
                Some(0.1 + 0.05 * (l as f64 * 0.7).sin())
            }
        })
        .collect();
    let random: Vec<Option<f64>> = layers
        .iter()
        .map(|&l| Some(0.22 - 0.002 * l as f64))
        .collect();
    LayerCurve {
        layers: layers.clone(),
        series: vec![
            Series {
                label: "shuffled labels (permutation null, 5–95%)".into(),
                values: layers.iter().map(|_| Some(0.0)).collect(),
                style: SeriesStyle::Band {
                    lower: layers.iter().map(|_| Some(-0.08)).collect(),
                    upper: layers
                        .iter()
                        .map(|&l| Some(0.05 + 0.001 * l as f64))
                        .collect(),
                },
                color: "#999999".into(),
            },
            Series {
                label: "probe on test places".into(),
                values: probe,
                style: SeriesStyle::Line,
                color: "#0072b2".into(),
            },
            Series {
                label: "random-init model".into(),
                values: random,
                style: SeriesStyle::Dashed,
                color: String::new(),
            },
            Series {
                label: "names only (no prompt)".into(),
                values: control,
                style: SeriesStyle::Dashed,
                color: "#d55e00".into(),
            },
        ],
        selected_layer: Some(18),
        y_label: "R² (test)".into(),
        x_label: String::new(),
        title: "Latitude and longitude are linearly decodable from the middle layers".into(),
        y_range: None,
        x_axis: Default::default(),
    }
}

#[test]
fn layer_curve_has_one_legend_entry_per_series_and_explains_the_layer_axis() {
    let c = sample_curve();
    let s = layer_curve_scene(&c, 900.0, 480.0);
    let t = texts(&s);
    for se in &c.series {
        assert_eq!(
            t.iter().filter(|x| **x == se.label).count(),
            1,
            "legend entry for {}",
            se.label
        );
    }
    assert!(
        t.contains(&"layer (0 = embeddings; i = after block i)"),
        "{t:?}"
    );
    assert!(t.contains(&"selected: layer 18"));
    assert!(t.contains(&"R² (test)"));
    assert!(t.contains(&c.title.as_str()));
    // the null band is a translucent filled polygon in the band's colour
    let band = s.items.iter().any(|i| matches!(i, Item::Poly { fill: Some(f), .. } if f.starts_with("#999999") && f.len() == 9));
    assert!(band, "no band polygon");
    // dashed controls are dashed lines; the missing value splits the control into two lines
    let dashed_orange = s
        .items
        .iter()
        .filter(|i| matches!(i, Item::Line { color, dash, .. } if color == "#d55e00" && !dash.is_empty()))
        .count();
    assert_eq!(dashed_orange, 2 + 1, "two segments plus the legend key");
    // a custom x label keeps the explanation
    assert_eq!(
        render::layer_axis_label("layer of SmolLM2"),
        "layer of SmolLM2 (0 = embeddings; i = after block i)"
    );
    assert_eq!(
        render::layer_axis_label("layer (0 = embeddings; i = after block i)"),
        "layer (0 = embeddings; i = after block i)"
    );
}

#[test]
fn layer_curve_round_trips_rasterizes_and_survives_odd_input() {
    let c = sample_curve();
    let s = layer_curve_scene(&c, 900.0, 480.0);
    assert_eq!(Scene::from_json(&s.to_json()).unwrap(), s);
    let png = render::to_png(&s).unwrap();
    std::fs::write(std::env::temp_dir().join("probelab_layer_curve.png"), &png).unwrap();
    // the input itself is serde data, so the browser can send it as JSON
    let cj = serde_json::to_string(&c).unwrap();
    assert!(cj.contains("\"type\":\"band\""));
    // (f64s may come back one ulp off without serde_json's float_roundtrip; the scene is f32)
    let back: LayerCurve = serde_json::from_str(&cj).unwrap();
    assert_eq!(layer_curve_scene(&back, 900.0, 480.0), s);

    // one layer, all-None series, NaN values, fixed range, no title: no panic, still a PNG
    let odd = LayerCurve {
        layers: vec![5],
        series: vec![
            Series {
                label: "a".into(),
                values: vec![Some(f64::NAN)],
                style: SeriesStyle::Line,
                color: "not a colour".into(),
            },
            Series {
                label: "b".into(),
                values: vec![None],
                style: SeriesStyle::Band {
                    lower: vec![Some(0.1)],
                    upper: vec![Some(0.3)],
                },
                color: "#0a0".into(),
            },
        ],
        selected_layer: Some(99),
        y_label: String::new(),
        x_label: String::new(),
        title: String::new(),
        y_range: Some([0.0, 1.0]),
        x_axis: Default::default(),
    };
    let s = layer_curve_scene(&odd, 300.0, 200.0);
    assert_eq!(
        texts(&s)
            .iter()
            .filter(|t| **t == "a" || **t == "b")
            .count(),
        2
    );
    render::to_png(&s).unwrap();
    let empty = LayerCurve {
        layers: vec![],
        series: vec![],
        selected_layer: None,
        y_label: String::new(),
        x_label: String::new(),
        title: String::new(),
        y_range: None,
        x_axis: Default::default(),
    };
    render::to_png(&layer_curve_scene(&empty, 300.0, 200.0)).unwrap();
}

#[test]
fn time_scatter_has_the_diagonal_axes_and_labelled_outliers() {
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/historical_years.csv"
    ))
    .unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let mut pts = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.unwrap();
        if i % 4 != 0 {
            continue;
        }
        let y: f64 = rec[1].parse().unwrap();
        let wobble = (i as f64 * 78.233).sin() * 140.0;
        pts.push((y, 0.8 * y + 300.0 + wobble, rec[0].to_string()));
    }
    pts.push((1500.0, f64::NAN, "skipped".into()));
    let opts = TimeScatterOptions {
        title: "When the probe dates events — layer 14, test split".into(),
        label_outliers: 5,
        ..TimeScatterOptions::default()
    };
    let s = time_scatter_scene(&pts, &opts);
    let t = texts(&s);
    assert!(
        t.contains(&"true year")
            && t.contains(&"predicted year")
            && t.contains(&"y = x (predicted = true)")
    );
    assert!(!t.contains(&"skipped"));
    let labelled = pts
        .iter()
        .filter(|p| p.1.is_finite())
        .filter(|p| t.contains(&p.2.as_str()))
        .count();
    // five outliers ringed; labels that would collide are left out
    assert!((3..=5).contains(&labelled), "{labelled} outliers labelled");
    let rings = s
        .items
        .iter()
        .filter(|i| {
            matches!(
                i,
                Item::Circle {
                    fill: None,
                    stroke: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(rings, 5);
    // the diagonal is a dashed line from the lower-left to the upper-right corner
    let diag = s.items.iter().find_map(|i| match i {
        Item::Line { points, dash, .. } if !dash.is_empty() && points.len() == 4 => {
            Some(points.clone())
        }
        _ => None,
    });
    let d = diag.expect("diagonal");
    assert!(d[2] > d[0] && d[3] < d[1], "diagonal goes up to the right");
    assert!(
        ((d[2] - d[0]) - (d[1] - d[3])).abs() < 0.05,
        "same scale on both axes"
    );
    let dots = s
        .items
        .iter()
        .filter(|i| matches!(i, Item::Circle { fill: Some(_), .. }))
        .count();
    assert_eq!(dots, pts.len() - 1);
    assert_eq!(Scene::from_json(&s.to_json()).unwrap(), s);
    let png = render::to_png(&s).unwrap();
    std::fs::write(std::env::temp_dir().join("probelab_time_scatter.png"), &png).unwrap();
    // empty input still draws axes
    render::to_png(&time_scatter_scene(&[], &TimeScatterOptions::default())).unwrap();
}

#[test]
fn a_count_axis_is_labelled_as_given_without_the_layer_note() {
    let curve = LayerCurve {
        layers: vec![8, 40, 160],
        series: vec![Series {
            label: "probe".into(),
            values: vec![Some(0.2), Some(0.5), Some(0.7)],
            style: SeriesStyle::Line,
            color: "#0072b2".into(),
        }],
        selected_layer: None,
        y_label: "R²".into(),
        x_label: "training entities".into(),
        title: String::new(),
        y_range: None,
        x_axis: render::XAxis::Count,
    };
    let s = layer_curve_scene(&curve, 720.0, 400.0);
    let t = texts(&s);
    assert!(t.contains(&"training entities"), "{t:?}");
    assert!(t.iter().all(|x| !x.contains(LAYER_AXIS_NOTE)), "{t:?}");
    // The default axis is a layer axis and explains the convention.
    let layered = LayerCurve {
        x_axis: render::XAxis::Layer,
        ..curve
    };
    assert!(texts(&layer_curve_scene(&layered, 720.0, 400.0))
        .iter()
        .any(|x| x.contains(LAYER_AXIS_NOTE)));
}

#[test]
fn a_value_axis_takes_real_x_values_with_gaps_and_a_zero_line() {
    let curve = LayerCurve {
        layers: vec![],
        series: vec![
            Series {
                label: String::new(),
                values: vec![Some(-9.0), Some(0.0), Some(4.0), Some(9.0)],
                style: SeriesStyle::Band {
                    lower: vec![Some(-11.0), Some(0.0), Some(2.0), Some(7.0)],
                    upper: vec![Some(-7.0), Some(0.0), Some(6.0), Some(11.0)],
                },
                color: "#0072b2".into(),
            },
            Series {
                label: "edits".into(),
                values: vec![Some(-9.0), Some(0.0), Some(4.0), Some(9.0)],
                style: SeriesStyle::Line,
                color: "#0072b2".into(),
            },
        ],
        selected_layer: None,
        y_label: "change".into(),
        x_label: "dose (°)".into(),
        title: String::new(),
        y_range: None,
        x_axis: render::XAxis::Value {
            x: vec![-30.0, 0.0, f64::NAN, 30.0],
        },
    };
    let s = layer_curve_scene(&curve, 720.0, 400.0);
    let t = texts(&s);
    // Ticks from −30 to 30 with a real minus sign, the label as given, one legend entry (the
    // unlabelled band has none).
    assert!(
        t.contains(&"\u{2212}30") && t.contains(&"30") && t.contains(&"0"),
        "{t:?}"
    );
    assert!(t.contains(&"dose (°)") && t.iter().all(|x| !x.contains(LAYER_AXIS_NOTE)));
    assert_eq!(t.iter().filter(|x| **x == "edits").count(), 1);
    assert_eq!(
        s.items
            .iter()
            .filter(|i| matches!(i, Item::Poly { fill: Some(f), .. } if f.starts_with("#0072b2")))
            .count(),
        2,
        "the band in two runs around the NaN x, no legend key"
    );
    // The solid line breaks at the NaN x: a segment of two points, then a lone point (no
    // line); the legend key is the only other line in its colour, and it is flat.
    let solid: Vec<&Vec<f32>> = s
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Line {
                points,
                color,
                width,
                ..
            } if color == "#0072b2" && *width == 2.0 && points[1] != points[3] => Some(points),
            _ => None,
        })
        .collect();
    assert_eq!(solid.len(), 1, "{solid:?}");
    assert_eq!(solid[0].len(), 4);
    // A horizontal line at y = 0 across the plot, through the curve's point at x = 0.
    let zero_y = solid[0][3];
    assert!(s
        .items
        .iter()
        .any(|i| matches!(i, Item::Line { points, color, .. }
        if color == "#888888" && points.len() == 4 && points[1] == zero_y && points[3] == zero_y
            && points[2] - points[0] > 500.0)));
    // It round-trips through JSON (where a NaN would be null: give finite x values).
    let finite = LayerCurve {
        x_axis: render::XAxis::Value {
            x: vec![-30.0, 0.0, 15.0, 30.0],
        },
        ..curve
    };
    let back: LayerCurve = serde_json::from_str(&serde_json::to_string(&finite).unwrap()).unwrap();
    assert_eq!(back, finite);
    assert_eq!(
        layer_curve_scene(&back, 720.0, 400.0),
        layer_curve_scene(&finite, 720.0, 400.0)
    );
}
