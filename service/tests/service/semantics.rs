//! Channel order, layout, resizing and scores, pinned with the colour models.

use classify_service::Config;
use classify_service::config::{ChannelOrder, HexColour, ResizeFilter};
use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_jpeg_and_png_are_red_nhwc_and_nchw() {
    for model in ["colour", "colour-nchw", "colour-u8"] {
        let app = spawn_ready(config(model)).await;
        assert_eq!(
            app.classify(jpeg(RED), "image/jpeg", "").await.label,
            "red",
            "{model}"
        );
        assert_eq!(
            app.classify(png(RED), "image/png", "").await.label,
            "red",
            "{model}"
        );
        // Green and blue pin the other two channels' positions.
        assert_eq!(
            app.classify(png([0, 255, 0]), "image/png", "").await.label,
            "green",
            "{model}"
        );
        assert_eq!(
            app.classify(png([0, 0, 255]), "image/png", "").await.label,
            "blue",
            "{model}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgr_setting_turns_red_blue() {
    for model in ["colour", "colour-nchw"] {
        let app = spawn_ready(Config {
            channel_order: ChannelOrder::Bgr,
            ..config(model)
        })
        .await;
        assert_eq!(
            app.classify(png(RED), "image/png", "").await.label,
            "blue",
            "{model}"
        );
        assert_eq!(
            app.classify(jpeg(RED), "image/jpeg", "").await.label,
            "blue",
            "{model}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probabilities_and_logits_match_the_model_arithmetic() {
    let app = spawn_ready(config("colour")).await;
    for rgb in [
        [200u8, 100, 50],
        [255, 0, 0],
        [10, 200, 240],
        [128, 128, 128],
    ] {
        let answer = app.classify(png(rgb), "image/png", "?top_k=10").await;
        let expected = dlr_test_models::expected_logits(rgb.map(f64::from));
        let max = expected.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = expected.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        assert_eq!(answer.predictions.len(), 10);
        for p in &answer.predictions {
            assert!(
                (p.logit - expected[p.index]).abs() < 1e-4,
                "{rgb:?} class {}: logit {} vs {}",
                p.index,
                p.logit,
                expected[p.index]
            );
            let probability = exps[p.index] / sum;
            assert!(
                (p.probability - probability).abs() < 1e-4,
                "{rgb:?} class {}: probability {} vs {probability}",
                p.index,
                p.probability
            );
            assert_eq!(p.label, dlr_test_models::CLASSES[p.index].0);
        }
        assert_eq!(answer.label, expected_label(rgb.map(f64::from)));
    }
    app.stop().await;
}

/// Alternating one-pixel red and green columns, 448 wide: an anti-aliased 2:1 downscale
/// averages them (a yellowish grey); nearest-neighbour keeps only one of the two colours.
fn stripes() -> Vec<u8> {
    let image = RgbImage::from_fn(448, 224, |x, _| {
        image::Rgb(if x % 2 == 0 { [255, 0, 0] } else { [0, 255, 0] })
    });
    encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png)
}

/// Green in the middle half, red in the outer quarters, 448x224: squashing the whole image
/// (what the seed's `cv2.resize` did) keeps the 50/50 mix; a centre crop would see only green.
fn bands() -> Vec<u8> {
    let image = RgbImage::from_fn(448, 224, |x, _| {
        image::Rgb(if (112..336).contains(&x) {
            [0, 255, 0]
        } else {
            [255, 0, 0]
        })
    });
    encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_is_anti_aliased_and_keeps_the_whole_image() {
    let mix = expected_label([127.5, 127.5, 0.0]);
    assert!(
        mix != "red" && mix != "green",
        "the mix must be a third class: {mix}"
    );

    let app = spawn_ready(config("colour")).await;
    let answer = app.classify(stripes(), "image/png", "?top_k=10").await;
    assert_eq!(
        answer.label, mix,
        "anti-aliased resize averages the stripes"
    );
    // The mean colour after resizing is within u8 rounding (a logit moves ~0.08 per level).
    let expected = dlr_test_models::expected_logits([127.5, 127.5, 0.0]);
    for p in &answer.predictions {
        assert!(
            (p.logit - expected[p.index]).abs() < 0.2,
            "{p:?} vs {}",
            expected[p.index]
        );
    }
    assert_eq!(
        app.classify(bands(), "image/png", "").await.label,
        mix,
        "whole image squashed"
    );
    app.stop().await;

    let app = spawn_ready(Config {
        resize_filter: ResizeFilter::Nearest,
        ..config("colour")
    })
    .await;
    let label = app.classify(stripes(), "image/png", "").await.label;
    assert!(
        label == "red" || label == "green",
        "nearest aliases to one colour: {label}"
    );
    app.stop().await;

    // The NCHW model is 160x120: a non-square target gets the same treatment.
    let app = spawn_ready(config("colour-nchw")).await;
    assert_eq!(app.classify(stripes(), "image/png", "").await.label, mix);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_and_grayscale() {
    let transparent = encode(
        &DynamicImage::ImageRgba8(RgbaImage::from_pixel(32, 32, image::Rgba([255, 0, 0, 0]))),
        ImageFormat::Png,
    );
    let grey = encode(
        &DynamicImage::ImageLuma8(image::GrayImage::from_pixel(32, 32, image::Luma([128]))),
        ImageFormat::Png,
    );
    let app = spawn_ready(config("colour")).await;
    assert_eq!(
        app.classify(transparent.clone(), "image/png", "")
            .await
            .label,
        "white"
    );
    assert_eq!(app.classify(grey, "image/png", "").await.label, "grey");
    app.stop().await;

    let app = spawn_ready(Config {
        alpha_background: HexColour([0, 0, 0]),
        ..config("colour")
    })
    .await;
    assert_eq!(
        app.classify(transparent, "image/png", "").await.label,
        "black"
    );
    app.stop().await;
}
