//! What a name gives away: each flag on hand-picked names, and homonyms kept by the CSV reader.

use probelab::data::{read_dataset_csv, OnBadRows};
use probelab::probe::flags::{name_flags, FLAGS};

#[test]
fn each_flag_on_names_that_have_it_and_names_that_do_not() {
    let names: Vec<String> = [
        "Melbourne's Chapel Street",
        "Paris, France",
        "Mount Hood (Oregon)",
        "10001",
        "B-52",
        "Route 66",
        "São Paulo",
        "Frankfurt",
        "France",
        "Springfield",
        "Springfield",
        "Lyon",
        "Lyon",
        "Kings Cross",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut targets: Vec<Vec<f64>> = (0..names.len()).map(|i| vec![i as f64, 0.0]).collect();
    // The two Lyons are one place listed twice: not homonyms.
    targets[12] = targets[11].clone();
    let places = [
        "France".to_string(),
        "Oregon".into(),
        "Europe".into(),
        "UK".into(),
    ];
    let flags = name_flags(&names, &targets, &places);
    let want: [&[&str]; 14] = [
        &["qualifier"],
        &["qualifier", "names_a_place"],
        &["qualifier", "names_a_place"],
        &["code"],
        &["code"],
        &[],
        &["non_ascii"],
        // "France" inside "Frankfurt" is not a word; a place never names itself.
        &[],
        &[],
        &["homonym"],
        &["homonym"],
        &[],
        &[],
        // "King's" would be possessive; "Kings Cross" is not, and "UK" is under 3 letters.
        &[],
    ];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(flags[i], *w, "{}", names[i]);
    }
    // Every key used is one the report documents.
    let keys: Vec<&str> = FLAGS.iter().map(|f| f.0).collect();
    assert!(flags.iter().flatten().all(|f| keys.contains(f)));
}

#[test]
fn homonyms_are_kept_and_a_repeated_row_is_not() {
    let csv =
        "name,lat,lon\nSpringfield,39.8,-89.6\nSpringfield,42.1,-72.6\nSpringfield,39.8,-89.6\n";
    let (d, problems) = read_dataset_csv("us", csv.as_bytes(), OnBadRows::Skip).unwrap();
    assert_eq!(d.names, ["Springfield", "Springfield"]);
    assert_eq!(d.targets, vec![vec![39.8, -89.6], vec![42.1, -72.6]]);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "line 4: duplicate row: 'Springfield' with the same position as line 2"
    );
    // Stopping at bad rows still names the repeated row.
    let err = read_dataset_csv("us", csv.as_bytes(), OnBadRows::Stop).unwrap_err();
    assert!(err.to_string().contains("line 4: duplicate row"), "{err}");
}
