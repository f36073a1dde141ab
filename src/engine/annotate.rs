//! Drawing detections (boxes, labels, scores) onto an image.

use image::{Rgb, RgbImage};

use crate::engine::Detection;

const PALETTE: [[u8; 3]; 10] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [0, 128, 128],
    [255, 225, 25],
];

/// The colour used for a class id.
pub fn class_colour(class_id: usize) -> Rgb<u8> {
    Rgb(PALETTE[class_id % PALETTE.len()])
}

/// The image with its detections drawn, encoded as `format` (JPEG or PNG).
pub fn encode(
    mut img: RgbImage,
    detections: &[Detection],
    format: image::ImageFormat,
) -> image::ImageResult<Vec<u8>> {
    draw(&mut img, detections);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format)?;
    Ok(out.into_inner())
}

/// Draws every detection: a rectangle, and a filled tag with `label score` above it.
pub fn draw(img: &mut RgbImage, detections: &[Detection]) {
    let thickness = (img.width().max(img.height()) / 400).clamp(1, 4) as i64;
    let scale = if img.width().min(img.height()) >= 400 {
        2
    } else {
        1
    };
    for d in detections {
        let colour = class_colour(d.class_id);
        let [x1, y1, x2, y2] = d.bbox.map(|v| v.round() as i64);
        for t in 0..thickness {
            rect(img, x1 + t, y1 + t, x2 - t, y2 - t, colour);
        }
        let text = format!("{} {:.2}", d.label, d.score);
        let (tw, th) = (text.chars().count() as i64 * 8 * scale + 4, 8 * scale + 4);
        let ty = if y1 - th >= 0 { y1 - th } else { y1 };
        fill(img, x1, ty, x1 + tw, ty + th, colour);
        let ink = if luminance(colour) > 140.0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        };
        text_at(img, x1 + 2, ty + 2, &text, scale, ink);
    }
}

fn luminance(c: Rgb<u8>) -> f32 {
    0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2])
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(img.width()) && y < i64::from(img.height()) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn rect(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, c: Rgb<u8>) {
    for x in x1..=x2 {
        put(img, x, y1, c);
        put(img, x, y2, c);
    }
    for y in y1..=y2 {
        put(img, x1, y, c);
        put(img, x2, y, c);
    }
}

fn fill(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, c: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in y1.max(0)..y2.min(h) {
        for x in x1.max(0)..x2.min(w) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

fn text_at(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
    use font8x8::UnicodeFonts;
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::LATIN_FONTS.get(ch))
            .unwrap_or(font8x8::BASIC_FONTS.get('?').unwrap_or([0; 8]));
        let gx = x + i as i64 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(img, gx + col * scale + dx, y + row as i64 * scale + dy, c);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_inside_and_tolerates_boxes_off_the_edge() {
        let mut img = RgbImage::new(100, 80);
        let d = |b: [f32; 4]| Detection {
            label: "cat".into(),
            class_id: 0,
            score: 0.9,
            bbox: b,
        };
        draw(
            &mut img,
            &[d([10.0, 20.0, 50.0, 60.0]), d([-50.0, -50.0, 500.0, 500.0])],
        );
        assert_eq!(*img.get_pixel(10, 40), class_colour(0));
        assert_eq!(*img.get_pixel(30, 40), Rgb([0, 0, 0]));
    }
}
