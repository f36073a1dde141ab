//! Image decoding: bytes to an upright RGB8 image, refusing decompression bombs before allocating.

use std::io::Cursor;

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

/// Decodes JPEG, PNG, WebP, BMP, GIF (its first frame) or TIFF bytes, applies the EXIF orientation, and converts to RGB8
/// (grey, alpha, 16-bit and CMYK inputs included; alpha is dropped).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(EngineError::Decode("empty input".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EngineError::Decode(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(EngineError::Decode(
            "unrecognised format (expected JPEG, PNG, WebP, BMP, GIF or TIFF)".into(),
        ));
    };
    if format == image::ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        // zune-jpeg fills a cut-off scan with grey instead of failing: refuse it ourselves.
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
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
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
}
