//! The photo-like test image shared by the preprocessing unit tests (`src/preprocess.rs`) and
//! the preprocessing benchmark, so the quality bound the tests enforce and the figures the
//! benchmark prints are about the same kind of picture. A plain file included with `#[path]`
//! by both: the benchmark is a separate crate and the tests are `cfg(test)` code, so neither
//! can import it from the other.

/// Photo-like content: shading, a disc, stripes and ±10 of per-pixel noise, so a JPEG of it
/// has about the entropy of a phone photo (see the printed file sizes).
pub fn photo(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 13) % 21;
        let disc = (fx - 0.4).powi(2) + (fy - 0.5).powi(2) < 0.06;
        let stripe = ((fx * 40.0) as u32 + (fy * 7.0) as u32) & 1 == 0 && fy > 0.7;
        let base = [
            60.0 + 150.0 * fx,
            80.0 + 100.0 * (fy * 6.0).sin().abs(),
            200.0 - 120.0 * fy,
        ];
        image::Rgb(std::array::from_fn(|c| {
            let v = if disc {
                [230.0, 40.0, 30.0][c]
            } else if stripe {
                base[c] * 0.3
            } else {
                base[c]
            };
            (v + noise as f32 - 10.0).clamp(0.0, 255.0) as u8
        }))
    })
}
