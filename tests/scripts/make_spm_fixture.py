#!/usr/bin/env python3
"""Build a small SentencePiece (Llama-style "llama" tokenizer model) fixture.

Outputs:
  tests/fixtures/spm_vocab.json          -- the vocabulary exactly as a GGUF
      converter (llama.cpp convert_hf_to_gguf.py, _create_vocab_sentencepiece)
      would store it in tokenizer.ggml.tokens / tokenizer.ggml.scores /
      tokenizer.ggml.token_type for tokenizer.ggml.model="llama":
      {"tokens": [...], "scores": [...f32...], "token_types": [...],
       "unk_id": 0, "bos_id": 1, "eos_id": 2, ...}
      token_types use the GGUF convention: 1 normal, 2 unknown, 3 control,
      4 user-defined, 5 unused, 6 byte.
  tests/fixtures/tokenizer_llama_spm.json -- {"reference": "sentencepiece <v>",
      "cases": [{"text", "ids"}]}, ids = SentencePieceProcessor.encode(text)
      (no BOS/EOS).

The model is trained here, deterministically (single thread, no sentence
sampling/shuffling), with settings mirroring Llama's tokenizer.model:
model_type=bpe, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
remove_extra_whitespaces=False, normalization_rule_name=identity,
allow_whitespace_only_pieces=True, unk/bos/eos = 0/1/2, no pad.
The training corpus (place names + English sentences, some Latin diacritics,
NO CJK/Cyrillic/Arabic/etc.) is generated in this script, so characters like
東京 must go through byte fallback (<0xE6>...).

Optional cross-check: the vocab is written to a vocab-only GGUF with gguf-py's
GGUFWriter (arch llama, no tensors) and tokenized by llama.cpp through
llama-cpp-python (Llama(vocab_only=True).tokenize(add_bos=False,
special=False)); agreement counts are printed and recorded in the JSON.

How it was run (exact versions in tests/scripts/requirements.txt):
    nice python3 tests/scripts/make_spm_fixture.py
with Python 3.11.7, sentencepiece 0.2.3, gguf 0.19.0, llama-cpp-python 0.3.36.
The trained model is also saved as tests/fixtures/spm_test.model (small) so
the fixture can be regenerated/inspected without retraining.
"""
import argparse
import io
import json
import os
import random
import sys
import tempfile
import unicodedata

import sentencepiece as spm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
SEED = 1234
VOCAB_SIZE = 1000

PLACES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague",
    "Warsaw", "Budapest", "Athens", "Dublin", "Oslo", "Stockholm", "Helsinki",
    "Copenhagen", "Amsterdam", "Brussels", "Bern", "Geneva", "Zürich", "Munich",
    "Hamburg", "Frankfurt", "Cologne", "Kraków", "Gdańsk", "Łódź", "Reykjavík",
    "São Paulo", "Rio de Janeiro", "Brasília", "Buenos Aires", "Bogotá", "Lima",
    "Santiago", "Quito", "Caracas", "Montevideo", "Asunción", "La Paz", "Mexico City",
    "Guadalajara", "Monterrey", "Havana", "Kingston", "Toronto", "Montréal", "Québec",
    "Vancouver", "Ottawa", "New York", "Los Angeles", "Chicago", "Houston", "Phoenix",
    "Philadelphia", "San Antonio", "San Diego", "Dallas", "San Francisco", "Seattle",
    "Boston", "Miami", "Atlanta", "Denver", "Cairo", "Lagos", "Nairobi", "Accra",
    "Dakar", "Addis Ababa", "Johannesburg", "Cape Town", "Casablanca", "Tunis",
    "Algiers", "Kinshasa", "Luanda", "Abidjan", "Yaoundé", "Lomé", "Côte d'Ivoire",
    "Tokyo", "Osaka", "Kyoto", "Seoul", "Busan", "Beijing", "Shanghai", "Shenzhen",
    "Hong Kong", "Taipei", "Manila", "Jakarta", "Bangkok", "Hanoi", "Singapore",
    "Kuala Lumpur", "Delhi", "Mumbai", "Kolkata", "Chennai", "Bangalore", "Karachi",
    "Lahore", "Dhaka", "Kathmandu", "Colombo", "Tehran", "Baghdad", "Riyadh", "Dubai",
    "Doha", "Istanbul", "Ankara", "Jerusalem", "Beirut", "Damascus", "Amman",
    "Moscow", "Saint Petersburg", "Kyiv", "Minsk", "Tbilisi", "Yerevan", "Baku",
    "Almaty", "Tashkent", "Ulaanbaatar", "Sydney", "Melbourne", "Brisbane", "Perth",
    "Auckland", "Wellington", "Málaga", "Sevilla", "Córdoba", "Göteborg", "Malmö",
    "Tromsø", "Düsseldorf", "Nürnberg", "Besançon", "Saint-Étienne", "Île-de-France",
]
COUNTRIES = [
    "France", "Germany", "Spain", "Italy", "Portugal", "Austria", "Poland", "Hungary",
    "Greece", "Ireland", "Norway", "Sweden", "Finland", "Denmark", "the Netherlands",
    "Belgium", "Switzerland", "Iceland", "Brazil", "Argentina", "Colombia", "Peru",
    "Chile", "Ecuador", "Venezuela", "Uruguay", "Paraguay", "Bolivia", "Mexico",
    "Cuba", "Jamaica", "Canada", "the United States", "Egypt", "Nigeria", "Kenya",
    "Ghana", "Senegal", "Ethiopia", "South Africa", "Morocco", "Tunisia", "Algeria",
    "Japan", "South Korea", "China", "Taiwan", "the Philippines", "Indonesia",
    "Thailand", "Vietnam", "Malaysia", "India", "Pakistan", "Bangladesh", "Nepal",
    "Sri Lanka", "Iran", "Iraq", "Saudi Arabia", "Turkey", "Israel", "Lebanon",
    "Syria", "Jordan", "Russia", "Ukraine", "Georgia", "Armenia", "Azerbaijan",
    "Kazakhstan", "Mongolia", "Australia", "New Zealand",
]
PEOPLE = [
    "Albert Einstein", "Marie Curie", "Isaac Newton", "Ada Lovelace", "Alan Turing",
    "Leonardo da Vinci", "Frédéric Chopin", "Antonín Dvořák", "Gabriel García Márquez",
    "Pelé", "Zinédine Zidane", "René Descartes", "Victor Hugo", "Émile Zola",
    "William Shakespeare", "Jane Austen", "Charles Dickens", "Nelson Mandela",
    "Mahatma Gandhi", "Confucius", "Napoleon", "Cleopatra", "Julius Caesar",
]
SENT_TEMPLATES = [
    "The city of {p} is located in {c}.",
    "{p} is the capital of {c}.",
    "{p} is one of the largest cities in {c}.",
    "I travelled from {p} to {q} in {y}.",
    "In {y}, {n} visited {p}.",
    "The population of {p} was about {k} people in {y}.",
    "{n} was born in {p}, {c}.",
    "She said that {p} is beautiful in the spring.",
    "The train from {p} to {q} takes {h} hours.",
    "What is the capital of {c}? It is {p}.",
    "There are {k} museums in {p}, and {h} of them are free.",
    "{p} and {q} are {h}00 km apart.",
    "The weather in {p} today is sunny, with a high of {h} degrees.",
    "He doesn't know where {p} is, but he's heard it's lovely.",
    "They're planning a trip to {c} next year; they'll start in {p}.",
    "The river flows through {p} before it reaches the sea.",
    "Many people in {c} speak more than one language.",
    "The museum in {p} opened on {d}/{m}/{y}.",
]
EXTRA_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "To be, or not to be, that is the question.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "It was the best of times, it was the worst of times.",
    "The café on the corner serves crème brûlée and a naïve rosé.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "Où est la gare? À gauche, puis tout droit.",
    "¿Dónde está la biblioteca? Está en la plaza mayor.",
    "The year 1984 was the title of a novel; pi is about 3.14159.",
    "Prices rose by 12.5% between 2019 and 2023.",
    "Call me at 555-0199 or email info@example.com.",
]


def build_corpus():
    rng = random.Random(SEED)
    lines = []
    for _ in range(6000):
        t = rng.choice(SENT_TEMPLATES)
        lines.append(t.format(p=rng.choice(PLACES), q=rng.choice(PLACES), c=rng.choice(COUNTRIES),
                              n=rng.choice(PEOPLE), y=rng.randint(1800, 2030),
                              k=f"{rng.randint(1000, 9999999):,}", h=rng.randint(1, 40),
                              d=rng.randint(1, 28), m=rng.randint(1, 12)))
    lines += PLACES + COUNTRIES + PEOPLE + EXTRA_SENTENCES * 5
    return lines


def train(corpus_lines):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        max_sentencepiece_length=16,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def gguf_vocab(sp):
    """Replicates convert_hf_to_gguf.py's _create_vocab_sentencepiece."""
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        score = sp.get_score(i)
        t = 1  # NORMAL
        if sp.is_unknown(i):
            t = 2
        elif sp.is_control(i):
            t = 3
        elif sp.is_unused(i):
            t = 5
        elif sp.is_byte(i):
            t = 6
        tokens.append(piece)
        scores.append(float(score))
        types.append(t)
    return tokens, scores, types


def test_strings():
    rng = random.Random(SEED + 1)
    s = [
        "Paris", " Paris", "  Paris", "Paris ", "Paris  ", "São Paulo", "Kraków", "東京",
        "Côte d'Ivoire", "Reykjavík", "Zürich", "Ōsaka", "Μόσχα", "Москва", "القاهرة",
        "दिल्ली", "北京", "서울", "🙂", "🇫🇷", "Paris 🗼", "1984", "3.14", "12345",
        "The capital of France is", "The city of Paris is located in",
        "a  b", "a   b", " ", "  ", "\t", "\n", "Paris\nFrance", "Paris\tFrance",
        "\nParis", "Paris\r\n", "don't", "it's", "O'Brien", "café", "cafe\u0301",
        "naïve", "straße", "Ångström", "ﬁ", "Ａｂｃ", "\u00a0nbsp", "zero\u200bwidth",
        "<s>", "</s>", "<unk>", "<0x41>", "▁", "▁Paris", "hello world", "HELLO WORLD",
        "x", "q", "Q", "Z", "~", "`", "^", "|", "{}", "[]", "\\", "€5", "£3", "¥100",
        "ŁÓDŹ", "Łódź", "Gdańsk", "İstanbul", "Hà Nội", "Ürümqi", "Tromsø", "Århus",
        "œuvre", "Æsir", "Þingvellir", "Ðakovo", "ß", "ẞ", "ǅ",
    ]
    # Sentences built from the corpus vocabulary plus new words.
    for _ in range(200):
        t = rng.choice(SENT_TEMPLATES)
        s.append(t.format(p=rng.choice(PLACES), q=rng.choice(PLACES), c=rng.choice(COUNTRIES),
                          n=rng.choice(PEOPLE), y=rng.randint(0, 3000),
                          k=f"{rng.randint(0, 10**9):,}", h=rng.randint(0, 999),
                          d=rng.randint(1, 31), m=rng.randint(1, 12)))
    s += PLACES + COUNTRIES[:40] + PEOPLE
    # Out-of-corpus words and scripts (byte fallback)
    oov = ["東京", "大阪", "京都", "北京", "上海", "香港", "서울", "부산", "Москва",
           "Київ", "Αθήνα", "Θεσσαλονίκη", "القاهرة", "الرياض", "תל אביב", "मुंबई",
           "ঢাকা", "กรุงเทพ", "თბილისი", "Երևան", "Улаанбаатар", "😀", "👍🏽", "❤️",
           "Xylophone", "zzz", "qwertyuiop", "Jxqv", "Ǆemal", "Ŋ", "ℵ", "∑", "√2"]
    for w in oov:
        s.append(w)
        s.append(f"{w} is a city.")
        s.append(f"I love {w}!")
    # Random mixes of chars (some in-corpus, some not) and whitespace
    ranges = [(0x20, 0x7E), (0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4FFF),
              (0x3041, 0x3093), (0x1F600, 0x1F64F), (0x30, 0x39)]
    ws = [" ", "  ", "\t", "\n", "   "]
    for _ in range(120):
        parts = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.3:
                parts.append(rng.choice(ws))
            else:
                lo, hi = rng.choice(ranges)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
        x = "".join(ch for ch in "".join(parts) if unicodedata.category(ch) not in ("Cn", "Cs"))
        s.append(x)
    seen, out = set(), []
    for x in s:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def llama_cpp_check(vocab, sp, strings):
    """Optional: write a vocab-only GGUF and tokenize with llama.cpp."""
    try:
        import gguf
        import llama_cpp
    except Exception as e:  # noqa: BLE001
        return {"status": f"skipped: {e!r}"}
    tokens, scores, types = vocab
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "spm_vocab_only.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_context_length(512)
        w.add_embedding_length(64)
        w.add_block_count(1)
        w.add_feed_forward_length(128)
        w.add_head_count(1)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(64)
        w.add_vocab_size(len(tokens))
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        try:
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        except Exception as e:  # noqa: BLE001
            return {"status": f"llama.cpp refused the vocab-only GGUF: {e!r}"}
        agree, dis = 0, []
        for s in strings:
            a = list(llm.tokenize(s.encode("utf-8"), add_bos=False, special=False))
            b = sp.encode(s)
            if a == b:
                agree += 1
            else:
                dis.append({"text": s, "llama_cpp": a, "sentencepiece": b})
        return {"status": "ran", "llama_cpp_python": llama_cpp.__version__, "agree": agree,
                "disagree": len(dis), "disagreements": dis}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outdir", default=FIX)
    args = ap.parse_args()

    corpus = build_corpus()
    model_bytes = train(corpus)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    print(f"sentencepiece {spm.__version__}: trained BPE, vocab {sp.get_piece_size()}, "
          f"corpus {len(corpus)} lines")
    assert sp.unk_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2

    tokens, scores, types = gguf_vocab(sp)
    from collections import Counter
    print("token types:", dict(Counter(types)))

    strings = test_strings()
    cases = []
    n_byte = 0
    for s in strings:
        ids = sp.encode(s)
        if any(types[i] == 6 for i in ids):
            n_byte += 1
        cases.append({"text": s, "ids": ids})

    check = llama_cpp_check((tokens, scores, types), sp, strings)
    if check.get("status") == "ran":
        print(f"llama.cpp ({check['llama_cpp_python']}) vs sentencepiece: "
              f"{check['agree']} agree, {check['disagree']} disagree")
        for d in check["disagreements"][:20]:
            print("  DISAGREE", repr(d["text"]), d["llama_cpp"], d["sentencepiece"])
    else:
        print("llama.cpp check:", check["status"])

    os.makedirs(args.outdir, exist_ok=True)
    vocab_json = {
        "tokenizer_model": "llama",
        "tokens": tokens, "scores": scores, "token_types": types,
        "unk_id": 0, "bos_id": 1, "eos_id": 2,
        "add_space_prefix": True,
        "note": "as written by llama.cpp convert_hf_to_gguf.py _create_vocab_sentencepiece; "
                "token_types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte",
    }
    with open(os.path.join(args.outdir, "spm_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab_json, f, ensure_ascii=False, indent=0)
        f.write("\n")
    ref = f"sentencepiece {spm.__version__} (SentencePieceProcessor.encode, no BOS/EOS)"
    if check.get("status") == "ran":
        ref += (f"; llama.cpp via llama-cpp-python {check['llama_cpp_python']} on a vocab-only GGUF "
                f"agrees on {check['agree']}/{len(strings)}")
    out = {"reference": ref, "cases": cases}
    if check.get("status") == "ran" and check["disagreements"]:
        out["llama_cpp_disagreements"] = check["disagreements"]
    with open(os.path.join(args.outdir, "tokenizer_llama_spm.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    with open(os.path.join(args.outdir, "spm_test.model"), "wb") as f:
        f.write(model_bytes)
    print(f"wrote spm_vocab.json, tokenizer_llama_spm.json ({len(cases)} cases, "
          f"{n_byte} using byte fallback), spm_test.model")
    for s in ["Paris", "東京", "São Paulo", "The capital of France is", "1984"]:
        print(f"  {s!r}: {sp.encode(s, out_type=str)} {sp.encode(s)}")
    if check.get("status") == "ran" and check["disagree"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
