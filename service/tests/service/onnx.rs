//! The ONNX Runtime backend through the real server: the ONNX colour models (the DLR colour
//! models' parameters, written by `cargo xtask setup`) on the real ONNX Runtime 1.22.1, checked
//! against the DLR colour model served by the real libdlr in the same test.

use classify_service::Config;
use classify_service::config::{BackendChoice, PerformanceHint};

use crate::common::*;

fn onnx_config(model: &str) -> Config {
    Config {
        onnx_library: Some(dlr_test_models::paths::generated_dir().join("onnxruntime")),
        ..config(model)
    }
}

#[tokio::test]
async fn an_onnx_model_directory_is_served_by_onnx_runtime_with_the_dlr_models_answers() {
    let onnx = spawn_ready(onnx_config("colour-onnx")).await;
    let dlr = spawn_ready(config("colour")).await;

    let info = onnx.get_json("/v1/model").await;
    assert_eq!(info["backend"], "onnxruntime");
    assert_eq!(info["dlr_version"], onnx_backend::WHEEL_VERSION);
    assert!(
        info["dlr_library"]
            .as_str()
            .unwrap()
            .contains("libonnxruntime.so"),
        "{info}"
    );
    assert_eq!(info["input"]["layout"], "NHWC");
    assert_eq!(info["input"]["shape"], serde_json::json!([1, 224, 224, 3]));
    let metrics = onnx.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            r#"classify_model_info{{backend="onnxruntime",dlr_version="{}""#,
            onnx_backend::WHEEL_VERSION
        )),
        "{metrics}"
    );

    // Same image, both runtimes: same ranking, probabilities within 1e-3.
    for rgb in [RED, [250, 130, 10], [30, 60, 200]] {
        let query = "?top_k=10";
        let a = onnx.classify(png(rgb), "image/png", query).await;
        let b = dlr.classify(png(rgb), "image/png", query).await;
        assert_eq!(a.label, expected_label(rgb.map(f64::from)));
        assert_eq!(a.label, b.label);
        assert_eq!(a.predictions.len(), 10);
        for (p, q) in a.predictions.iter().zip(&b.predictions) {
            assert_eq!(p.index, q.index, "{rgb:?}");
            assert!(
                (p.probability - q.probability).abs() < 1e-3,
                "{rgb:?} class {}: onnx {} dlr {}",
                p.index,
                p.probability,
                q.probability
            );
        }
    }
    onnx.stop().await;
    dlr.stop().await;
}

#[tokio::test]
async fn the_throughput_hint_starts_single_thread_workers_that_answer_side_by_side() {
    let app = spawn_ready(Config {
        performance_hint: PerformanceHint::Throughput,
        workers: None,
        threads_per_worker: None,
        ..onnx_config("colour-onnx")
    })
    .await;
    let cpus = dlr_sys::available_cpus();
    let workers = cpus.min(PerformanceHint::MAX_THROUGHPUT_WORKERS);
    let info = app.get_json("/v1/model").await;
    assert_eq!(info["performance_hint"], "throughput");
    assert_eq!(info["workers"], workers);
    assert_eq!(info["threads_per_worker"], (cpus / workers).max(1));
    // Four requests at once, each answered by whichever worker takes it, each right.
    let colours = [RED, [250, 130, 10], [30, 60, 200], [20, 200, 40]];
    let (a, b, c, d) = tokio::join!(
        app.classify(png(colours[0]), "image/png", ""),
        app.classify(png(colours[1]), "image/png", ""),
        app.classify(png(colours[2]), "image/png", ""),
        app.classify(png(colours[3]), "image/png", ""),
    );
    for (answer, rgb) in [a, b, c, d].iter().zip(colours) {
        assert_eq!(answer.label, expected_label(rgb.map(f64::from)), "{rgb:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn nchw_with_a_dynamic_batch_and_uint8_onnx_models_are_fed_right() {
    for (model, shape, layout) in [
        ("colour-onnx-nchw", [1, 3, 120, 160], "NCHW"),
        ("colour-onnx-u8", [1, 64, 64, 3], "NHWC"),
    ] {
        let app = spawn_ready(onnx_config(model)).await;
        let info = app.get_json("/v1/model").await;
        assert_eq!(info["backend"], "onnxruntime", "{model}");
        // The NCHW model declares a dynamic batch: reported as the 1 the service feeds.
        assert_eq!(info["input"]["shape"], serde_json::json!(shape), "{model}");
        assert_eq!(info["input"]["layout"], layout, "{model}");
        // Channel order and layout mistakes would turn blue into red or a grey.
        let answer = app.classify(png([20, 40, 230]), "image/png", "").await;
        assert_eq!(answer.label, "blue", "{model}");
        app.stop().await;
    }
}

#[tokio::test]
async fn backend_choice_is_explicit_or_follows_the_directory() {
    // An explicit DLR backend on an ONNX directory: DLR's own "incomplete directory" error.
    let config = Config {
        backend: BackendChoice::Dlr,
        ..onnx_config("colour-onnx")
    };
    let err = classify_service::Application::build(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("incomplete"), "{err}");

    // A directory with both models is ambiguous under auto and fine with a choice.
    let dir = tempfile::tempdir().unwrap();
    for model in ["colour", "colour-onnx"] {
        for entry in std::fs::read_dir(dlr_test_models::paths::model_dir(model)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let both = Config {
        model_dir: Some(dir.path().to_path_buf()),
        ..onnx_config("colour-onnx")
    };
    let err = classify_service::Application::build(both.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--backend onnx or --backend dlr"), "{err}");
    let app = spawn_ready(Config {
        backend: BackendChoice::Onnx,
        ..both
    })
    .await;
    assert_eq!(app.get_json("/v1/model").await["backend"], "onnxruntime");
    app.stop().await;

    // The demo model is DLR: asking for ONNX with it is a configuration error.
    let demo = Config {
        demo: true,
        model_dir: None,
        backend: BackendChoice::Onnx,
        ..onnx_config("colour-onnx")
    };
    let err = demo.validate().unwrap_err().to_string();
    assert!(err.contains("backend onnx"), "{err}");
}

/// Two runtimes cross-checking each other on a real network: EfficientNet-Lite0 with trained
/// ImageNet weights, generated by `cargo xtask setup` as a DLR model directory and exported to
/// ONNX, served by the real libdlr and the real ONNX Runtime with the same preprocessing. On
/// real photos the top-5 classes agree and their probabilities are within 1e-3.
#[tokio::test]
async fn efficientnet_lite0_answers_alike_on_dlr_and_onnx_runtime() {
    let dlr = spawn_ready(config("efficientnet-lite0")).await;
    let onnx = spawn_ready(onnx_config("efficientnet-lite0-onnx")).await;
    assert_eq!(onnx.get_json("/v1/model").await["backend"], "onnxruntime");
    let photos = dlr_test_models::paths::samples_dir().join("photos");
    let mut compared = 0;
    for name in [
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
    ] {
        let bytes = std::fs::read(photos.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; run `cargo xtask setup`"));
        let kind = if name.ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        let a = dlr.classify(bytes.clone(), kind, "?top_k=5").await;
        let b = onnx.classify(bytes, kind, "?top_k=5").await;
        let indices = |r: &classify_api::ClassifyResponse| {
            r.predictions.iter().map(|p| p.index).collect::<Vec<_>>()
        };
        assert_eq!(indices(&a), indices(&b), "{name}: top-5 classes");
        for (p, q) in a.predictions.iter().zip(&b.predictions) {
            assert!(
                (p.probability - q.probability).abs() < 1e-3,
                "{name} class {} ({}): DLR {} ONNX Runtime {}",
                p.index,
                p.label,
                p.probability,
                q.probability
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 4);
    dlr.stop().await;
    onnx.stop().await;
}
