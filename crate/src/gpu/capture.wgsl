// Capture of the residual stream: for each capture c, the mean of rows
// spans[2c]..spans[2c] + spans[2c + 1] of x (one row for "last token"), written to
// out[layer][c][d]. Sums run in row order, then divide, as the CPU path does.

struct Params {
    n_caps: u32,
    d: u32,
    layer: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> spans: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.x + wg.y * nwg.x) * 64u + li;
    if (i >= p.n_caps * p.d) {
        return;
    }
    let c = i / p.d;
    let col = i % p.d;
    let first = spans[2u * c];
    let n = spans[2u * c + 1u];
    var s = 0.0;
    for (var r = 0u; r < n; r++) {
        s += x[(first + r) * p.d + col];
    }
    out[(p.layer * p.n_caps + c) * p.d + col] = s / f32(n);
}
