"""The worker engines for Hugging Face models: transformers (`--engine hf`) and nnsight
(`--engine nnsight`, the same model traced, on this machine or with `--remote` on NDIF).

Both give what `probelab extract` gives: for each name, the residual stream at the name's last
token (`--pool last`) or the mean over its tokens (`mean`), at every layer, in Probelab's
convention: index 0 is the embedding output and index i the stream after block i. HF's
`hidden_states` follow it except at the last index, where transformers has applied the model's
final norm; the last block's raw output is taken from the block itself instead.

torch and transformers are not in requirements.txt: torch's PyPI wheel brings its CUDA
libraries (about 5 GB installed). requirements-hf.txt pins them; `setup.sh --hf` installs them.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

# As Probelab writes it (crate/src/model/mod.rs, LAYER_CONVENTION).
LAYER_CONVENTION = "layer 0 = embedding output; layer i (1..=L) = residual stream after block i"
PLACEHOLDERS = ("{name}", "{NAME}")


def render(template, name):
    """The prompt and the character span of the name in it, as Probelab's Template renders:
    the first placeholder is the name ({NAME}: in capitals)."""
    at = [(template.find(p), p) for p in PLACEHOLDERS if p in template]
    if not at:
        raise ValueError(f"prompt '{template}' has no {{name}} or {{NAME}}")
    start, p = min(at)
    text = name.upper() if p == "{NAME}" else name
    return template[:start] + text + template[start + len(p):], (start, start + len(text))


def name_tokens(offsets, span):
    """Positions of the tokens whose text overlaps the name (special tokens have empty spans),
    Probelab's rule (crate/src/extract/mod.rs, tokenize_entities)."""
    s0, e0 = span
    inside = [j for j, (s, e) in enumerate(offsets) if e > s and s < e0 and e > s0]
    if not inside:
        raise ValueError("the name produced no tokens")
    return list(range(inside[0], inside[-1] + 1))


def model_hash(model):
    """The sha256 the shards record: of the GGUF file, or of a local checkpoint's weight files
    in name order; a hub id is recorded as such (its files are not here to hash)."""
    p = Path(model)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) if p.is_dir() else []
    if not files:
        return f"not hashed: hub id {model}"
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as r:
            for block in iter(lambda: r.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class HFModel:
    """One HF model in one worker process, loaded once and kept for the shards that follow."""

    def __init__(self, model, engine="hf", remote=False, threads=1, device="cpu", dtype="float32"):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, threads))
        self.torch, self.engine, self.remote = torch, engine, remote
        p = Path(model)
        # A GGUF goes through transformers' own GGUF loader (dequantized to float32).
        kw = {"gguf_file": p.name} if p.is_file() else {}
        where = str(p.parent) if p.is_file() else model
        self.tok = AutoTokenizer.from_pretrained(where, **kw)
        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(
            where, dtype=getattr(torch, dtype), **kw).eval().to(device)
        self.n_layers = self.model.config.num_hidden_layers
        self.tool = (f"transformers {transformers.__version__} (torch {torch.__version__}, "
                     f"{dtype} on {device})")
        if engine == "nnsight":
            import nnsight
            from nnsight import TransformersModel

            self.lm = TransformersModel(self.model, tokenizer=self.tok)
            self.tool = f"nnsight {nnsight.__version__}{' on NDIF' if remote else ''}, {self.tool}"
        self.model_name = getattr(self.model.config, "_name_or_path", "") or p.name

    def _layers(self, ids):
        """[L+1, T, d]: the embedding output, then each block's raw output."""
        torch = self.torch
        if self.engine == "nnsight":
            import nnsight

            # Only saved values leave a trace's body: the list is saved, the outputs appended.
            with self.lm.trace(ids, remote=self.remote):
                emb = self.lm.model.embed_tokens.output.save()
                outs = nnsight.save([])
                for block in self.lm.model.layers:
                    outs.append(block.output)
            outs = [o[0] if isinstance(o, tuple) else o for o in outs]
            return torch.stack([emb[0]] + [o[0] for o in outs])
        raw = {}
        hook = self.model.model.layers[-1].register_forward_hook(
            lambda mod, inp, out: raw.__setitem__("h", out[0] if isinstance(out, tuple) else out))
        try:
            out = self.model(ids, output_hidden_states=True)
        finally:
            hook.remove()
        # hidden_states[-1] is after the final norm; Probelab's last layer is the raw stream.
        return torch.stack([h[0] for h in out.hidden_states[:-1]] + [raw["h"][0]])

    def extract(self, names, template, pool):
        """Activations [L+1, n, d] float32, tokens per entity, and each name's first token id."""
        torch = self.torch
        acts, tokens, first = [], [], []
        with torch.no_grad():
            for i, name in enumerate(names):
                prompt, span = render(template, name)
                enc = self.tok(prompt, add_special_tokens=True, return_offsets_mapping=True)
                try:
                    pos = name_tokens(enc["offset_mapping"], span)
                except ValueError as e:
                    raise ValueError(f"entity {i + 1} ('{name}'): {e}") from None
                layers = self._layers(torch.tensor([enc["input_ids"]], device=self.device))
                picked = layers[:, pos[-1]] if pool == "last" else layers[:, pos].mean(dim=1)
                acts.append(picked.float().cpu().numpy())
                tokens.append(len(enc["input_ids"]))
                first.append(enc["input_ids"][pos[0]])
        return (np.ascontiguousarray(np.stack(acts, axis=1), dtype=np.float32),
                np.array(tokens, dtype=np.uint32), np.array(first, dtype=np.uint32))


_LOADED = {}


def extract_shard(names, cfg, path):
    """Runs the shard's names and writes them to `path` in Probelab's layout (what
    `probelab extract` writes: `activations` [L+1, n, d] and the metadata)."""
    from safetensors.numpy import save_file

    key = (cfg["model"], cfg["engine"], cfg["remote"], cfg["hf_device"], cfg["hf_dtype"])
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = HFModel(cfg["model"], cfg["engine"], cfg["remote"], cfg["threads"],
                               cfg["hf_device"], cfg["hf_dtype"])
    m = _LOADED[key]
    acts, tokens, first = m.extract(names, cfg["prompt"], cfg["pool"])
    # Probelab's dataset hash of a names list (crate/src/data.rs, names_hash).
    names_hash = hashlib.sha256("".join(n + "\n" for n in names).encode()).hexdigest()
    meta = {
        "model_name": m.model_name,
        "model_sha256": cfg["model_sha256"],
        "dataset_name": cfg["dataset_name"],
        "dataset_hash": names_hash,
        "prompt_template": cfg["prompt"],
        "pool": cfg["pool"],
        "layer_convention": LAYER_CONVENTION,
        "names": json.dumps(names, ensure_ascii=False),
        "tool": m.tool,
    }
    # Beside the probelab engine's partial files: a killed worker's is cleared with them.
    tmp = os.path.join(os.path.dirname(path), "tmp", f"{os.path.basename(path)}.{os.getpid()}.partial")
    save_file({"activations": acts, "tokens_per_entity": tokens, "first_token_ids": first},
              tmp, metadata=meta)
    os.replace(tmp, path)
    return m.tool
