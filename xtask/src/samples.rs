//! Sample images for the demo and for manual testing, drawn rather than downloaded.

use std::path::Path;

use image::{Rgb, RgbImage};

/// Writes the sample images into `dir`.
pub fn write_all(dir: &Path) -> crate::Result {
    std::fs::create_dir_all(dir)?;
    // A red "apple" on a wooden table: its mean colour is nearest the "red" class of the demo
    // model (on a white background the mean would be nearer "grey").
    let apple = RgbImage::from_fn(320, 240, |x, y| {
        let (dx, dy) = (x as f32 - 160.0, y as f32 - 125.0);
        if dx * dx + dy * dy < 115.0 * 115.0 {
            Rgb([220, 20, 30])
        } else if (150..170).contains(&x) && (0..20).contains(&y) {
            Rgb([90, 60, 20])
        } else {
            Rgb([120, 80, 40])
        }
    });
    apple.save(dir.join("red-apple.jpg"))?;
    apple.save(dir.join("red-apple.png"))?;
    let orange = RgbImage::from_pixel(200, 200, Rgb([250, 130, 10]));
    orange.save(dir.join("pumpkin.png"))?;
    let sky = RgbImage::from_fn(256, 128, |_, y| Rgb([20, 40 + (y / 4) as u8, 230]));
    sky.save(dir.join("blue-sky.jpg"))?;
    Ok(())
}
