//! CSV dataset importer: header aliases, years and dates, bad rows with their line numbers,
//! skip vs stop, broken files, and the built-in datasets.

use std::collections::BTreeSet;

use probelab::data::{
    builtin, dataset_hash, load_builtin, names_hash, parse_year, read_dataset_csv, read_names_csv,
    Dataset, OnBadRows, RowProblem, TargetKind, BUILTIN_NAMES,
};

fn read(text: &str) -> (Dataset, Vec<RowProblem>) {
    read_dataset_csv("t", text.as_bytes(), OnBadRows::Skip).expect("reads")
}

fn err(bytes: &[u8]) -> String {
    match read_dataset_csv("t", bytes, OnBadRows::Skip) {
        Ok((d, p)) => panic!("expected an error, got {} rows, problems {p:?}", d.len()),
        Err(e) => e.to_string(),
    }
}

fn lines(problems: &[RowProblem]) -> Vec<usize> {
    problems.iter().map(|p| p.line).collect()
}

// ----- headers ---------------------------------------------------------------------------------

#[test]
fn space_header_aliases_case_insensitive() {
    for header in [
        "name,latitude,longitude",
        "Entity,Lat,LNG",
        "CITY,LAT,LON",
        "place, lat , long",
        "Title,Latitude,Longitude",
        "label,lat,lng",
    ] {
        let (d, p) = read(&format!("{header}\nParis,48.85,2.35\nQuito,-0.22,-78.5\n"));
        assert!(p.is_empty(), "{header}: {p:?}");
        assert_eq!(d.kind, TargetKind::Space, "{header}");
        assert_eq!(d.names, ["Paris", "Quito"], "{header}");
        assert_eq!(
            d.targets,
            vec![vec![48.85, 2.35], vec![-0.22, -78.5]],
            "{header}"
        );
        assert!(d.groups.is_empty(), "{header}");
        assert_eq!(d.is_test, None);
    }
}

#[test]
fn time_header_aliases_and_groups() {
    let (d, p) = read("Person,Year,Kind,Century\nAda Lovelace,1815,person,19th century\n");
    assert!(p.is_empty());
    assert_eq!(d.kind, TargetKind::Time);
    assert_eq!(d.names, ["Ada Lovelace"]);
    assert_eq!(d.targets, vec![vec![1815.0]]);
    assert_eq!(d.groups.keys().collect::<Vec<_>>(), ["century", "kind"]);
    assert_eq!(d.groups["kind"], ["person"]);
    let (d, _) = read("title,DATE\nApollo 11 landing,1969-07-20\n");
    assert_eq!(d.kind, TargetKind::Time);
    assert_eq!(d.targets, vec![vec![1969.0]]);
}

#[test]
fn name_column_preference_and_other_columns_are_groups() {
    // 'name' wins over 'title'; the title column becomes a group, keyed in lower case.
    let (d, _) = read("Title,Name,Lat,Lon,Country,Year\nDr,Bern,46.95,7.45,Switzerland,1191\n");
    assert_eq!(d.names, ["Bern"]);
    assert_eq!(
        d.kind,
        TargetKind::Space,
        "lat+lon wins; a year column is a group"
    );
    assert_eq!(
        d.groups.keys().collect::<Vec<_>>(),
        ["country", "title", "year"]
    );
    assert_eq!(d.groups["country"], ["Switzerland"]);
    assert_eq!(d.groups["year"], ["1191"]);
}

#[test]
fn is_test_column() {
    let (d, p) = read(
        "name,year,is_test\na,1900,true\nb,1901,0\nc,1902,YES\nd,1903,no\ne,1904,\nf,1905,1\n",
    );
    assert!(p.is_empty());
    assert_eq!(d.is_test, Some(vec![true, false, true, false, false, true]));
    assert!(!d.groups.contains_key("is_test"));
    let (d, p) = read("name,year,is_test\na,1900,maybe\nb,1901,false\n");
    assert_eq!(d.names, ["b"]);
    assert_eq!(lines(&p), [2]);
    assert!(p[0].message.contains("is_test"), "{}", p[0].message);
}

#[test]
fn header_errors_name_what_was_seen() {
    let e = err(b"name,country\nParis,France\n");
    assert!(
        e.contains("no target columns") && e.contains("[name, country]"),
        "{e}"
    );
    let e = err(b"name,lat,country\nParis,48.8,France\n");
    assert!(e.contains("no longitude column"), "{e}");
    let e = err(b"name,lon\nParis,2.3\n");
    assert!(e.contains("no latitude column"), "{e}");
    let e = err(b"country,lat,lon\nFrance,48.8,2.3\n");
    assert!(e.contains("no name column") && e.contains("country"), "{e}");
    let e = err(b"name,lat,latitude,lon\nParis,1,1,1\n");
    assert!(e.contains("'lat' and 'latitude'"), "{e}");
    let e = err(b"name,year,Year\nx,1,1\n");
    assert!(e.contains("more than once") && e.contains("year"), "{e}");
}

// ----- years and dates -------------------------------------------------------------------------

#[test]
fn years_and_dates() {
    for (cell, year) in [
        ("1969", 1969),
        (" 1969 ", 1969),
        ("+1969", 1969),
        ("1969.0", 1969),
        ("1969-07-20", 1969),
        ("1969-07", 1969),
        ("1969-07-20T20:17:40Z", 1969),
        ("1969/07/20", 1969),
        ("20/07/1969", 1969),
        ("07/20/1969", 1969),
        ("20.07.1969", 1969),
        ("July 20, 1969", 1969),
        ("20 July 1969", 1969),
        ("Jul 1969", 1969),
        ("-44", -44),
        ("44 BC", -44),
        ("44 bc", -44),
        ("44 BCE", -44),
        ("44BC", -44),
        ("44 B.C.", -44),
        ("-0044-03-15", -44),
        ("AD 800", 800),
        ("800 AD", 800),
        ("800 CE", 800),
        ("c. 1500", 1500),
        ("circa 1500", 1500),
        ("ca. 1500", 1500),
        ("c. 500 BC", -500),
        ("476", 476),
    ] {
        assert_eq!(parse_year(cell), Ok(year), "{cell:?}");
    }
    for cell in [
        "",
        " ",
        "abc",
        "1969.5",
        "1960s",
        "0",
        "0 AD",
        "13/13/1969",
        "1969-13-01",
        "-44 BC",
        "July",
        "5th century",
        "NaN",
        "1,969",
    ] {
        assert!(parse_year(cell).is_err(), "{cell:?} should not parse");
    }
    assert!(parse_year("0").unwrap_err().contains("year 0"));
    assert!(parse_year("").unwrap_err().contains("missing year"));
}

#[test]
fn dates_in_a_file() {
    let (d, p) = read(
        "event,date\nMoon landing,1969-07-20\nIdes of March,44 BC\nCoronation of Charlemagne,\"December 25, 800\"\n",
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(d.targets, vec![vec![1969.0], vec![-44.0], vec![800.0]]);
}

// ----- bad rows --------------------------------------------------------------------------------

/// Every kind of bad row, a good row with a quoted two-line name, and a bad row after it.
const BAD: &str = "name,lat,lon,country
Paris,48.85,2.35,France
,10,10,Nowhere
Berlin,,13.4,Germany
Rome,abc,12.5,Italy
North,91,0,Arctic
East,0,181,Pacific
Paris,48.85,2.35,France
Short,1,1
\"Two
lines\",1,2,Somewhere
Far,95,2,Beyond
Inf,inf,2,Beyond
Lima,-12.05,-77.04,Peru
";

const BAD_LINES: [usize; 9] = [3, 4, 5, 6, 7, 8, 9, 12, 13];

fn check_bad(text: &str) {
    let (d, p) = read_dataset_csv("bad", text.as_bytes(), OnBadRows::Skip).unwrap();
    assert_eq!(d.names, ["Paris", "Two\nlines", "Lima"]);
    assert_eq!(
        d.targets,
        vec![vec![48.85, 2.35], vec![1.0, 2.0], vec![-12.05, -77.04]]
    );
    assert_eq!(d.groups["country"], ["France", "Somewhere", "Peru"]);
    assert_eq!(lines(&p), &BAD_LINES);
    let expect = [
        "empty name",
        "missing latitude",
        "latitude 'abc' is not a number",
        "latitude 91 is outside -90..90",
        "longitude 181 is outside -180..180",
        "duplicate row: 'Paris' with the same position as line 2",
        "expected 4 fields (as in the header), found 3",
        "latitude 95 is outside -90..90",
        "latitude 'inf' is not a number",
    ];
    for (problem, want) in p.iter().zip(expect) {
        assert_eq!(problem.message, want, "line {}", problem.line);
    }
    assert_eq!(p[0].to_string(), "line 3: empty name");
}

#[test]
fn every_bad_row_kind_with_its_line() {
    check_bad(BAD);
}

#[test]
fn crlf_and_bom_keep_line_numbers() {
    let crlf = BAD.replace('\n', "\r\n");
    check_bad(&crlf);
    check_bad(&format!("\u{feff}{BAD}"));
    check_bad(&format!("\u{feff}{crlf}"));
}

#[test]
fn stop_lists_the_bad_rows() {
    let e = read_dataset_csv("bad", BAD.as_bytes(), OnBadRows::Stop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("9 of 12 data rows have problems"), "{e}");
    for line in &BAD_LINES {
        assert!(e.contains(&format!("line {line}: ")), "line {line} in {e}");
    }
    // A clean file reads the same with Stop and Skip.
    let good = "name,lat,lon\nA,1,2\nB,3,4\n";
    let (a, pa) = read_dataset_csv("g", good.as_bytes(), OnBadRows::Stop).unwrap();
    let (b, pb) = read_dataset_csv("g", good.as_bytes(), OnBadRows::Skip).unwrap();
    assert_eq!(a, b);
    assert!(pa.is_empty() && pb.is_empty());
}

#[test]
fn stop_lists_twenty_then_counts() {
    let mut text = String::from("name,year\n");
    for i in 0..30 {
        text.push_str(&format!("n{i},not a year\n"));
    }
    text.push_str("ok,1900\n");
    let e = read_dataset_csv("many", text.as_bytes(), OnBadRows::Stop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("30 of 31 data rows"), "{e}");
    assert!(e.contains("line 21: ") && !e.contains("line 22: "), "{e}");
    assert!(e.contains("and 10 more"), "{e}");
    let (d, p) = read_dataset_csv("many", text.as_bytes(), OnBadRows::Skip).unwrap();
    assert_eq!(d.names, ["ok"]);
    assert_eq!(p.len(), 30);
    assert_eq!(p[29].line, 31);
}

#[test]
fn skip_with_nothing_left_is_an_error() {
    let e = err(b"name,lat,lon\nA,100,0\nB,x,0\n");
    assert!(
        e.contains("no usable rows") && e.contains("line 2") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn unclosed_quote_gets_a_hint() {
    let (d, p) = read("name,lat,lon\nA,1,2\n\"B,3,4\nC,5,6\n");
    assert_eq!(d.names, ["A"]);
    assert_eq!(lines(&p), [3]);
    assert!(p[0].message.contains("closing quote"), "{}", p[0].message);
}

#[test]
fn blank_rows_are_ignored_not_counted() {
    let (d, p) = read("\n\nname,year\n\na,1900\n,\n  \nb,1901\n\n");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(d.names, ["a", "b"]);
    // Line numbers still count the blank lines.
    let (_, p) = read("name,year\n\na,1900\nb,x\n");
    assert_eq!(lines(&p), [4]);
}

#[test]
fn semicolon_and_tab_delimiters() {
    let (d, p) = read("name;lat;lon\nParis;48.85;2.35\n");
    assert!(p.is_empty());
    assert_eq!(d.targets, vec![vec![48.85, 2.35]]);
    let (d, _) = read("name\tyear\nx\t1900\n");
    assert_eq!(d.targets, vec![vec![1900.0]]);
}

// ----- broken files ----------------------------------------------------------------------------

#[test]
fn empty_header_only_headerless_and_non_utf8_files() {
    for empty in [&b""[..], b"\n\n", b"   \r\n", "\u{feff}".as_bytes()] {
        let e = err(empty);
        assert!(e.contains("empty"), "{empty:?}: {e}");
    }
    let e = err(b"name,lat,lon\n");
    assert!(
        e.contains("header line") && e.contains("no data rows"),
        "{e}"
    );
    let e = err(b"name,year\r\n\r\n");
    assert!(e.contains("no data rows"), "{e}");
    let e = err(b"Paris,48.85,2.35\nLima,-12.05,-77.04\n");
    assert!(
        e.contains("looks like data") && e.contains("no header"),
        "{e}"
    );
    let e = err(b"Apollo 11,1969-07-20\n");
    assert!(e.contains("looks like data"), "{e}");
    let e = err(b"name,year\nCaf\xe9,1900\n");
    assert!(e.contains("not UTF-8") && e.contains("line 2"), "{e}");
}

// ----- hashing ---------------------------------------------------------------------------------

#[test]
fn dataset_hash_covers_names_and_targets_only() {
    let (a, _) = read("name,lat,lon,country\nA,1,2,X\nB,3,4,Y\n");
    let (b, _) = read("lat,country,name,lon\n1,Z,A,2\n3,Z,B,4\n");
    assert_eq!(
        dataset_hash(&a),
        dataset_hash(&b),
        "groups and column order do not count"
    );
    let (c, _) = read("name,lat,lon\nB,3,4\nA,1,2\n");
    assert_ne!(dataset_hash(&a), dataset_hash(&c), "order counts");
    let (e, _) = read("name,lat,lon\nA,1,2\nB,3,4.000001\n");
    assert_ne!(dataset_hash(&a), dataset_hash(&e));
    let (z, _) = read("name,lat,lon\nA,-0,0\n");
    let (z2, _) = read("name,lat,lon\nA,0,0\n");
    assert_eq!(dataset_hash(&z), dataset_hash(&z2), "-0 is 0");
    // Pinned: a change here changes every stored dataset_hash.
    assert_eq!(
        dataset_hash(&a),
        "4a6e5a6479f5c9279a92e40d173a4930e6769dbe724a6e97fce21cd2b6815bef"
    );
    assert_eq!(dataset_hash(&a).len(), 64);
}

#[test]
fn names_csv_reader_unchanged() {
    assert_eq!(
        read_names_csv(b"name,x\nParis,1\nLima,2\n").unwrap(),
        ["Paris", "Lima"]
    );
    assert_eq!(read_names_csv(b"Paris\nLima\n").unwrap(), ["Paris", "Lima"]);
    assert!(read_names_csv(b"").is_err());
    assert_eq!(
        names_hash(&["a".to_string()]),
        names_hash(&["a".to_string()])
    );
}

// ----- built-in datasets -----------------------------------------------------------------------

fn load_clean(name: &str) -> Dataset {
    let text = builtin(name).unwrap_or_else(|| panic!("builtin {name}"));
    let (d, problems) = read_dataset_csv(name, text.as_bytes(), OnBadRows::Skip).unwrap();
    assert!(problems.is_empty(), "{name}: {problems:?}");
    assert_eq!(d.name, name);
    let unique: BTreeSet<_> = d.names.iter().collect();
    assert_eq!(unique.len(), d.len(), "{name}: names are unique");
    d
}

const CONTINENTS: [&str; 6] = [
    "Africa",
    "Asia",
    "Europe",
    "North America",
    "Oceania",
    "South America",
];

#[test]
fn builtin_world_places() {
    let d = load_clean("world-places");
    assert_eq!(d.kind, TargetKind::Space);
    assert!(d.len() >= 5000, "{}", d.len());
    for key in ["country", "continent", "population"] {
        assert_eq!(d.groups[key].len(), d.len(), "{key}");
    }
    for c in CONTINENTS {
        let n = d.groups["continent"].iter().filter(|x| *x == c).count();
        assert!(n >= 500, "{c}: {n}");
    }
    assert!(d.groups["continent"]
        .iter()
        .all(|c| CONTINENTS.contains(&c.as_str())));
    assert!(d.groups["population"]
        .iter()
        .all(|p| p.parse::<u64>().is_ok()));
    let paris = d.names.iter().position(|n| n == "Paris").expect("Paris");
    assert!((d.targets[paris][0] - 48.85).abs() < 0.1 && (d.targets[paris][1] - 2.35).abs() < 0.1);
    assert_eq!(d.groups["country"][paris], "France");
    // Latitudes reach both hemispheres, longitudes go round the world.
    let lat: Vec<f64> = d.targets.iter().map(|t| t[0]).collect();
    let lon: Vec<f64> = d.targets.iter().map(|t| t[1]).collect();
    assert!(lat.iter().cloned().fold(f64::MAX, f64::min) < -40.0);
    assert!(lat.iter().cloned().fold(f64::MIN, f64::max) > 60.0);
    assert!(lon.iter().cloned().fold(f64::MAX, f64::min) < -150.0);
    assert!(lon.iter().cloned().fold(f64::MIN, f64::max) > 170.0);
}

#[test]
fn builtin_world_places_200_is_balanced_prefix() {
    let small = load_clean("world-places-200");
    let full = load_clean("world-places");
    assert_eq!(small.len(), 200);
    assert_eq!(small.kind, TargetKind::Space);
    assert_eq!(small.names[..], full.names[..200]);
    assert_eq!(small.targets[..], full.targets[..200]);
    for c in CONTINENTS {
        let n = small.groups["continent"].iter().filter(|x| *x == c).count();
        assert!((33..=34).contains(&n), "{c}: {n}");
    }
}

#[test]
fn builtin_historical_years() {
    let d = load_clean("historical-years");
    assert_eq!(d.kind, TargetKind::Time);
    assert!(d.len() >= 500, "{}", d.len());
    let years: Vec<f64> = d.targets.iter().map(|t| t[0]).collect();
    let (lo, hi) = (
        years.iter().cloned().fold(f64::MAX, f64::min),
        years.iter().cloned().fold(f64::MIN, f64::max),
    );
    assert!(hi - lo >= 1000.0, "{lo}..{hi}");
    assert!(lo < 0.0, "reaches BC: {lo}");
    for key in ["kind", "century", "category", "died"] {
        assert!(d.groups.contains_key(key), "{key}");
    }
    let kinds: BTreeSet<&str> = d.groups["kind"].iter().map(|s| s.as_str()).collect();
    assert!(
        kinds.contains("person") && kinds.contains("event"),
        "{kinds:?}"
    );
    let centuries: BTreeSet<&str> = d.groups["century"].iter().map(|s| s.as_str()).collect();
    assert!(centuries.len() >= 20, "{}", centuries.len());
    // The century column agrees with the year.
    for (y, c) in years.iter().zip(&d.groups["century"]) {
        let n = ((y.abs() as i64) - 1) / 100 + 1;
        assert!(c.starts_with(&n.to_string()), "{y} vs {c}");
        assert_eq!(*y < 0.0, c.ends_with(" BC"), "{y} vs {c}");
    }
    let shakespeare = d
        .names
        .iter()
        .position(|n| n == "William Shakespeare")
        .expect("Shakespeare");
    assert_eq!(years[shakespeare], 1564.0);
}

#[test]
fn builtin_historical_years_200() {
    let d = load_clean("historical-years-200");
    assert_eq!(d.len(), 200);
    assert_eq!(d.kind, TargetKind::Time);
    let full = load_clean("historical-years");
    assert!(d.names.iter().all(|n| full.names.contains(n)));
    let centuries: BTreeSet<&str> = d.groups["century"].iter().map(|s| s.as_str()).collect();
    assert!(centuries.len() >= 20, "{}", centuries.len());
}

#[test]
fn builtin_names_and_loader() {
    for name in BUILTIN_NAMES {
        assert!(builtin(name).is_some(), "{name}");
        let d = load_builtin(name).unwrap();
        assert!(!d.is_empty());
    }
    assert!(builtin("nope").is_none());
    let e = load_builtin("nope").unwrap_err().to_string();
    assert!(
        e.contains("world-places") && e.contains("historical-years"),
        "{e}"
    );
}

#[test]
fn block_columns_are_those_with_a_few_distinct_values() {
    // continent: 3 values (offered); population: one per row past the limit (not offered);
    // planet: a single value (nothing to hold out).
    let mut text = String::from("name,lat,lon,continent,population,planet\n");
    for i in 0..60 {
        let continent = ["Europe", "Asia", "Africa"][i % 3];
        text += &format!(
            "p{i},{},{},{continent},{},Earth\n",
            i % 80,
            i % 170,
            1000 + i
        );
    }
    let (d, problems) = read(&text);
    assert!(problems.is_empty());
    assert_eq!(d.block_columns(), vec!["continent"]);
    const _: () = assert!(
        probelab::data::MAX_BLOCKS < 60,
        "population must exceed the limit"
    );
}
