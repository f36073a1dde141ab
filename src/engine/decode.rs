//! Image decoding: bytes to an upright RGB8 image, refusing decompression bombs before allocating.
//! Baseline JPEGs go through libjpeg-turbo (SIMD), which can also decode at 1/2, 1/4 or 1/8 of
//! the size in the DCT (`[decode] reduced_jpeg`); everything else, and any JPEG libjpeg-turbo
//! refuses, through the `image` crate.

use std::cell::RefCell;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::engine::error::{EngineError, Result};

section! {
    /// `[limits]`: applied before any pixel buffer is allocated, to every frame from every
    /// frontend (encoded or raw).
    #[derive(Copy)]
    pub struct DecodeLimits, flags DecodeLimitsArgs (global = true) {
        /// Largest decoded image, in pixels (`width * height`).
        max_pixels: u64 = 50_000_000 => "max-pixels", "DOSOD_MAX_PIXELS";
        /// Largest decoded width or height.
        max_side: u32 = 20_000 => "max-side", "DOSOD_MAX_SIDE";
    }
}

section! {
    /// `[decode]`: how encoded frames become the pixels the detector sees.
    #[derive(Copy)]
    pub struct DecodeOptions, flags DecodeOptionsArgs (global = true) {
        /// Decode a JPEG at the smallest 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling)
        /// that still covers the model input, then resize as usual (true/false). Faster on
        /// frames much larger than the input; boxes stay in the full image's pixels; annotated
        /// images are always decoded at full size (docs/benchmarks.md gives the AP effect).
        reduced_jpeg: bool = false => "reduced-jpeg", "DOSOD_REDUCED_JPEG";
    }
}

impl DecodeLimits {
    /// Refuses a `w` x `h` frame above the limits, before its pixels exist.
    pub fn check(&self, w: u32, h: u32) -> Result<()> {
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.max_pixels || w.max(h) > self.max_side {
            return Err(EngineError::TooLarge(format!(
                "{w}x{h} ({pixels} pixels) exceeds the limit of {} pixels and {} per side",
                self.max_pixels, self.max_side
            )));
        }
        Ok(())
    }
}

/// Pixels for the detector, and the size the encoded image has upright.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Upright RGB pixels: the whole image, or a DCT-reduced version of it.
    pub image: RgbImage,
    /// The encoded image's upright width and height (what boxes are reported in).
    pub width: u32,
    pub height: u32,
}

impl Decoded {
    /// Whether `image` holds fewer pixels than the encoded image.
    pub fn is_reduced(&self) -> bool {
        self.image.dimensions() != (self.width, self.height)
    }
}

/// Decodes JPEG, PNG, WebP, BMP, GIF (its first frame) or TIFF bytes, applies the EXIF orientation, and converts to RGB8
/// (grey, alpha, 16-bit and CMYK inputs included; alpha is dropped).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    decode_reduced(bytes, limits, |_, _| None).map(|d| d.image)
}

/// [`decode`], but a JPEG may be decoded smaller: `need(w, h)` gets the upright size and
/// returns the smallest size the caller can use (`None`: the whole image). libjpeg-turbo then
/// decodes at the smallest 1/2ⁿ scale (n ≤ 3) that is at least that size on both axes.
pub fn decode_reduced(
    bytes: &[u8],
    limits: &DecodeLimits,
    need: impl Fn(u32, u32) -> Option<(u32, u32)>,
) -> Result<Decoded> {
    if bytes.is_empty() {
        return Err(EngineError::Decode("empty input".into()));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if !has_jpeg_end(bytes) {
            // Decoders fill a cut-off scan with grey instead of failing: refuse it ourselves.
            return Err(EngineError::Decode(
                "JPEG is truncated (no end-of-image marker)".into(),
            ));
        }
        if let Some(decoded) = turbo::decode(bytes, limits, &need)? {
            return Ok(decoded);
        }
    }
    let image = decode_with_image_crate(bytes, limits)?;
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        image,
    })
}

/// The `image` crate's decoders (zune-jpeg for the JPEGs libjpeg-turbo declines).
fn decode_with_image_crate(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EngineError::Decode(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(EngineError::Decode(
            "unrecognised format (expected JPEG, PNG, WebP, BMP, GIF or TIFF)".into(),
        ));
    };
    if format == image::ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(EngineError::Decode(
            "JPEG is truncated (no end-of-image marker)".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| EngineError::Decode(format!("{format:?}: {e}")))?;
    let (w, h) = decoder.dimensions();
    check_size(w, h, limits)?;
    let mut io_limits = image::Limits::default();
    io_limits.max_image_width = Some(limits.max_side);
    io_limits.max_image_height = Some(limits.max_side);
    // RGBA16 is the widest layout a decoder may produce.
    io_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    decoder
        .set_limits(io_limits)
        .map_err(|e| EngineError::TooLarge(e.to_string()))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(l) => EngineError::TooLarge(l.to_string()),
        other => EngineError::Decode(format!("{format:?}: {other}")),
    })?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// libjpeg-turbo for baseline 8-bit JPEGs in YCbCr or grey.
mod turbo {
    use super::*;
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

    thread_local! {
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }

    /// The decoded JPEG; `Ok(None)` when libjpeg-turbo declines it (progressive, arithmetic,
    /// lossless, CMYK, 12-bit, a warning on corrupt data) and the `image` crate should try.
    pub(super) fn decode(
        bytes: &[u8],
        limits: &DecodeLimits,
        need: &dyn Fn(u32, u32) -> Option<(u32, u32)>,
    ) -> Result<Option<Decoded>> {
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Decompressor::new().ok();
            }
            let Some(dec) = cell.as_mut() else {
                return Ok(None);
            };
            let Ok(header) = dec.read_header(bytes) else {
                return Ok(None);
            };
            if header.is_progressive
                || header.is_lossless
                || header.is_arithmetic
                || !matches!(header.colorspace, Colorspace::YCbCr | Colorspace::Gray)
            {
                return Ok(None);
            }
            let (Ok(w), Ok(h)) = (u32::try_from(header.width), u32::try_from(header.height)) else {
                return Err(EngineError::TooLarge(format!(
                    "{}x{} exceeds the size limits",
                    header.width, header.height
                )));
            };
            check_size(w, h, limits)?;
            let orientation = exif_orientation(bytes);
            let swaps = matches!(
                orientation,
                Orientation::Rotate90
                    | Orientation::Rotate270
                    | Orientation::Rotate90FlipH
                    | Orientation::Rotate270FlipH
            );
            let (uw, uh) = if swaps { (h, w) } else { (w, h) };
            let denom = match need(uw, uh) {
                Some((nw, nh)) => {
                    let (nw, nh) = if swaps { (nh, nw) } else { (nw, nh) };
                    reduction(w, h, nw, nh)
                }
                None => 1,
            };
            let scale = ScalingFactor::new(1, denom as usize);
            if dec.set_scaling_factor(scale).is_err() {
                return Ok(None);
            }
            let scaled = header.scaled(scale);
            let pitch = 3 * scaled.width;
            let mut pixels = vec![0u8; pitch * scaled.height];
            let out = Image {
                pixels: pixels.as_mut_slice(),
                width: scaled.width,
                pitch,
                height: scaled.height,
                format: PixelFormat::RGB,
            };
            if dec.decompress(bytes, out).is_err() {
                return Ok(None);
            }
            let image = RgbImage::from_raw(scaled.width as u32, scaled.height as u32, pixels)
                .expect("the buffer holds width x height RGB pixels");
            let mut img = DynamicImage::ImageRgb8(image);
            img.apply_orientation(orientation);
            let DynamicImage::ImageRgb8(image) = img else {
                unreachable!("orientation keeps the pixel type")
            };
            Ok(Some(Decoded {
                image,
                width: uw,
                height: uh,
            }))
        })
    }
}

/// The largest `d` in 8, 4, 2 whose scaled size `ceil(w / d) x ceil(h / d)` (libjpeg-turbo's
/// rounding) still covers `need_w x need_h`; 1 when none does.
pub fn reduction(w: u32, h: u32, need_w: u32, need_h: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|d| w.div_ceil(*d) >= need_w && h.div_ceil(*d) >= need_h)
        .unwrap_or(1)
}

/// The EXIF orientation of a JPEG: the first APP1 `Exif` segment before the first scan.
fn exif_orientation(bytes: &[u8]) -> Orientation {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            break;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let Some(segment) = bytes.get(i + 4..i + 2 + len.max(2)) else {
            break;
        };
        if marker == 0xE1
            && let Some(tiff) = segment.strip_prefix(b"Exif\0\0")
        {
            return Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms);
        }
        i += 2 + len.max(2);
    }
    Orientation::NoTransforms
}

/// Whether a JPEG stream contains its end-of-image marker `FF D9`. Entropy-coded data never
/// holds that pair (an `FF` there is followed by `00` or a restart marker), so a file cut short
/// lacks it.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    bytes.windows(2).rev().any(|w| w == [0xFF, 0xD9])
}

fn check_size(w: u32, h: u32, limits: &DecodeLimits) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(EngineError::Decode(format!("image has zero size {w}x{h}")));
    }
    limits.check(w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn decodes_grey_rgba_and_16_bit() {
        let limits = DecodeLimits::default();
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([7])));
        let rgb = decode(&png(grey), &limits).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(0, 0).0, [7, 7, 7]);
        let rgba16 = DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgba([65535u16, 0, 32896, 1000]),
        ));
        let rgb = decode(&png(rgba16), &limits).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 0, 128]);
    }

    #[test]
    fn decodes_gif_and_tiff() {
        // Issue 15 item 6: both were refused as unrecognised.
        let limits = DecodeLimits::default();
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 100, 0]));
        for format in [image::ImageFormat::Gif, image::ImageFormat::Tiff] {
            let mut bytes = Vec::new();
            DynamicImage::ImageRgb8(img.clone())
                .write_to(&mut Cursor::new(&mut bytes), format)
                .unwrap();
            let rgb = decode(&bytes, &limits).unwrap();
            assert_eq!(rgb.dimensions(), (5, 3), "{format:?}");
            if format == image::ImageFormat::Tiff {
                assert_eq!(rgb, img, "TIFF is lossless");
            }
        }
    }

    #[test]
    fn refuses_oversized_before_decoding() {
        let limits = DecodeLimits {
            max_pixels: 10,
            max_side: 100,
        };
        let img = DynamicImage::ImageRgb8(RgbImage::new(4, 4));
        let err = decode(&png(img), &limits).unwrap_err();
        assert!(matches!(err, EngineError::TooLarge(_)), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let limits = DecodeLimits::default();
        assert!(matches!(decode(b"", &limits), Err(EngineError::Decode(_))));
        assert!(matches!(
            decode(b"hello, world", &limits),
            Err(EngineError::Decode(_))
        ));
    }

    fn jpeg(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    /// A smooth test card: gradients in each channel.
    fn card(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    /// Splices an APP1 Exif segment holding only `orientation` in after SOI.
    fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, next IFD = 0
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!(a.dimensions(), b.dimensions());
        let total: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        total as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn libjpeg_turbo_decodes_what_the_image_crate_decodes() {
        let limits = DecodeLimits::default();
        let bytes = jpeg(&card(321, 203));
        let turbo = decode(&bytes, &limits).unwrap();
        let zune = decode_with_image_crate(&bytes, &limits).unwrap();
        assert_eq!(turbo.dimensions(), (321, 203));
        // Two IDCT / upsampling implementations: the same picture within a grey level or so.
        assert!(mean_abs_diff(&turbo, &zune) < 1.5);
    }

    #[test]
    fn reduced_decoding_picks_the_smallest_scale_that_covers_the_need() {
        assert_eq!(reduction(1280, 720, 320, 180), 4);
        assert_eq!(reduction(1280, 720, 640, 360), 2);
        assert_eq!(reduction(1280, 720, 321, 180), 2);
        assert_eq!(reduction(1920, 1080, 640, 360), 2); // 1/4 gives 480x270
        assert_eq!(reduction(4000, 3000, 320, 240), 8);
        assert_eq!(reduction(640, 360, 640, 360), 1);
        // libjpeg-turbo rounds scaled sizes up: 1283 / 4 -> 321.
        assert_eq!(reduction(1283, 723, 321, 181), 4);

        let limits = DecodeLimits::default();
        let full = card(1280, 720);
        let bytes = jpeg(&full);
        let d = decode_reduced(&bytes, &limits, |w, h| Some((w / 4, h / 4))).unwrap();
        assert_eq!(d.image.dimensions(), (320, 180));
        assert_eq!((d.width, d.height), (1280, 720));
        assert!(d.is_reduced());
        // The DCT-scaled picture is the full one shrunk.
        let shrunk = RgbImage::from_raw(
            320,
            180,
            crate::engine::resize::area(full.as_raw(), 1280, 720, 320, 180),
        )
        .unwrap();
        assert!(mean_abs_diff(&d.image, &shrunk) < 2.0);
        // No need, or not a JPEG: full size.
        assert!(
            !decode_reduced(&bytes, &limits, |_, _| None)
                .unwrap()
                .is_reduced()
        );
        let png_bytes = png(DynamicImage::ImageRgb8(full));
        let d = decode_reduced(&png_bytes, &limits, |w, h| Some((w / 4, h / 4))).unwrap();
        assert!(!d.is_reduced());
    }

    #[test]
    fn exif_orientation_is_applied_and_reduction_is_asked_upright() {
        let limits = DecodeLimits::default();
        let img = card(64, 32);
        let plain = jpeg(&img);
        // 6: rotate 90 degrees clockwise; the upright image is 32 x 64.
        let rotated = with_orientation(&plain, 6);
        assert!(matches!(exif_orientation(&rotated), Orientation::Rotate90));
        let upright = decode(&rotated, &limits).unwrap();
        assert_eq!(upright.dimensions(), (32, 64));
        let zune = decode_with_image_crate(&rotated, &limits).unwrap();
        assert!(mean_abs_diff(&upright, &zune) < 1.5);
        let d = decode_reduced(&rotated, &limits, |w, h| {
            assert_eq!((w, h), (32, 64), "the need is computed on the upright size");
            Some((16, 32))
        })
        .unwrap();
        assert_eq!(
            (d.width, d.height, d.image.width(), d.image.height()),
            (32, 64, 16, 32)
        );
        // 1 and a malformed segment: no transform.
        assert!(matches!(
            exif_orientation(&with_orientation(&plain, 1)),
            Orientation::NoTransforms
        ));
        assert!(matches!(
            exif_orientation(&plain),
            Orientation::NoTransforms
        ));
        let mut cut = with_orientation(&plain, 6);
        cut[5] = 0xFF; // segment length beyond the file
        assert!(matches!(
            exif_orientation(&cut[..40]),
            Orientation::NoTransforms
        ));
    }

    #[test]
    fn truncated_and_oversized_jpegs_are_refused() {
        let bytes = jpeg(&card(100, 80));
        let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let small = DecodeLimits {
            max_pixels: 1000,
            max_side: 1000,
        };
        assert!(matches!(
            decode(&bytes, &small),
            Err(EngineError::TooLarge(_))
        ));
    }
}
