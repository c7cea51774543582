//! JPEG decoding scaled down in the DCT domain, strictly, with libjpeg-turbo.
//!
//! A JPEG stores 8×8 blocks of DCT coefficients; an inverse DCT of only the lowest M×M of them
//! yields the block already reduced to M/8 of its size (libjpeg's scaled decoding, Pillow's
//! `draft()`). Entropy decoding still reads every coefficient, but the inverse DCT, upsampling,
//! colour conversion and the later resize work on up to 64× fewer pixels — a 12-megapixel
//! photo becomes a 0.8-megapixel image before `fast_image_resize` sees it. The scale chosen is
//! the smallest of 1/8, 2/8, 4/8 and 8/8 that leaves both sides at least `min_side` (twice the
//! model's larger side, set by the caller), so the anti-aliased resize that follows still has
//! at least two source pixels per output pixel and the tensor stays close to a full decode
//! followed by the same resize (measured in `BENCHMARKS.md`, bounded by a test). Only those
//! four: libjpeg-turbo has SIMD inverse DCTs for 8/8, 4/8 and 2/8 (1/8 keeps only the DC term),
//! while 3/8, 5/8, 6/8 and 7/8 run plain C — measured on a 0.7 MP photo, 6/8 took 5.08 ms
//! against 3.47 ms for the full-size SIMD decode, and its tensor was up to 45 levels (of 255)
//! from a full decode's, against 1.
//!
//! The decoder is libjpeg-turbo in MozJPEG's fork, through the `mozjpeg` crate: built from
//! source by `cc` and linked statically (nothing to install on a device; no cmake, unlike
//! `turbojpeg`, and no bindgen), with a safe API that exposes libjpeg's M/8 scaling and its
//! error manager. Against `jpeg-decoder`, used before, it decodes on the calling thread (no
//! thread per colour component competing with the model's), is faster on small and medium
//! files, and about even on a 12 MP one, whose time both spend in Huffman decoding, the stage
//! scaling cannot skip (figures in `BENCHMARKS.md`). It is built with its SIMD code: nasm
//! assembly on x86_64 (when `nasm` is installed at build time; `super::JPEG_SIMD` says whether),
//! NEON on ARM.
//!
//! Strictness: libjpeg only *warns* about a truncated file (it pretends an end-of-image marker
//! was there) or corrupt entropy-coded data (it fills in zeros), and stops with a fatal error
//! on anything worse by calling the error manager's `error_exit`. Both callbacks here unwind
//! out of libjpeg (the crate builds it with `-fexceptions` for this) with a [`Stop`] that
//! [`decode`] catches; so a warning, any warning, refuses the image (400). The source the
//! decoder reads notes when it ran out of bytes, which is how a truncated upload is told apart
//! from a corrupt one without reading libjpeg's message codes (that needs `unsafe`, which stays
//! in `dlr-sys`). Features libjpeg would refuse (12-bit samples, arithmetic coding, lossless)
//! are recognised from the frame header first, for a clear message.
//!
//! This relies on panics unwinding (the workspace's profiles keep `panic = "unwind"`).

use std::cell::Cell;
use std::io::BufRead;
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;

use image::RgbImage;
use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr};

use super::{PreprocessError, PreprocessOptions, check_size};

/// The smallest scale M/8 (M = 1, 2, 4, 8: the ones libjpeg-turbo decodes with SIMD) that
/// keeps both sides at least `min_side`; 8 (no scaling) when even the full size is smaller.
pub(super) fn scale_eighths(width: u32, height: u32, min_side: u32) -> u8 {
    [1, 2, 4, 8]
        .into_iter()
        .find(|&m| scaled(width, m) >= min_side && scaled(height, m) >= min_side)
        .unwrap_or(8)
}

/// A side at M/8, rounded up like libjpeg's `jpeg_calc_output_dimensions`.
fn scaled(side: u32, m: u8) -> u32 {
    u32::try_from((u64::from(side) * u64::from(m)).div_ceil(8)).unwrap_or(u32::MAX)
}

/// Why libjpeg was stopped; the payload of the unwind out of its C frames.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// `error_exit`: libjpeg cannot go on.
    Fatal,
    /// A warning: libjpeg would go on with made-up data.
    Warning,
}

extern "C-unwind" fn stop_fatal(_: &mut jpeg_common_struct) {
    // `resume_unwind`, not `panic!`: no panic hook, no backtrace in the log for a bad upload.
    std::panic::resume_unwind(Box::new(Stop::Fatal));
}

extern "C-unwind" fn stop_on_warning(_: &mut jpeg_common_struct, level: c_int) {
    // Levels 0 and up are trace messages, which libjpeg sends whatever the trace level.
    if level < 0 {
        std::panic::resume_unwind(Box::new(Stop::Warning));
    }
}

extern "C-unwind" fn nothing(_: &mut jpeg_common_struct) {}

/// libjpeg's error manager with every message turned into a [`Stop`]. Nothing is formatted or
/// printed, so the message table stays empty.
fn strict_error_manager() -> jpeg_error_mgr {
    jpeg_error_mgr {
        error_exit: Some(stop_fatal),
        emit_message: Some(stop_on_warning),
        output_message: Some(nothing),
        format_message: None,
        // Called between images and by `jpeg_finish_decompress`; there is no state to reset.
        reset_error_mgr: Some(nothing),
        msg_code: 0,
        msg_parm: mozjpeg_sys::msg_parm_union::default(),
        trace_level: 0,
        num_warnings: 0,
        jpeg_message_table: std::ptr::null(),
        last_jpeg_message: 0,
        addon_message_table: std::ptr::null(),
        first_addon_message: 0,
        last_addon_message: 0,
    }
}

/// The upload as libjpeg's input, noting whether libjpeg asked for more than there is.
struct Source<'a> {
    rest: &'a [u8],
    ran_out: &'a Cell<bool>,
}

impl std::io::Read for Source<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.len().min(out.len());
        out[..n].copy_from_slice(&self.rest[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Source<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.ran_out.set(true);
        }
        Ok(self.rest)
    }

    fn consume(&mut self, n: usize) {
        self.rest = &self.rest[n.min(self.rest.len())..];
    }
}

/// Decodes `bytes` (already sniffed as JPEG) into upright 8-bit RGB, reduced in the DCT domain
/// as far as `options.min_decoded_side` allows.
pub(super) fn decode(
    bytes: &[u8],
    options: &PreprocessOptions,
) -> Result<RgbImage, PreprocessError> {
    let frame = Frame::read(bytes)?;
    let ran_out = Cell::new(false);
    // The closure owns nothing that outlives a stop: the decoder and the budget reservation
    // are dropped while unwinding, and `ran_out` is only read afterwards.
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        decode_with_libjpeg(bytes, &frame, options, &ran_out)
    }))
    .unwrap_or_else(|payload| Err(stopped(payload.downcast_ref::<Stop>(), ran_out.get())))
}

fn decode_with_libjpeg(
    bytes: &[u8],
    frame: &Frame,
    options: &PreprocessOptions,
    ran_out: &Cell<bool>,
) -> Result<RgbImage, PreprocessError> {
    let source = Source {
        rest: bytes,
        ran_out,
    };
    let mut decompress = Decompress::with_err(strict_error_manager())
        .with_markers(&[Marker::APP(1), Marker::APP(14)])
        .from_reader(source)
        .map_err(|e| PreprocessError::Undecodable(format!("the JPEG has no image: {e}")))?;
    let (width, height) = decompress.size();
    let (width, height) = (
        u32::try_from(width).unwrap_or(u32::MAX),
        u32::try_from(height).unwrap_or(u32::MAX),
    );
    check_size(width, height, options)?;
    let m = scale_eighths(width, height, options.min_decoded_side);
    decompress.scale(m);
    let exif = marker(&decompress, 1, b"Exif\0\0");
    let orientation = exif
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    // Adobe's applications write CMYK inverted (255 = no ink) and mark it with APP14 "Adobe".
    let adobe = marker(&decompress, 14, b"Adobe").is_some();
    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    let estimate = peak_bytes(
        &decompress,
        frame,
        (scaled(width, m), scaled(height, m)),
        cmyk,
        orientation,
    ) + bytes.len() as u64;
    let _reservation = options.budget.reserve(estimate)?;
    let mut started = if cmyk {
        decompress.to_colorspace(ColorSpace::JCS_CMYK)
    } else {
        decompress.rgb()
    }
    .map_err(internal)?;
    let (out_w, out_h) = (started.width(), started.height());
    let pixels: Vec<u8> = started.read_scanlines().map_err(internal)?;
    // Reads up to the end-of-image marker: a file cut after the last pixel row is still refused.
    started.finish().map_err(internal)?;
    let (out_w, out_h) = (
        u32::try_from(out_w).map_err(internal)?,
        u32::try_from(out_h).map_err(internal)?,
    );
    let rgb = if cmyk {
        cmyk_to_rgb(&pixels, adobe)
    } else {
        pixels
    };
    let mut image = image::DynamicImage::ImageRgb8(
        RgbImage::from_raw(out_w, out_h, rgb)
            .ok_or_else(|| PreprocessError::Internal("JPEG pixel buffer size".into()))?,
    );
    image.apply_orientation(orientation);
    tracing::trace!(width, height, scale = m, ?orientation, "decoded JPEG");
    Ok(image.into_rgb8())
}

/// The body of the first saved APPn marker whose data starts with `signature`, after it.
fn marker<'d, R>(decompress: &'d Decompress<R>, app: u8, signature: &[u8]) -> Option<&'d [u8]> {
    decompress
        .markers()
        .find(|m| m.marker == Marker::APP(app) && m.data.starts_with(signature))
        .map(|m| &m.data[signature.len()..])
}

/// RGB from libjpeg's CMYK samples: the paper left by each ink times that left by black.
/// Adobe's inverted samples already are the paper left; plain ones are ink amounts.
fn cmyk_to_rgb(pixels: &[u8], adobe: bool) -> Vec<u8> {
    let paper = |v: u8| u32::from(if adobe { v } else { 255 - v });
    pixels
        .chunks_exact(4)
        .flat_map(|p| {
            let k = paper(p[3]);
            [0, 1, 2].map(|c| ((paper(p[c]) * k + 127) / 255) as u8)
        })
        .collect()
}

/// Bytes a decode holds at its peak, from the header:
/// * the output at the scaled size (3 bytes a pixel, 4 for CMYK plus its RGB conversion), or
///   later the RGB image plus its rotated copy;
/// * libjpeg's strips: a few rows of blocks per component at the scaled width, for the inverse
///   DCT, context rows and upsampling (128 bytes a column per component covers them);
/// * for progressive JPEGs and sequential ones in several scans, every DCT coefficient of the
///   image at full size (a 128-byte block per 8×8, per component, padded to whole MCUs), kept
///   until the last scan: this, not the pixels, is what a large progressive photo costs.
fn peak_bytes<R>(
    decompress: &Decompress<R>,
    frame: &Frame,
    (width, height): (u32, u32),
    cmyk: bool,
    orientation: Orientation,
) -> u64 {
    let area = u64::from(width) * u64::from(height);
    let components = decompress.components();
    let output = if cmyk { area * (4 + 3) } else { area * 3 };
    let rotation = match orientation {
        Orientation::NoTransforms
        | Orientation::Rotate180
        | Orientation::FlipHorizontal
        | Orientation::FlipVertical => 0,
        _ => area * (3 + 3),
    };
    let strips = u64::from(width.div_ceil(16) * 16) * components.len() as u64 * 128;
    let coefficients = if frame.whole_image_buffered {
        components
            .iter()
            .map(|c| {
                let round_up = |blocks: u32, factor: c_int| {
                    let factor = u64::from(factor.unsigned_abs().max(1));
                    u64::from(blocks).div_ceil(factor) * factor
                };
                round_up(c.width_in_blocks, c.h_samp_factor)
                    * round_up(c.height_in_blocks, c.v_samp_factor)
                    * 128
            })
            .sum()
    } else {
        0
    };
    output.max(rotation) + strips + coefficients
}

/// What the markers before the first scan say that libjpeg's safe API does not.
#[derive(Debug)]
struct Frame {
    /// libjpeg keeps every coefficient of the image: progressive, or a first scan that leaves
    /// out a component (so later scans add to blocks already read). `true` when unknown.
    whole_image_buffered: bool,
}

impl Frame {
    /// Walks the marker segments from the start of image to the first scan; refuses, in plain
    /// words, the coding processes libjpeg would stop on. A stream it cannot walk is left to
    /// libjpeg to judge, assuming the costlier decode.
    fn read(bytes: &[u8]) -> Result<Self, PreprocessError> {
        let unknown = Self {
            whole_image_buffered: true,
        };
        let mut at = 2;
        let mut frame = None;
        while let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) {
            if marker == 0xFF {
                // Fill byte before a marker.
                at += 1;
                continue;
            }
            let Some(length) = bytes
                .get(at + 2..at + 4)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            else {
                break;
            };
            let body = bytes.get(at + 4..at + 2 + length.max(2)).unwrap_or(&[]);
            match marker {
                // Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
                0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                    refuse_unsupported(marker, body.first().copied())?;
                    frame = Some((marker == 0xC2, body.get(5).copied()));
                }
                // Start of scan: its component count against the frame's.
                0xDA => {
                    return Ok(match frame {
                        Some((progressive, components)) => Self {
                            whole_image_buffered: progressive
                                || components.is_none()
                                || body.first().copied() != components,
                        },
                        None => unknown,
                    });
                }
                _ => {}
            }
            at += 2 + length;
        }
        Ok(unknown)
    }
}

/// Refuses a frame libjpeg (8-bit, Huffman-coded, lossy) would stop on.
fn refuse_unsupported(sof: u8, precision: Option<u8>) -> Result<(), PreprocessError> {
    let unsupported = |what: &str| {
        Err(PreprocessError::Undecodable(format!(
            "the JPEG uses {what}, which this service does not decode; accepted: baseline or \
             progressive 8-bit JPEG"
        )))
    };
    match sof {
        0xC3 | 0xC7 | 0xCB | 0xCF => unsupported("lossless coding"),
        0xC5..=0xC7 | 0xCD..=0xCF => unsupported("hierarchical coding"),
        0xC9..=0xCB => unsupported("arithmetic coding"),
        _ => match precision {
            Some(bits) if bits != 8 => unsupported(&format!("{bits}-bit samples")),
            _ => Ok(()),
        },
    }
}

/// The error for an image libjpeg was stopped on.
fn stopped(stop: Option<&Stop>, ran_out: bool) -> PreprocessError {
    match (stop, ran_out) {
        (Some(_), true) => PreprocessError::Undecodable(
            "the JPEG data is truncated: it ends before the end-of-image marker".into(),
        ),
        (Some(Stop::Warning), false) => PreprocessError::Undecodable(
            "the JPEG data is corrupt: libjpeg found damaged or out-of-place data".into(),
        ),
        (Some(Stop::Fatal), false) => PreprocessError::Undecodable(
            "the JPEG data is corrupt: libjpeg cannot decode it".into(),
        ),
        (None, _) => PreprocessError::Internal("the JPEG decoder panicked".into()),
    }
}

fn internal(e: impl std::fmt::Display) -> PreprocessError {
    PreprocessError::Internal(format!("JPEG decoder: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_both_sides_at_least_the_minimum() {
        // 12 MP 4032x3024 for a 224 model (min side 448): 2/8 gives 1008x756; 1/8 would give
        // 504x378, too small.
        assert_eq!(scale_eighths(4032, 3024, 448), 2);
        // 2 MP 1920x1080: 3/8 would give 405 rows; 4/8 gives 960x540.
        assert_eq!(scale_eighths(1920, 1080, 448), 4);
        // Between the powers of two: 1600x1200 at 3/8 would be 600x450, but only 1/8, 2/8,
        // 4/8 and 8/8 are taken (SIMD), so 4/8, 800x600.
        assert_eq!(scale_eighths(1600, 1200, 448), 4);
        // 0.7 MP 1024x683: 6/8 would be 768x513; 8/8.
        assert_eq!(scale_eighths(1024, 683, 448), 8);
        assert_eq!(scale_eighths(640, 480, 448), 8);
        // A panorama is limited by its short side.
        assert_eq!(scale_eighths(16000, 900, 448), 4);
        assert_eq!(scale_eighths(8000, 8000, 448), 1);
        // Scaling disabled.
        assert_eq!(scale_eighths(8000, 8000, u32::MAX), 8);
    }

    #[test]
    fn frame_header_tells_what_libjpeg_will_buffer_and_refuse() {
        // SOI, SOF (precision, height, width, components), SOS (components).
        let stream = |sof: u8, precision: u8, frame_components: u8, scan_components: u8| {
            let mut s = vec![0xFF, 0xD8, 0xFF, sof, 0, 8, precision, 0, 16, 0, 16];
            s.push(frame_components);
            s.extend([0xFF, 0xDA, 0, 3, scan_components]);
            s
        };
        let buffered = |s: &[u8]| Frame::read(s).unwrap().whole_image_buffered;
        assert!(!buffered(&stream(0xC0, 8, 3, 3)));
        assert!(buffered(&stream(0xC2, 8, 3, 3)));
        // Sequential, one component per scan.
        assert!(buffered(&stream(0xC1, 8, 3, 1)));
        // Unreadable: assume the worst.
        assert!(buffered(&[0xFF, 0xD8, 0x12]));
        for (sof, precision, what) in [
            (0xC0, 12, "12-bit"),
            (0xC9, 8, "arithmetic"),
            (0xC3, 8, "lossless"),
        ] {
            let err = Frame::read(&stream(sof, precision, 1, 1)).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
    }
}
