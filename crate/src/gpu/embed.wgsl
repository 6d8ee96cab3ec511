// Embedding lookup: out[t] = dequantized row ids[t] of token_embd, for the ids that fall in
// this weight part (rows row_start..row_start + n_rows). One invocation per 8 values.

struct Params {
    n_tokens: u32,
    d: u32,
    row_bytes: u32,
    row_start: u32,
    n_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = (wg.x + wg.y * nwg.x) * 64u + li;
    let per_token = p.d / 8u;
    let t = g / per_token;
    if (t >= p.n_tokens) {
        return;
    }
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.n_rows) {
        return;
    }
    let c = (g % per_token) * 8u;
    let v = dequant8((id - p.row_start) * p.row_bytes, c);
    for (var i = 0u; i < 8u; i++) {
        out[t * p.d + c + i] = v[i];
    }
}
