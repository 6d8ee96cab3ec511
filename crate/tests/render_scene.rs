//! The scene format and its rasterizer: the JSON the browser reads, colours, anti-aliased
//! primitives, text from the embedded font, scaling, and clean errors on bad scenes.

use probelab::render::{self, parse_color, text_width, Anchor, Item, Raster, Scene};

fn bg(w: f32, h: f32) -> Scene {
    let mut s = Scene::new(w, h);
    s.items.push(Item::Poly {
        points: vec![0.0, 0.0, w, 0.0, w, h, 0.0, h],
        fill: Some("#ffffff".into()),
        stroke: None,
        width: 0.0,
    });
    s
}

fn px(r: &Raster, x: u32, y: u32) -> [u8; 4] {
    r.pixel(x, y).unwrap()
}

/// Bounding box of pixels darker than `thr` (min over RGB) as (x0, y0, x1, y1), inclusive.
fn ink_box(r: &Raster, thr: u8) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for y in 0..r.height {
        for x in 0..r.width {
            let p = px(r, x, y);
            if p[0].min(p[1]).min(p[2]) < thr {
                b = Some(match b {
                    None => (x, y, x, y),
                    Some((a, c, d, e)) => (a.min(x), c.min(y), d.max(x), e.max(y)),
                });
            }
        }
    }
    b
}

#[test]
fn json_is_the_documented_shape_and_round_trips() {
    let mut s = Scene::new(200.0, 100.0);
    s.items.push(Item::Poly {
        points: vec![1.0, 2.0, 30.0, 2.0, 30.0, 40.5],
        fill: Some("#112233".into()),
        stroke: None,
        width: 0.0,
    });
    s.items.push(Item::Line {
        points: vec![0.0, 0.0, 10.0, 10.0],
        color: "#aabbcc80".into(),
        width: 1.5,
        dash: vec![4.0, 2.0],
    });
    s.items.push(Item::Circle {
        x: 5.0,
        y: 6.0,
        r: 3.0,
        fill: Some("#ff0000".into()),
        stroke: Some("#000000".into()),
        width: 1.0,
    });
    s.items.push(Item::Text {
        x: 50.0,
        y: 60.0,
        text: "Zürich — 45°N".into(),
        size: 12.0,
        anchor: Anchor::Center,
        color: "#222222".into(),
        bold: true,
        angle: -90.0,
    });
    let json = s.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["width"], 200.0);
    assert_eq!(v["height"], 100.0);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items[0]["kind"], "poly");
    assert_eq!(items[0]["points"].as_array().unwrap().len(), 6);
    assert!(
        items[0].get("stroke").is_none(),
        "absent colours are left out: {json}"
    );
    assert_eq!(items[1]["kind"], "line");
    assert_eq!(items[1]["dash"][0], 4.0);
    assert_eq!(items[2]["kind"], "circle");
    assert_eq!(items[2]["r"], 3.0);
    assert_eq!(items[3]["kind"], "text");
    assert_eq!(items[3]["anchor"], "center");
    assert_eq!(items[3]["angle"], -90.0);
    assert_eq!(items[3]["bold"], true);
    assert_eq!(Scene::from_json(&json).unwrap(), s);
    // optional fields may be left out by a hand-written scene
    let hand = r##"{"width":10,"height":10,"items":[
        {"kind":"line","points":[0,0,5,5],"color":"#000000","width":1},
        {"kind":"text","x":1,"y":8,"text":"a","size":8,"color":"#000"},
        {"kind":"poly","points":[0,0,1,0,1,1],"fill":"#fff"}]}"##;
    let h = Scene::from_json(hand).unwrap();
    assert!(
        matches!(&h.items[1], Item::Text { anchor: Anchor::Left, bold: false, angle, .. } if *angle == 0.0)
    );
    render::to_png(&h).unwrap();
    assert!(Scene::from_json(r#"{"width":1,"height":1,"items":[{"kind":"blob"}]}"#).is_err());
}

#[test]
fn colours_parse_in_css_hex_forms() {
    assert_eq!(parse_color("#0072b2").unwrap(), [0, 0x72, 0xb2, 255]);
    assert_eq!(parse_color("#0072B280").unwrap(), [0, 0x72, 0xb2, 0x80]);
    assert_eq!(parse_color("#fff").unwrap(), [255, 255, 255, 255]);
    for bad in ["", "0072b2", "#12345", "#gg0000", "red", "#ééé"] {
        assert!(parse_color(bad).is_err(), "{bad}");
    }
    assert_eq!(render::with_alpha("#0072b2", 0.5), "#0072b280");
}

#[test]
fn primitives_rasterize_where_and_how_they_should() {
    let mut s = bg(100.0, 60.0);
    s.items.push(Item::Circle {
        x: 20.0,
        y: 20.0,
        r: 8.0,
        fill: Some("#ff0000".into()),
        stroke: None,
        width: 0.0,
    });
    // half-transparent blue square over white
    s.items.push(Item::Poly {
        points: vec![50.0, 10.0, 70.0, 10.0, 70.0, 30.0, 50.0, 30.0],
        fill: Some("#0000ff80".into()),
        stroke: Some("#000000".into()),
        width: 2.0,
    });
    s.items.push(Item::Line {
        points: vec![10.0, 50.0, 90.0, 50.0],
        color: "#00aa00".into(),
        width: 3.0,
        dash: vec![],
    });
    let r = render::rasterize(&s, 1.0).unwrap();
    assert_eq!((r.width, r.height), (100, 60));
    assert_eq!(px(&r, 20, 20), [255, 0, 0, 255]);
    assert_eq!(px(&r, 20, 31), [255, 255, 255, 255], "outside the circle");
    let edge = px(&r, 27, 20); // the rim pixel is anti-aliased, neither red nor white
    assert!(edge[1] > 0 || edge[0] == 255);
    let half = px(&r, 60, 20);
    assert!(
        (half[0] as i32 - 127).abs() <= 2 && half[2] == 255,
        "{half:?}"
    );
    assert_eq!(px(&r, 50, 20)[..3], [0, 0, 0], "stroked edge");
    assert_eq!(px(&r, 40, 50)[..3], [0, 0xaa, 0]);
    assert_eq!(px(&r, 40, 54)[..3], [255, 255, 255]);
    // PNG decodes to the same pixels
    let png = render::to_png(&s).unwrap();
    let dec = tiny_skia::Pixmap::decode_png(&png).unwrap();
    assert_eq!((dec.width(), dec.height()), (100, 60));
    let c = dec.pixel(20, 20).unwrap();
    assert_eq!((c.red(), c.green(), c.blue()), (255, 0, 0));
    // scale 2 doubles the size and keeps the picture
    let r2 = render::rasterize(&s, 2.0).unwrap();
    assert_eq!((r2.width, r2.height), (200, 120));
    assert_eq!(px(&r2, 40, 40), [255, 0, 0, 255]);
}

#[test]
fn dashed_lines_have_gaps() {
    let mut s = bg(100.0, 10.0);
    s.items.push(Item::Line {
        points: vec![0.0, 5.0, 100.0, 5.0],
        color: "#000000".into(),
        width: 2.0,
        dash: vec![10.0, 10.0],
    });
    let r = render::rasterize(&s, 1.0).unwrap();
    let row: Vec<bool> = (0..100).map(|x| px(&r, x, 5)[0] < 128).collect();
    let on = row.iter().filter(|b| **b).count();
    assert!((35..=65).contains(&on), "{on} of 100 pixels inked");
    assert!(row[5] && !row[15] && row[25]);
}

#[test]
fn text_is_legible_sized_anchored_and_rotated() {
    let size = 20.0;
    let text = "Probelab 1234";
    let w = text_width(text, size as f64, false);
    assert!(w > 100.0 && w < 180.0, "width {w}");
    assert!(text_width("", 12.0, false) == 0.0);
    for (anchor, x) in [
        (Anchor::Left, 20.0f32),
        (Anchor::Center, 150.0),
        (Anchor::Right, 280.0),
    ] {
        let mut s = bg(300.0, 60.0);
        s.items.push(Item::Text {
            x,
            y: 40.0,
            text: text.into(),
            size,
            anchor,
            color: "#000000".into(),
            bold: false,
            angle: 0.0,
        });
        let r = render::rasterize(&s, 1.0).unwrap();
        let (x0, y0, x1, y1) = ink_box(&r, 128).expect("text leaves ink");
        let ink_w = (x1 - x0 + 1) as f64;
        assert!(
            ink_w > w * 0.85 && ink_w <= w + 2.0,
            "{anchor:?}: ink {ink_w} vs advance {w}"
        );
        // cap height of DejaVu Sans is 0.73 em: ink from about 25 to the baseline at 40
        assert!(
            (24..=27).contains(&y0) && (39..=41).contains(&y1),
            "{anchor:?}: rows {y0}..{y1}"
        );
        let start = match anchor {
            Anchor::Left => x as f64,
            Anchor::Center => x as f64 - w / 2.0,
            Anchor::Right => x as f64 - w,
        };
        assert!(
            (x0 as f64 - start).abs() < 4.0,
            "{anchor:?}: starts at {x0}, want {start}"
        );
    }
    // -90°: reads bottom to top, so the ink is tall and narrow and lies above the anchor
    let mut s = bg(60.0, 300.0);
    s.items.push(Item::Text {
        x: 40.0,
        y: 280.0,
        text: text.into(),
        size,
        anchor: Anchor::Left,
        color: "#000000".into(),
        bold: false,
        angle: -90.0,
    });
    let r = render::rasterize(&s, 1.0).unwrap();
    let (x0, y0, x1, y1) = ink_box(&r, 128).unwrap();
    assert!(y1 <= 281 && (y1 - y0) as f64 > w * 0.85, "rows {y0}..{y1}");
    assert!(x1 <= 41 && x1 - x0 < 22, "cols {x0}..{x1}");
    // bold is darker (more ink) than regular
    let ink = |bold: bool| {
        let mut s = bg(200.0, 40.0);
        s.items.push(Item::Text {
            x: 5.0,
            y: 30.0,
            text: "Bold?".into(),
            size: 20.0,
            anchor: Anchor::Left,
            color: "#000000".into(),
            bold,
            angle: 0.0,
        });
        let r = render::rasterize(&s, 1.0).unwrap();
        r.rgba.chunks(4).map(|p| 255 - p[0] as u64).sum::<u64>()
    };
    assert!(ink(true) > ink(false) * 11 / 10);
    // characters outside the font are drawn as '?', not dropped, and never panic
    let mut s = bg(200.0, 40.0);
    s.items.push(Item::Text {
        x: 5.0,
        y: 30.0,
        text: "東京\u{1F600}\n".into(),
        size: 16.0,
        anchor: Anchor::Left,
        color: "#000000".into(),
        bold: false,
        angle: 0.0,
    });
    assert!(ink_box(&render::rasterize(&s, 1.0).unwrap(), 128).is_some());
}

#[test]
fn bad_scenes_are_errors_not_panics() {
    let mut s = bg(10.0, 10.0);
    s.items.push(Item::Circle {
        x: 5.0,
        y: 5.0,
        r: 2.0,
        fill: Some("blue".into()),
        stroke: None,
        width: 0.0,
    });
    let e = render::to_png(&s).unwrap_err().to_string();
    assert!(e.contains("blue"), "{e}");
    assert!(render::to_png(&Scene::new(0.0, 10.0)).is_err());
    assert!(render::to_png(&Scene::new(f32::NAN, 10.0)).is_err());
    assert!(render::to_png(&Scene::new(100_000.0, 100_000.0)).is_err());
    assert!(render::to_png_scaled(&bg(10.0, 10.0), 0.0).is_err());
    let mut odd = bg(10.0, 10.0);
    odd.items.push(Item::Line {
        points: vec![1.0, 2.0, 3.0],
        color: "#000000".into(),
        width: 1.0,
        dash: vec![],
    });
    assert!(render::to_png(&odd).is_err());
    // degenerate but well-formed items are skipped quietly
    let mut quiet = bg(10.0, 10.0);
    quiet.items.push(Item::Line {
        points: vec![1.0, 2.0],
        color: "#000000".into(),
        width: 1.0,
        dash: vec![],
    });
    quiet.items.push(Item::Poly {
        points: vec![f32::NAN, 0.0, 1.0, 1.0, 2.0, 0.0],
        fill: Some("#000000".into()),
        stroke: None,
        width: 0.0,
    });
    quiet.items.push(Item::Circle {
        x: 5.0,
        y: 5.0,
        r: 0.0,
        fill: Some("#000000".into()),
        stroke: None,
        width: 0.0,
    });
    let r = render::rasterize(&quiet, 1.0).unwrap();
    assert!(r.rgba.chunks(4).all(|p| p == [255, 255, 255, 255]));
}
