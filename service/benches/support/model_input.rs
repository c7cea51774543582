//! The bare model loops' input, shared by the benchmarks that run a model without the
//! service (`onnx_vs_dlr`, `throughput`). A plain file included with `#[path]` by each.

/// `image` (an encoded photo) resized to a square NHWC input of `count` elements (RGB, 0..255),
/// as float32 and as uint8; a constant tensor for any other input shape. A run's time depends
/// on the data (DLR's EfficientNet-Lite0 ran faster on a constant tensor than on a photo), so
/// the bare loops get photo-like data rather than the exact tensor the service would build.
pub fn photo_input(image: &[u8], count: usize) -> (Vec<f32>, Vec<u8>) {
    let side = ((count / 3) as f64).sqrt() as u32;
    if (side * side * 3) as usize != count {
        return (vec![100f32; count], vec![100u8; count]);
    }
    let rgb = image::load_from_memory(image).unwrap().into_rgb8();
    let resized = image::imageops::resize(&rgb, side, side, image::imageops::FilterType::Triangle);
    let u8s = resized.into_raw();
    (u8s.iter().map(|&v| f32::from(v)).collect(), u8s)
}
