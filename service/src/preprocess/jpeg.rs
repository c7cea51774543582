//! JPEG decoding scaled down in the DCT domain, strictly.
//!
//! A JPEG stores 8×8 blocks of DCT coefficients; an inverse DCT of only the lowest 4×4, 2×2
//! or 1×1 coefficients yields the block already reduced to 1/2, 1/4 or 1/8 of its size
//! (libjpeg's scaled decoding, Pillow's `draft()`). Entropy decoding still reads every
//! coefficient, but the inverse DCT, upsampling, colour conversion and the later resize work
//! on up to 64× fewer pixels — a 12-megapixel photo becomes a 0.2-megapixel image before
//! `fast_image_resize` sees it. The reduction chosen is the largest that leaves both sides at
//! least `min_side` (twice the model's larger side, set by the caller), so the anti-aliased
//! resize that follows still has at least two source pixels per output pixel and the tensor
//! stays close to a full decode followed by the same resize (measured in `BENCHMARKS.md`, bounded
//! by a test).
//!
//! The decoder is `jpeg-decoder` (image-rs, pure Rust, baseline, progressive, CMYK/YCCK,
//! Adobe transforms, 12-bit greyscale), chosen over libjpeg-turbo bindings because it needs
//! no C toolchain pieces beyond what the workspace already needs (no nasm, no cmake) and
//! cross-compiles to aarch64 as plain Rust. It is strict about truncation: running out of
//! data anywhere before the end-of-image marker is an error, which is what makes a cut-off
//! upload a 400 rather than a classification of half a picture.

use image::{DynamicImage, RgbImage};
use jpeg_decoder::{CodingProcess, Decoder, PixelFormat};

use super::{PreprocessError, PreprocessOptions, check_size};

/// The reductions a JPEG decoder can apply in the DCT domain, largest first.
const REDUCTIONS: [u32; 3] = [8, 4, 2];

/// The largest reduction (8, 4, 2, else 1) that keeps both sides at least `min_side`.
pub(super) fn reduction(width: u32, height: u32, min_side: u32) -> u32 {
    REDUCTIONS
        .into_iter()
        .find(|&k| width.div_ceil(k) >= min_side && height.div_ceil(k) >= min_side)
        .unwrap_or(1)
}

/// Bytes a decode holds at its peak: the decoder's component planes and its interleaved output
/// at the scaled size, the conversion to RGB, and for progressive JPEGs the coefficients of
/// the whole image at full size (16 bits each), which must be kept until the last scan.
fn peak_bytes(info: &jpeg_decoder::ImageInfo, scaled: (u32, u32), components: u64) -> u64 {
    let scaled_area = u64::from(scaled.0) * u64::from(scaled.1);
    let output = scaled_area * info.pixel_format.pixel_bytes() as u64;
    // Planes are padded to whole blocks; a generous 2× covers padding and upsampling rows.
    let planes = 2 * scaled_area * components;
    let rgb = if info.pixel_format == PixelFormat::RGB24 {
        0
    } else {
        scaled_area * 3
    };
    let coefficients = match info.coding_process {
        CodingProcess::DctProgressive => {
            let padded = |side: u16| u64::from(side).div_ceil(16) * 16;
            padded(info.width) * padded(info.height) * components * 2
        }
        _ => 0,
    };
    output + planes + rgb + coefficients
}

/// Decodes `bytes` (already sniffed as JPEG) into upright 8-bit RGB, reduced in the DCT domain
/// as far as `options.min_decoded_side` allows.
pub(super) fn decode(
    bytes: &[u8],
    options: &PreprocessOptions,
) -> Result<RgbImage, PreprocessError> {
    let mut decoder = Decoder::new(bytes);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| PreprocessError::Internal("JPEG header read but no info".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height, options)?;
    let k = reduction(width, height, options.min_decoded_side);
    let scaled = if k > 1 {
        let requested = |side: u32| u16::try_from(side.div_ceil(k)).unwrap_or(u16::MAX);
        let (w, h) = decoder
            .scale(requested(width), requested(height))
            .map_err(jpeg_error)?;
        (u32::from(w), u32::from(h))
    } else {
        (width, height)
    };
    let components = match info.pixel_format {
        PixelFormat::L8 | PixelFormat::L16 => 1,
        PixelFormat::RGB24 => 3,
        PixelFormat::CMYK32 => 4,
    };
    let _reservation = options
        .budget
        .reserve(peak_bytes(&info, scaled, components))?;
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let rgb = to_rgb(pixels, info.pixel_format, scaled)?;
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    tracing::trace!(width, height, reduction = k, ?orientation, "decoded JPEG");
    Ok(image.into_rgb8())
}

/// The decoder's interleaved output as 8-bit RGB.
fn to_rgb(
    pixels: Vec<u8>,
    format: PixelFormat,
    (width, height): (u32, u32),
) -> Result<RgbImage, PreprocessError> {
    let expected = width as usize * height as usize * format.pixel_bytes();
    if pixels.len() != expected {
        return Err(PreprocessError::Internal(format!(
            "JPEG decoder returned {} bytes for {width}x{height} {format:?}",
            pixels.len()
        )));
    }
    let rgb = match format {
        PixelFormat::RGB24 => pixels,
        PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        // 12-bit greyscale comes out as native-endian 16-bit samples.
        PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|s| {
                let l = (u16::from_ne_bytes([s[0], s[1]]) >> 8) as u8;
                [l, l, l]
            })
            .collect(),
        // The decoder hands out ink amounts (255 = full ink, Adobe's inversion undone, for
        // CMYK and YCCK alike): RGB is the paper left by each ink times that left by black.
        PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u32::from(p[3]);
                [0, 1, 2].map(|c| (((255 - u32::from(p[c])) * k + 127) / 255) as u8)
            })
            .collect(),
    };
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| PreprocessError::Internal("JPEG pixel buffer size".into()))
}

fn jpeg_error(e: jpeg_decoder::Error) -> PreprocessError {
    match e {
        jpeg_decoder::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            PreprocessError::Undecodable(
                "the JPEG data is truncated: it ends before the end-of-image marker".into(),
            )
        }
        jpeg_decoder::Error::Unsupported(feature) => PreprocessError::Undecodable(format!(
            "the JPEG uses a feature this service does not decode: {feature:?}"
        )),
        other => PreprocessError::Undecodable(format!("the JPEG data is corrupt: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_keeps_both_sides_at_least_the_minimum() {
        // 12 MP 4032x3024 for a 224 model (min side 448): 1/4 gives 1008x756; 1/8 would give
        // 504x378, too small.
        assert_eq!(reduction(4032, 3024, 448), 4);
        // 2 MP 1920x1080: 1/2 gives 960x540.
        assert_eq!(reduction(1920, 1080, 448), 2);
        assert_eq!(reduction(640, 480, 448), 1);
        // A panorama is limited by its short side.
        assert_eq!(reduction(16000, 900, 448), 2);
        assert_eq!(reduction(8000, 8000, 448), 8);
        // Scaling disabled.
        assert_eq!(reduction(8000, 8000, u32::MAX), 1);
    }
}
