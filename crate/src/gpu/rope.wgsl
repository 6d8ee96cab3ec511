// Rotary position embedding in GGUF/llama.cpp order: adjacent pairs (2i, 2i+1) of each head
// turn by pos * theta^(-2i/hd). Positions count from each sequence's first token. The cos/sin
// table [pos][hd/2][2] comes from the CPU (the same f64 maths as the CPU path).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> seq_start: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = (wg.x + wg.y * nwg.x) * 64u + li;
    let half = p.head_dim / 2u;
    let per_token = p.n_heads * half;
    let t = g / per_token;
    if (t >= p.n_tokens) {
        return;
    }
    let r = g % per_token;
    let head = r / half;
    let i = r % half;
    let pos = t - seq_start[t];
    let c = table[(pos * half + i) * 2u];
    let s = table[(pos * half + i) * 2u + 1u];
    let at = t * p.n_heads * p.head_dim + head * p.head_dim + 2u * i;
    let x0 = x[at];
    let x1 = x[at + 1u];
    x[at] = x0 * c - x1 * s;
    x[at + 1u] = x0 * s + x1 * c;
}
