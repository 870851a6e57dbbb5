// Exact ray–voxel traversal (Siddon lengths, Jacobs order) of one DRR: one invocation per
// detector pixel. Mirrors `trace` in src/drr/project.rs, in f32.
//
// Coordinates are the volume's storage coordinates, where voxel v spans [v, v+1) and axis 0 is
// contiguous in `mu`; the `_w` vectors are the same points in millimetres (patient frame), used
// only for the ray's length.

struct Params {
    dims: vec4<u32>,   // n0, n1, n2, image width
    info: vec4<u32>,   // image height, unused ×3
    src: vec4<f32>,    // source, storage coordinates
    pix0: vec4<f32>,   // centre of pixel (0, 0)
    du: vec4<f32>,     // one column to the right
    dv: vec4<f32>,     // one row down
    src_w: vec4<f32>,  // the same four in mm
    pix0_w: vec4<f32>,
    du_w: vec4<f32>,
    dv_w: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> mu: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const TINY: f32 = 1e-12;
const BIG: f32 = 3.0e38;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let width = params.dims.w;
    let height = params.info.x;
    if (gid.x >= width || gid.y >= height) {
        return;
    }
    let n = vec3<f32>(params.dims.xyz);
    let fx = f32(gid.x);
    let fy = f32(gid.y);
    let s = params.src.xyz;
    let e = params.pix0.xyz + fx * params.du.xyz + fy * params.dv.xyz;
    let d = e - s;
    let len = length(params.pix0_w.xyz + fx * params.du_w.xyz + fy * params.dv_w.xyz - params.src_w.xyz);

    // 1. clip the segment to the block
    var a_in = 0.0;
    var a_out = 1.0;
    for (var c = 0; c < 3; c++) {
        if (abs(d[c]) < TINY) {
            if (s[c] <= 0.0 || s[c] >= n[c]) {
                a_out = -1.0;
            }
        } else {
            let t0 = -s[c] / d[c];
            let t1 = (n[c] - s[c]) / d[c];
            a_in = max(a_in, min(t0, t1));
            a_out = min(a_out, max(t0, t1));
        }
    }
    let pixel = gid.y * width + gid.x;
    if (a_in >= a_out) {
        out[pixel] = 0.0;
        return;
    }

    // 2. entry voxel, next crossing per axis, steps
    var idx = vec3<i32>(0, 0, 0);
    var next = vec3<f32>(BIG, BIG, BIG);
    var inv = vec3<f32>(0.0, 0.0, 0.0);
    var stp = vec3<i32>(0, 0, 0);
    let dims = vec3<i32>(params.dims.xyz);
    let stride = vec3<i32>(1, dims.x, dims.x * dims.y);
    let a_mid = 0.5 * (a_in + min(a_out, a_in + 1e-6));
    for (var c = 0; c < 3; c++) {
        let p = s[c] + a_mid * d[c];
        idx[c] = clamp(i32(floor(p)), 0, dims[c] - 1);
        if (abs(d[c]) >= TINY) {
            inv[c] = 1.0 / d[c];
            var up = 0;
            if (d[c] > 0.0) {
                stp[c] = 1;
                up = 1;
            } else {
                stp[c] = -1;
            }
            next[c] = (f32(idx[c] + up) - s[c]) * inv[c];
        }
    }
    var off = idx.x + idx.y * stride.y + idx.z * stride.z;

    // 3. walk, nearest boundary first
    var a = a_in;
    var acc = 0.0;
    let max_steps = dims.x + dims.y + dims.z + 3;
    for (var k = 0; k < max_steps; k++) {
        var c = 2;
        if (next.x <= next.y) {
            if (next.x <= next.z) { c = 0; }
        } else if (next.y <= next.z) {
            c = 1;
        }
        let a_next = min(next[c], a_out);
        acc += mu[off] * (a_next - a);
        if (a_next >= a_out) {
            break;
        }
        a = a_next;
        idx[c] += stp[c];
        if (idx[c] < 0 || idx[c] >= dims[c]) {
            break;
        }
        off += stp[c] * stride[c];
        var up = 0;
        if (stp[c] > 0) { up = 1; }
        next[c] = (f32(idx[c] + up) - s[c]) * inv[c];
    }
    out[pixel] = acc * len;
}
