// RMSNorm, one workgroup per token: out = x / sqrt(mean(x^2) + eps) * g (candle's order).

struct Params {
    n_tokens: u32,
    d: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let t = wg.x + wg.y * nwg.x;
    if (t >= p.n_tokens) {
        return;
    }
    let row = t * p.d;
    var s = 0.0;
    for (var i = li; i < p.d; i += 256u) {
        let v = x[row + i];
        s += v * v;
    }
    part[li] = s;
    workgroupBarrier();
    for (var n = 128u; n > 0u; n >>= 1u) {
        if (li < n) {
            part[li] += part[li + n];
        }
        workgroupBarrier();
    }
    let m = sqrt(part[0] / f32(p.d) + p.eps);
    for (var i = li; i < p.d; i += 256u) {
        out[row + i] = x[row + i] / m * g[i];
    }
}
