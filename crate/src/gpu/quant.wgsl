// Reading GGUF blocks straight out of the weight buffer `w: array<u32>` (declared by the shader
// that includes this file). Blocks keep their file layout; a block may start at any even byte,
// so bytes are picked out of u32 words, and f16 scales are decoded by hand (no shader-f16).
//
// Every decoder returns the 8 consecutive values k..k+8 (k a multiple of 8) of the row that
// starts at byte `base`. Eight values always share one block and one sub-block scale.

fn byte_at(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// Four bytes from any offset, little-endian.
fn word_at(o: u32) -> u32 {
    let s = (o & 3u) * 8u;
    let lo = w[o >> 2u];
    let hi = w[(o >> 2u) + 1u];
    return select((lo >> s) | (hi << (32u - s)), lo, s == 0u);
}

// IEEE binary16 bits to f32, subnormals included.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        let v = f32(m) * 5.9604644775390625e-8; // m * 2^-24
        return select(v, -v, sign != 0u);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// The f16 at an even byte offset.
fn half_at(o: u32) -> f32 {
    return half_to_f32((w[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu);
}

// The 8 bytes starting at o.
fn bytes8(o: u32) -> array<u32, 8> {
    let a = word_at(o);
    let b = word_at(o + 4u);
    var q: array<u32, 8>;
    for (var i = 0u; i < 4u; i++) {
        q[i] = (a >> (8u * i)) & 0xffu;
        q[i + 4u] = (b >> (8u * i)) & 0xffu;
    }
    return q;
}

// The nibbles at `shift` (0: low, 4: high) of the 8 bytes starting at o.
fn nibbles8(o: u32, shift: u32) -> array<u32, 8> {
    var q = bytes8(o);
    for (var i = 0u; i < 8u; i++) {
        q[i] = (q[i] >> shift) & 0xfu;
    }
    return q;
}

fn sext8(b: u32) -> f32 {
    return f32(bitcast<i32>(b << 24u) >> 24u);
}

fn dq8_f32(base: u32, k: u32) -> array<f32, 8> {
    var y: array<f32, 8>;
    let o = (base >> 2u) + k;
    for (var i = 0u; i < 8u; i++) {
        y[i] = bitcast<f32>(w[o + i]);
    }
    return y;
}

fn dq8_f16(base: u32, k: u32) -> array<f32, 8> {
    var y: array<f32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let h = word_at(base + 2u * k + 4u * i);
        y[2u * i] = half_to_f32(h & 0xffffu);
        y[2u * i + 1u] = half_to_f32(h >> 16u);
    }
    return y;
}

fn dq8_bf16(base: u32, k: u32) -> array<f32, 8> {
    var y: array<f32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let h = word_at(base + 2u * k + 4u * i);
        y[2u * i] = bitcast<f32>(h << 16u);
        y[2u * i + 1u] = bitcast<f32>(h & 0xffff0000u);
    }
    return y;
}

// Q4_0: 32 values in 18 bytes: d (f16), 16 bytes of nibbles; value j < 16 is the low nibble of
// byte j, value j + 16 its high nibble; x = (q - 8) * d.
fn dq8_q4_0(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 32u) * 18u;
    let j = k % 32u;
    let d = half_at(o);
    let q = nibbles8(o + 2u + j % 16u, select(0u, 4u, j >= 16u));
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        y[i] = (f32(q[i]) - 8.0) * d;
    }
    return y;
}

// Q4_1: 20 bytes: d, m (f16), 16 bytes of nibbles; x = q * d + m.
fn dq8_q4_1(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 32u) * 20u;
    let j = k % 32u;
    let d = half_at(o);
    let m = half_at(o + 2u);
    let q = nibbles8(o + 4u + j % 16u, select(0u, 4u, j >= 16u));
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        y[i] = f32(q[i]) * d + m;
    }
    return y;
}

// Q5_0: 22 bytes: d, 32 high bits (bit j belongs to value j), 16 bytes of nibbles;
// x = (q - 16) * d.
fn dq8_q5_0(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 32u) * 22u;
    let j = k % 32u;
    let d = half_at(o);
    let qh = word_at(o + 2u);
    let q = nibbles8(o + 6u + j % 16u, select(0u, 4u, j >= 16u));
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let hb = (qh >> (j + i)) & 1u;
        y[i] = (f32(q[i] | (hb << 4u)) - 16.0) * d;
    }
    return y;
}

// Q5_1: 24 bytes: d, m, 32 high bits, 16 bytes of nibbles; x = q * d + m.
fn dq8_q5_1(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 32u) * 24u;
    let j = k % 32u;
    let d = half_at(o);
    let m = half_at(o + 2u);
    let qh = word_at(o + 4u);
    let q = nibbles8(o + 8u + j % 16u, select(0u, 4u, j >= 16u));
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let hb = (qh >> (j + i)) & 1u;
        y[i] = f32(q[i] | (hb << 4u)) * d + m;
    }
    return y;
}

// Q8_0: 34 bytes: d, 32 signed bytes; x = q * d.
fn dq8_q8_0(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 32u) * 34u;
    let d = half_at(o);
    let q = bytes8(o + 2u + k % 32u);
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        y[i] = sext8(q[i]) * d;
    }
    return y;
}

// Q2_K: 256 values in 84 bytes: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of
// 2-bit values, d, dmin. Value e: half n = e / 128, shift 2 * ((e % 128) / 32), byte
// 32 n + e % 32, scale byte 8 n + 2 ((e % 128) / 32) + (e % 32) / 16.
fn dq8_q2_k(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 256u) * 84u;
    let e = k % 256u;
    let n = e / 128u;
    let j = (e % 128u) / 32u;
    let l = e % 32u;
    let sc = byte_at(o + 8u * n + 2u * j + l / 16u);
    let dl = half_at(o + 80u) * f32(sc & 0xfu);
    let ml = half_at(o + 82u) * f32(sc >> 4u);
    let q = bytes8(o + 16u + 32u * n + l);
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        y[i] = dl * f32((q[i] >> (2u * j)) & 3u) - ml;
    }
    return y;
}

// Q3_K: 110 bytes: 32 bytes of high bits (bit 4 n + j of byte e % 32), 64 bytes of 2-bit
// values (as Q2_K), 12 bytes of packed 6-bit scales, d; x = d * (scale - 32) * (q - 4 * !high).
fn dq8_q3_k(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 256u) * 110u;
    let e = k % 256u;
    let n = e / 128u;
    let j = (e % 128u) / 32u;
    let l = e % 32u;
    let is = 8u * n + 2u * j + l / 16u;
    let g = is / 4u;
    let b = is % 4u;
    let lo = (byte_at(o + 96u + (g % 2u) * 4u + b) >> (4u * (g / 2u))) & 0xfu;
    let hi = (byte_at(o + 104u + b) >> (2u * g)) & 3u;
    let dl = half_at(o + 108u) * (f32(lo | (hi << 4u)) - 32.0);
    let hm = bytes8(o + l);
    let q = bytes8(o + 32u + 32u * n + l);
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let v = i32((q[i] >> (2u * j)) & 3u) - select(4, 0, ((hm[i] >> (4u * n + j)) & 1u) != 0u);
        y[i] = dl * f32(v);
    }
    return y;
}

// The 6-bit scale and min of sub-block sb (0..8) of a Q4_K/Q5_K block whose 12 scale bytes
// start at s (ggml's get_scale_min_k4).
fn scale_min_k4(s: u32, sb: u32) -> vec2<f32> {
    if (sb < 4u) {
        return vec2<f32>(f32(byte_at(s + sb) & 63u), f32(byte_at(s + sb + 4u) & 63u));
    }
    let sc = (byte_at(s + sb + 4u) & 0xfu) | ((byte_at(s + sb - 4u) >> 6u) << 4u);
    let m = (byte_at(s + sb + 4u) >> 4u) | ((byte_at(s + sb) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Q4_K: 144 bytes: d, dmin, 12 scale bytes, 128 bytes of nibbles. Each 64 values share 32
// bytes: the first 32 are low nibbles (sub-block 2c), the next 32 high nibbles (2c + 1).
fn dq8_q4_k(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 256u) * 144u;
    let e = k % 256u;
    let c = e / 64u;
    let hi = (e % 64u) / 32u;
    let sm = scale_min_k4(o + 4u, 2u * c + hi);
    let d1 = half_at(o) * sm.x;
    let m1 = half_at(o + 2u) * sm.y;
    let q = nibbles8(o + 16u + 32u * c + e % 32u, 4u * hi);
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        y[i] = d1 * f32(q[i]) - m1;
    }
    return y;
}

// Q5_K: 176 bytes: d, dmin, 12 scale bytes, 32 bytes of high bits (bit 2c + hi of byte e % 32),
// 128 bytes of nibbles laid out as Q4_K.
fn dq8_q5_k(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 256u) * 176u;
    let e = k % 256u;
    let c = e / 64u;
    let hi = (e % 64u) / 32u;
    let l = e % 32u;
    let sm = scale_min_k4(o + 4u, 2u * c + hi);
    let d1 = half_at(o) * sm.x;
    let m1 = half_at(o + 2u) * sm.y;
    let q = nibbles8(o + 48u + 32u * c + l, 4u * hi);
    let qh = bytes8(o + 16u + l);
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let hb = (qh[i] >> (2u * c + hi)) & 1u;
        y[i] = d1 * f32(q[i] + 16u * hb) - m1;
    }
    return y;
}

// Q6_K: 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales, d.
// Value e: half n = e / 128, quarter r = (e % 128) / 32, l = e % 32: low nibble from byte
// 64 n + 32 (r % 2) + l (high nibble when r >= 2), high bits 2r of byte 32 n + l,
// scale 8 n + 2 r + l / 16; x = d * scale * (q - 32).
fn dq8_q6_k(base: u32, k: u32) -> array<f32, 8> {
    let o = base + (k / 256u) * 210u;
    let e = k % 256u;
    let n = e / 128u;
    let r = (e % 128u) / 32u;
    let l = e % 32u;
    let ql = nibbles8(o + 64u * n + 32u * (r % 2u) + l, 4u * (r / 2u));
    let qh = bytes8(o + 128u + 32u * n + l);
    let sc = half_at(o + 208u) * sext8(byte_at(o + 192u + 8u * n + 2u * r + l / 16u));
    var y: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = i32(ql[i] | (((qh[i] >> (2u * r)) & 3u) << 4u)) - 32;
        y[i] = sc * f32(q);
    }
    return y;
}
