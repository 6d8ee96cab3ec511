//! The model's surprisal of each name equals the independent NumPy float64 forward's
//! (tests/fixtures/make/surprisal_fixture.py) to 1e-3 nats, on the same scoring tokens.

mod common;

use common::{default_model, fixture};
use probelab::extract::surprisal::name_surprisal;
use probelab::extract::{tokenize_entities, Template};
use probelab::model::{LoadOptions, LoadedModel};

#[test]
fn name_surprisal_equals_the_numpy_reference() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("surprisal_smollm2.json")).unwrap())
            .unwrap();
    assert_eq!(fx["model_sha256"], m.sha256.as_str());
    let line_break = m.tokenizer.encode_text("\n").unwrap();
    let want_prefix: Vec<u32> = serde_json::from_value(fx["prefix_ids"].clone()).unwrap();
    assert_eq!(line_break, want_prefix);
    let cases = fx["cases"].as_array().unwrap();
    let mut entities = Vec::new();
    for c in cases {
        let t = Template::new(c["template"].as_str().unwrap()).unwrap();
        let name = c["name"].as_str().unwrap().to_string();
        let e = tokenize_entities(&m.tokenizer, &[name], &t, 8192)
            .unwrap()
            .remove(0);
        // The scoring sequence is the reference's: the prompt, after a line break when the
        // name opens it.
        let scored: Vec<u32> = if e.span.start == 0 {
            line_break.iter().chain(&e.ids).copied().collect()
        } else {
            e.ids.clone()
        };
        let want_ids: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        assert_eq!(scored, want_ids, "{}", c["name"]);
        entities.push(e);
    }
    // All in batches of 5 (lengths mixed inside a batch), so batching is exercised too.
    let got = name_surprisal(&m.model, &line_break, &entities, 5, &mut |_, _, _| true).unwrap();
    for (c, g) in cases.iter().zip(&got) {
        let want = c["surprisal_nats"].as_f64().unwrap();
        let g = g.expect("every name is scored");
        assert!(
            (g - want).abs() <= 1e-3,
            "{}: {g} vs {want} nats",
            c["name"]
        );
    }
    // Without a line break to put first, a one-token name that opens the prompt has none.
    let t = Template::new("{name}").unwrap();
    let paris = tokenize_entities(&m.tokenizer, &["Paris".into()], &t, 8192).unwrap();
    assert_eq!(paris[0].ids.len(), 1);
    let none = name_surprisal(&m.model, &[], &paris, 4, &mut |_, _, _| true).unwrap();
    assert_eq!(none, vec![None]);
}
