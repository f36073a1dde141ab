//! Letterbox: keep-ratio resize and padding into the model's input tensor, and its inverse for boxes.

use half::f16;
use image::RgbImage;

use crate::engine::bundle::{InputSpec, Interpolation, PadPosition};
use crate::engine::error::Result;
use crate::engine::resize;

/// The geometry of one letterbox: how an image of `src_w × src_h` sits inside the input tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src_w: u32,
    pub src_h: u32,
    /// Size after the keep-ratio resize.
    pub new_w: u32,
    pub new_h: u32,
    /// Padding on the left and top, in tensor pixels.
    pub left: u32,
    pub top: u32,
    /// The resize ratio `r = min(W / w, H / h)`.
    pub scale: f64,
    /// The per-axis factors boxes map back with: `new_w / src_w`, `new_h / src_h`.
    pub scale_x: f64,
    pub scale_y: f64,
}

impl Letterbox {
    /// The geometry for an image, as mmyolo 0.6.0 computes it (`YOLOv5KeepRatioResize`, then
    /// `LetterResize` without upscaling): the new size truncates (`int(w * r)`), an image whose
    /// ratio is 1 is only padded, the odd padding pixel goes to the bottom / right, and boxes map
    /// back with separate x and y factors.
    pub fn new(spec: &InputSpec, src_w: u32, src_h: u32) -> Letterbox {
        let (tw, th) = (spec.width, spec.height);
        let scale = (f64::from(tw) / f64::from(src_w)).min(f64::from(th) / f64::from(src_h));
        let (new_w, new_h) = if scale == 1.0 {
            (src_w, src_h)
        } else {
            let truncate = |v: u32| ((f64::from(v) * scale) as u32).max(1);
            (truncate(src_w).min(tw), truncate(src_h).min(th))
        };
        let (pad_w, pad_h) = (tw - new_w, th - new_h);
        let (left, top) = match spec.pad_position {
            PadPosition::Center => (pad_w / 2, pad_h / 2),
            PadPosition::TopLeft => (0, 0),
        };
        Letterbox {
            src_w,
            src_h,
            new_w,
            new_h,
            left,
            top,
            scale,
            scale_x: f64::from(new_w) / f64::from(src_w),
            scale_y: f64::from(new_h) / f64::from(src_h),
        }
    }

    /// Maps a box from input-tensor pixels back to the original image and clips it.
    pub fn to_image(&self, b: [f32; 4]) -> [f32; 4] {
        let (l, t) = (f64::from(self.left), f64::from(self.top));
        let (w, h) = (f64::from(self.src_w), f64::from(self.src_h));
        let x = |v: f32| ((f64::from(v) - l) / self.scale_x).clamp(0.0, w) as f32;
        let y = |v: f32| ((f64::from(v) - t) / self.scale_y).clamp(0.0, h) as f32;
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }

    /// Maps a box from the original image into input-tensor pixels (the forward direction).
    pub fn to_tensor(&self, b: [f32; 4]) -> [f32; 4] {
        let (l, t) = (f64::from(self.left), f64::from(self.top));
        let x = |v: f32| (f64::from(v) * self.scale_x + l) as f32;
        let y = |v: f32| (f64::from(v) * self.scale_y + t) as f32;
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }
}

/// A tensor element the engine can write: the dtype the session reports decides which.
pub trait Element: Copy + Default + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    /// `v / 255` in this precision; `lut[v]` holds the same value (`T::from_f32(v as f32 / 255.0)`).
    fn from_u8(v: u8, lut: &[Self; 256]) -> Self;
}

impl Element for f32 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_u8(v: u8, _: &[f32; 256]) -> f32 {
        // The same division as the table, but one the compiler vectorises.
        f32::from(v) / 255.0
    }
}

impl Element for f16 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_u8(v: u8, lut: &[f16; 256]) -> f16 {
        lut[usize::from(v)]
    }
}

/// Resizes and pads one image into a `[3, H, W]` plane buffer (RGB, value / 255).
pub fn letterbox_into<T: Element>(
    img: &RgbImage,
    spec: &InputSpec,
    out: &mut [T],
) -> Result<Letterbox> {
    letterbox_sized_into(img, img.dimensions(), spec, out)
}

/// [`letterbox_into`] for pixels that stand for an image of `size` (a DCT-reduced decode): the
/// geometry, and so the boxes, are the full image's; the pixels are resized from what is there.
pub fn letterbox_sized_into<T: Element>(
    img: &RgbImage,
    size: (u32, u32),
    spec: &InputSpec,
    out: &mut [T],
) -> Result<Letterbox> {
    let (tw, th) = (spec.width as usize, spec.height as usize);
    let plane = tw * th;
    assert_eq!(out.len(), 3 * plane, "output buffer must be 3*H*W");
    let lb = Letterbox::new(spec, size.0, size.1);
    let lut: [T; 256] = std::array::from_fn(|v| T::from_f32(v as f32 / 255.0));
    let pad = lut[spec.pad_value as usize];

    let resized;
    let pixels: &[u8] = if (lb.new_w, lb.new_h) == img.dimensions() {
        img.as_raw()
    } else {
        resized = resize(img, lb.new_w, lb.new_h, lb.scale, spec.interpolation);
        &resized
    };

    pack(pixels, &lb, (tw, th), &lut, pad, out);
    Ok(lb)
}

avx2_dispatch! {
    /// Copies the resized pixels into the three planes through `lut` and fills the padding
    /// (with AVX2 the compiler de-interleaves RGB in vector registers).
    fn pack<T: Element>(
        pixels: &[u8],
        lb: &Letterbox,
        size: (usize, usize),
        lut: &[T; 256],
        pad: T,
        out: &mut [T],
    ) => pack_any
}

#[inline(always)]
fn pack_any<T: Element>(
    pixels: &[u8],
    lb: &Letterbox,
    (tw, th): (usize, usize),
    lut: &[T; 256],
    pad: T,
    out: &mut [T],
) {
    let plane = tw * th;
    let (nw, nh) = (lb.new_w as usize, lb.new_h as usize);
    let (left, top) = (lb.left as usize, lb.top as usize);
    let (r_plane, rest) = out.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    for y in 0..th {
        let row = y * tw..(y + 1) * tw;
        let (r_row, g_row, b_row) = (
            &mut r_plane[row.clone()],
            &mut g_plane[row.clone()],
            &mut b_plane[row],
        );
        if y < top || y >= top + nh {
            r_row.fill(pad);
            g_row.fill(pad);
            b_row.fill(pad);
            continue;
        }
        for dst in [&mut *r_row, &mut *g_row, &mut *b_row] {
            dst[..left].fill(pad);
            dst[left + nw..].fill(pad);
        }
        let src = &pixels[(y - top) * nw * 3..(y - top + 1) * nw * 3];
        let (r_dst, g_dst, b_dst) = (
            &mut r_row[left..left + nw],
            &mut g_row[left..left + nw],
            &mut b_row[left..left + nw],
        );
        for (((px, r), g), b) in src
            .chunks_exact(3)
            .zip(r_dst.iter_mut())
            .zip(g_dst.iter_mut())
            .zip(b_dst.iter_mut())
        {
            *r = T::from_u8(px[0], lut);
            *g = T::from_u8(px[1], lut);
            *b = T::from_u8(px[2], lut);
        }
    }
}

/// OpenCV's area resize to shrink, its bilinear to enlarge (`auto`: by the ratio, as mmyolo).
fn resize(
    img: &RgbImage,
    new_w: u32,
    new_h: u32,
    scale: f64,
    interpolation: Interpolation,
) -> Vec<u8> {
    let shrinks = new_w <= img.width() && new_h <= img.height();
    let area = shrinks
        && match interpolation {
            Interpolation::Area => true,
            Interpolation::Bilinear => false,
            Interpolation::Auto => scale < 1.0,
        };
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (dw, dh) = (new_w as usize, new_h as usize);
    if area {
        resize::area(img.as_raw(), sw, sh, dw, dh)
    } else {
        resize::bilinear(img.as_raw(), sw, sh, dw, dh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: u32, h: u32) -> InputSpec {
        InputSpec::keep_ratio(w, h)
    }

    #[test]
    fn geometry_matches_mmyolo() {
        // 1280x720 -> 640x360, 140 rows above and below.
        let lb = Letterbox::new(&spec(640, 640), 1280, 720);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (640, 360, 0, 140));
        // 810x1080 -> 480x640, 80 columns each side.
        let lb = Letterbox::new(&spec(640, 640), 810, 1080);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (480, 640, 80, 0));
        // odd padding: the extra pixel goes to the bottom.
        let lb = Letterbox::new(&spec(640, 640), 640, 427);
        assert_eq!((lb.new_h, lb.top), (427, 106));
        assert_eq!(640 - 427 - lb.top, 107);
        // mmyolo truncates: 3000x40 -> 640 x 8.53 -> 8 (mmcv's imrescale would round to 9),
        // and maps back with per-axis factors 640/3000 and 8/40.
        let lb = Letterbox::new(&spec(640, 640), 3000, 40);
        assert_eq!((lb.new_w, lb.new_h, lb.top), (640, 8, 316));
        assert_eq!((lb.scale_x, lb.scale_y), (640.0 / 3000.0, 0.2));
        assert_eq!(
            lb.to_image([0.0, 316.0, 640.0, 324.0]),
            [0.0, 0.0, 3000.0, 40.0]
        );
        // 999 x 333 at 640: r = 0.6406..., 639.99... -> 639 wide, 213.33 -> 213 high.
        let lb = Letterbox::new(&spec(640, 640), 999, 333);
        assert_eq!(
            (lb.new_w, lb.new_h),
            ((999.0 * (640.0 / 999.0)) as u32, 213)
        );
        // a long side already at 640: only padded
        let lb = Letterbox::new(&spec(640, 640), 640, 101);
        assert_eq!((lb.new_w, lb.new_h, lb.top), (640, 101, 269));
        // a 1x1 image is enlarged to the whole input
        let lb = Letterbox::new(&spec(640, 640), 1, 1);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (640, 640, 0, 0));
    }

    #[test]
    fn round_trip_within_half_a_pixel() {
        let sizes = [
            (1280, 720),
            (720, 1280),
            (641, 479),
            (333, 999),
            (1, 1),
            (3000, 40),
            (40, 3000),
            (639, 641),
            (1919, 1081),
        ];
        for (tw, th) in [(640, 640), (320, 320), (512, 384)] {
            for &(w, h) in &sizes {
                let lb = Letterbox::new(&spec(tw, th), w, h);
                let b = [0.3 * w as f32, 0.1 * h as f32, 0.9 * w as f32, h as f32];
                let back = lb.to_image(lb.to_tensor(b));
                for i in 0..4 {
                    assert!(
                        (back[i] - b[i]).abs() <= 0.5,
                        "{w}x{h} into {tw}x{th}: {b:?} -> {back:?}"
                    );
                }
                // The forward map puts the image corners on the resized area.
                let corners = lb.to_tensor([0.0, 0.0, w as f32, h as f32]);
                assert!((corners[0] - lb.left as f32).abs() < 1e-3);
                assert!((corners[2] - (lb.left + lb.new_w) as f32).abs() <= 0.5 + 1e-3);
                assert!((corners[3] - (lb.top + lb.new_h) as f32).abs() <= 0.5 + 1e-3);
            }
        }
    }

    #[test]
    fn inverse_clips_to_the_image() {
        let lb = Letterbox::new(&spec(640, 640), 1280, 720);
        assert_eq!(
            lb.to_image([-10.0, 0.0, 700.0, 640.0]),
            [0.0, 0.0, 1280.0, 720.0]
        );
    }

    #[test]
    fn packs_planes_with_padding() {
        let mut img = RgbImage::new(4, 2);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([255, 0, (x * 50) as u8]);
        }
        let s = spec(4, 4);
        let mut out = vec![0f32; 3 * 16];
        let lb = letterbox_into(&img, &s, &mut out).unwrap();
        assert_eq!((lb.top, lb.new_h), (1, 2));
        let pad = 114.0 / 255.0;
        assert_eq!(out[0], pad); // R plane, row 0 is padding
        assert_eq!(out[4], 1.0); // R plane, row 1 is the image
        assert_eq!(out[16 + 4], 0.0); // G plane
        assert_eq!(out[32 + 4 + 3], 150.0 / 255.0); // B plane, x = 3
        assert_eq!(out[32 + 12], pad); // B plane, last row is padding

        let mut half_out = vec![f16::ZERO; 3 * 16];
        letterbox_into(&img, &s, &mut half_out).unwrap();
        assert_eq!(half_out[4].to_f32(), 1.0);
    }
}
