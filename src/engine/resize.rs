//! RGB resizing as OpenCV does it (what mmyolo's pipeline calls): `INTER_AREA` to shrink and
//! `INTER_LINEAR` to enlarge, reproduced arithmetic for arithmetic.
//!
//! * Area: each destination pixel is the mean of the source pixels it covers, each weighted by
//!   its *fractional* overlap (a box filter that takes or leaves whole pixels is another kernel).
//!   Separable, summed in `f32` in OpenCV's order and rounded half to even; exact integer factors
//!   take OpenCV's integer path (2×: `(sum + 2) >> 2`).
//! * Bilinear: half-pixel centres, 11-bit fixed-point weights, edge pixels replicated, and the
//!   vertical pass of OpenCV's vectorised 8-bit path (OpenCV's scalar row tails can differ by 1).

/// One tap of a separable filter: destination index, source index, weight.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    dst: usize,
    src: usize,
    weight: f32,
}

/// OpenCV's `computeResizeAreaTab`: the taps of one axis for a shrink by `scale` (> 1).
#[inline(always)]
fn area_taps(src_len: usize, dst_len: usize, scale: f64) -> Vec<Tap> {
    let mut taps = Vec::with_capacity(src_len * 2);
    for dx in 0..dst_len {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(src_len as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as usize;
        let sx2 = (fsx2.floor() as usize).min(src_len - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            taps.push(Tap {
                dst: dx,
                src: sx1 - 1,
                weight: ((sx1 as f64 - fsx1) / cell) as f32,
            });
        }
        for sx in sx1..sx2 {
            taps.push(Tap {
                dst: dx,
                src: sx,
                weight: (1.0 / cell) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            taps.push(Tap {
                dst: dx,
                src: sx2,
                weight: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    taps
}

/// `cv::saturate_cast<uchar>(float)`: round half to even, then clamp.
#[inline(always)]
fn to_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

avx2_dispatch! {
    /// `cv::resize(…, INTER_AREA)` of packed RGB, for `dst` no larger than `src` on either axis.
    /// Compiled twice (`avx2_dispatch!`): AVX2's 16-bit lanes are twice as wide; the result is
    /// the same.
    pub fn area(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> => area_any
}

#[inline(always)]
fn area_any(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let (scale_x, scale_y) = (1.0 / (dw as f64 / sw as f64), 1.0 / (dh as f64 / sh as f64));
    let (ix, iy) = (scale_x.round() as usize, scale_y.round() as usize);
    if (scale_x - ix as f64).abs() < f64::EPSILON && (scale_y - iy as f64).abs() < f64::EPSILON {
        return area_integer(src, sw, dw, dh, ix, iy);
    }
    let xtab = area_taps(sw, dw, scale_x);
    let ytab = area_taps(sh, dh, scale_y);
    let row_len = dw * 3;
    let mut out = vec![0u8; dh * row_len];
    let mut buf = vec![0f32; row_len];
    let mut sum = vec![0f32; row_len];
    let mut prev_dy = ytab.first().map_or(0, |t| t.dst);
    // A source row on a cell boundary serves two output rows: its horizontal pass runs once.
    let mut buf_row = usize::MAX;
    for t in &ytab {
        if t.src != buf_row {
            let row = &src[t.src * sw * 3..(t.src + 1) * sw * 3];
            buf.fill(0.0);
            for x in &xtab {
                let (d, s) = (x.dst * 3, x.src * 3);
                let (b, r) = (&mut buf[d..d + 3], &row[s..s + 3]);
                b[0] += f32::from(r[0]) * x.weight;
                b[1] += f32::from(r[1]) * x.weight;
                b[2] += f32::from(r[2]) * x.weight;
            }
            buf_row = t.src;
        }
        if t.dst != prev_dy {
            let dst = &mut out[prev_dy * row_len..(prev_dy + 1) * row_len];
            for i in 0..row_len {
                dst[i] = to_u8(sum[i]);
                sum[i] = t.weight * buf[i];
            }
            prev_dy = t.dst;
        } else {
            for i in 0..row_len {
                sum[i] += t.weight * buf[i];
            }
        }
    }
    let dst = &mut out[prev_dy * row_len..(prev_dy + 1) * row_len];
    for i in 0..row_len {
        dst[i] = to_u8(sum[i]);
    }
    out
}

/// OpenCV's `resizeAreaFast` for exact integer factors: integer sums over `ix × iy` cells.
/// Each output row first sums its `iy` source rows column by column in 16-bit lanes (a loop the
/// compiler vectorises; a cell of up to 257 pixels cannot overflow them), then sums `ix`
/// neighbours of that row.
#[inline(always)]
fn area_integer(src: &[u8], sw: usize, dw: usize, dh: usize, ix: usize, iy: usize) -> Vec<u8> {
    if ix * iy > 257 {
        return area_integer_wide(src, sw, dw, dh, ix, iy);
    }
    if ix == 2 && iy == 2 {
        return area_half(src, sw, dw, dh);
    }
    let row_len = dw * 3;
    let mut out = vec![0u8; dh * row_len];
    let mut cols = vec![0u16; dw * ix * 3];
    let mut sums = vec![0u16; cols.len() - 3 * (ix - 1)];
    for (dy, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let first = dy * iy * sw * 3;
        for (acc, &v) in cols.iter_mut().zip(&src[first..first + dw * ix * 3]) {
            *acc = u16::from(v);
        }
        for y in dy * iy + 1..(dy + 1) * iy {
            let row = &src[y * sw * 3..y * sw * 3 + cols.len()];
            for (acc, &v) in cols.iter_mut().zip(row) {
                *acc += u16::from(v);
            }
        }
        // Each lane plus the lanes 1 … ix-1 pixels on (vectorised), then one pixel in ix kept.
        let m = sums.len();
        sums.copy_from_slice(&cols[..m]);
        for k in 1..ix {
            for (s, &c) in sums.iter_mut().zip(&cols[3 * k..]) {
                *s += c;
            }
        }
        for (px, cell) in dst.chunks_exact_mut(3).zip(sums.chunks(3 * ix)) {
            for c in 0..3 {
                px[c] = cell_value(u32::from(cell[c]), ix, iy);
            }
        }
    }
    out
}

/// The 2×2 case (1280×720 to 640×360): `(a + b + c + d + 2) >> 2`. Three passes that the
/// compiler vectorises (rows added in 16-bit lanes; each lane added to the lane one pixel on and
/// rounded; the result narrowed), then every other pixel kept.
#[inline(always)]
fn area_half(src: &[u8], sw: usize, dw: usize, dh: usize) -> Vec<u8> {
    let row_len = dw * 3;
    let mut out = vec![0u8; dh * row_len];
    let n = 2 * row_len;
    let mut v = vec![0u16; n];
    let mut w = vec![0u8; n];
    for (dy, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let r0 = &src[2 * dy * sw * 3..][..n];
        let r1 = &src[(2 * dy + 1) * sw * 3..][..n];
        for ((v, &a), &b) in v.iter_mut().zip(r0).zip(r1) {
            *v = u16::from(a) + u16::from(b);
        }
        for ((w, &a), &b) in w.iter_mut().zip(&v).zip(&v[3..]) {
            *w = ((a + b + 2) >> 2) as u8;
        }
        let mut pairs = dst.chunks_exact_mut(6).zip(w.chunks_exact(12));
        for (px, cell) in &mut pairs {
            px[..3].copy_from_slice(&cell[..3]);
            px[3..].copy_from_slice(&cell[6..9]);
        }
        if dw % 2 == 1 {
            let x = dw - 1;
            dst[3 * x..].copy_from_slice(&w[6 * x..6 * x + 3]);
        }
    }
    out
}

/// The final rounding of an integer cell: `(sum + 2) >> 2` for 2×2 (OpenCV's fast path), else
/// the sum times `1 / area` in `f32`, rounded half to even.
#[inline(always)]
fn cell_value(total: u32, ix: usize, iy: usize) -> u8 {
    let area = (ix * iy) as u32;
    if area == 4 && ix == 2 {
        ((total + 2) >> 2) as u8
    } else if area.is_power_of_two() {
        // `total * 2^-k` is exact in f32: round half to even in integers.
        let k = area.trailing_zeros();
        let (q, r, half) = (total >> k, total & (area - 1), area >> 1);
        (q + u32::from(r > half || (r == half && q & 1 == 1))).min(255) as u8
    } else {
        // OpenCV multiplies by the reciprocal (`sum * (1.f / area)`), which can round apart from
        // a division.
        to_u8(total as f32 * (1.0f32 / area as f32))
    }
}

/// [`area_integer`] for cells too large for 16-bit sums.
fn area_integer_wide(src: &[u8], sw: usize, dw: usize, dh: usize, ix: usize, iy: usize) -> Vec<u8> {
    let mut out = vec![0u8; dh * dw * 3];
    for dy in 0..dh {
        for dx in 0..dw {
            for c in 0..3 {
                let mut total = 0u32;
                for y in dy * iy..(dy + 1) * iy {
                    let row = &src[y * sw * 3..];
                    for x in dx * ix..(dx + 1) * ix {
                        total += u32::from(row[x * 3 + c]);
                    }
                }
                out[(dy * dw + dx) * 3 + c] = cell_value(total, ix, iy);
            }
        }
    }
    out
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Source index and the two fixed-point weights of each destination index on one axis.
fn linear_taps(src_len: usize, dst_len: usize) -> Vec<(usize, [i32; 2])> {
    let scale = 1.0 / (dst_len as f64 / src_len as f64);
    (0..dst_len)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s >= src_len as i64 - 1 {
                s = src_len as i64 - 1;
                frac = 0.0;
            }
            let w0 = ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32;
            (s as usize, [w0, (1 << COEF_BITS) - w0])
        })
        .collect()
}

/// `cv::resize(…, INTER_LINEAR)` of packed RGB (8-bit fixed-point path).
pub fn bilinear(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let xt = linear_taps(sw, dw);
    let yt = linear_taps(sh, dh);
    let horizontal = |y: usize, row: &mut [i32]| {
        let line = &src[y * sw * 3..(y + 1) * sw * 3];
        for (dx, (sx, w)) in xt.iter().enumerate() {
            let next = (sx + 1).min(sw - 1);
            for c in 0..3 {
                row[dx * 3 + c] =
                    i32::from(line[sx * 3 + c]) * w[0] + i32::from(line[next * 3 + c]) * w[1];
            }
        }
    };
    let row_len = dw * 3;
    let (mut r0, mut r1) = (vec![0i32; row_len], vec![0i32; row_len]);
    let mut out = vec![0u8; dh * row_len];
    for (dy, (sy, w)) in yt.iter().enumerate() {
        horizontal(*sy, &mut r0);
        horizontal((sy + 1).min(sh - 1), &mut r1);
        let dst = &mut out[dy * row_len..(dy + 1) * row_len];
        for i in 0..row_len {
            // OpenCV's vectorised 8-bit path: 16-bit products' high halves, then (v + 2) >> 2.
            let hi = |r: i32, w: i32| ((r >> 4) * w) >> 16;
            let v = (hi(r0[i], w[0]) + hi(r1[i], w[1]) + 2) >> 2;
            dst[i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_weights_fractional_overlap() {
        // 5 -> 2 pixels: each output covers 2.5 inputs, the middle one split half and half.
        let taps = area_taps(5, 2, 2.5);
        let w: Vec<(usize, usize, f32)> = taps.iter().map(|t| (t.dst, t.src, t.weight)).collect();
        assert_eq!(
            w,
            [
                (0, 0, 0.4),
                (0, 1, 0.4),
                (0, 2, 0.2),
                (1, 2, 0.2),
                (1, 3, 0.4),
                (1, 4, 0.4)
            ]
        );
        // A grey ramp 0, 10, 20, 30, 40 on one row: (0*.4 + 10*.4 + 20*.2), (20*.2 + 30*.4 + 40*.4).
        let src: Vec<u8> = [0u8, 10, 20, 30, 40]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let out = area(&src, 5, 1, 2, 1);
        assert_eq!(out, [8, 8, 8, 32, 32, 32]);
    }

    #[test]
    fn integer_factors_take_the_integer_path() {
        // 2x2 -> 1: (1 + 2 + 3 + 4 + 2) >> 2 = 3 (half up); 4x1 -> 1: 10/4 = 2.5 -> 2 (half even).
        let px = |v: &[u8]| v.iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>();
        assert_eq!(area(&px(&[1, 2, 3, 4]), 2, 2, 1, 1), px(&[3]));
        assert_eq!(area(&px(&[1, 2, 3, 4]), 4, 1, 1, 1), px(&[2]));
    }

    #[test]
    fn bilinear_enlarging_replicates_edges_and_interpolates_between() {
        // 2 -> 4: centres at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
        let src: Vec<u8> = [0u8, 100].iter().flat_map(|&v| [v, v, v]).collect();
        let out = bilinear(&src, 2, 1, 4, 1);
        let grey: Vec<u8> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(grey, [0, 25, 75, 100]);
    }

    /// Pseudo-random RGB bytes.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn vectorised_integer_paths_equal_the_plain_sums() {
        // The row-sum paths (2x2 and the general one) against the cell-by-cell sums, on noise
        // and on saturated pixels (the largest 16-bit sums).
        for (ix, iy) in [
            (2, 2),
            (3, 3),
            (4, 4),
            (2, 3),
            (3, 2),
            (4, 1),
            (1, 4),
            (5, 5),
            (16, 16),
        ] {
            let (dw, dh) = (7, 5);
            let (sw, sh) = (dw * ix, dh * iy);
            for src in [
                noise(sw * sh * 3, (ix * 31 + iy) as u64),
                vec![255; sw * sh * 3],
            ] {
                let want = area_integer_wide(&src, sw, dw, dh, ix, iy);
                assert_eq!(area(&src, sw, sh, dw, dh), want, "{ix}x{iy}");
                assert_eq!(area_any(&src, sw, sh, dw, dh), want, "{ix}x{iy} baseline");
            }
        }
    }

    #[test]
    fn the_avx2_build_equals_the_baseline_one() {
        for (sw, sh, dw, dh) in [
            (1280, 720, 640, 360),
            (1280, 720, 320, 180),
            (999, 333, 639, 213),
            (810, 1080, 480, 640),
        ] {
            let src = noise(sw * sh * 3, (sw + sh) as u64);
            assert_eq!(
                area(&src, sw, sh, dw, dh),
                area_any(&src, sw, sh, dw, dh),
                "{sw}x{sh} -> {dw}x{dh}"
            );
        }
    }
}
