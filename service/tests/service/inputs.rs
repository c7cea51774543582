//! Every input form of `POST /classify`.

use base64::Engine;
use image::ImageFormat;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_in_every_format() {
    let app = spawn_ready(config("colour")).await;
    let red = uniform(RED, 50, 40);
    for (format, content_type) in [
        (ImageFormat::Png, "image/png"),
        (ImageFormat::Jpeg, "image/jpeg"),
        (ImageFormat::WebP, "image/webp"),
        (ImageFormat::Bmp, "image/bmp"),
        (ImageFormat::Gif, "image/gif"),
        (ImageFormat::Png, "application/octet-stream"),
        (ImageFormat::Jpeg, "application/octet-stream"),
        // The declared type is not trusted: the bytes are sniffed.
        (ImageFormat::Png, "image/jpeg"),
    ] {
        let answer = app.classify(encode(&red, format), content_type, "").await;
        assert_eq!(answer.label, "red", "{format:?} as {content_type}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_shape_and_request_id() {
    let app = spawn_ready(config("colour")).await;
    let response = app
        .client
        .post(app.url("/classify?top_k=3"))
        .header("content-type", "image/png")
        .header("x-request-id", "my-id-42")
        .body(png(RED))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "my-id-42");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["request_id"], "my-id-42");
    assert_eq!(json["label"], "red");
    let predictions = json["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for key in ["index", "label", "probability", "logit"] {
        assert!(predictions[0].get(key).is_some(), "{key}");
    }
    assert_eq!(predictions[0]["index"], 2);
    let probabilities: Vec<f64> = predictions
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .collect();
    assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "sorted");
    assert_eq!(json["model"]["name"], "colour");
    assert!(json["model"]["version"].is_string());
    for key in [
        "decode_ms",
        "preprocess_ms",
        "queue_ms",
        "inference_ms",
        "total_ms",
    ] {
        assert!(json["timings"][key].as_f64().unwrap() >= 0.0, "{key}");
    }

    // Without a header, a UUID is generated.
    let answer = app.classify(png(RED), "image/png", "").await;
    assert!(
        uuid::Uuid::parse_str(&answer.request_id).is_ok(),
        "{}",
        answer.request_id
    );
    assert_eq!(answer.predictions.len(), 5, "default top_k");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_field_image() {
    let app = spawn_ready(config("colour")).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(jpeg(RED))
                .file_name("red.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        )
        .text("top_k", "2");
    let response = app
        .client
        .post(app.url("/classify"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let answer = expect_ok(response).await;
    assert_eq!(answer.label, "red");
    assert_eq!(answer.predictions.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_base64_and_file_references() {
    let (_guard, dir) = image_dir();
    let app = spawn_ready(classify_service::Config {
        allowed_dirs: vec![dir.clone()],
        ..config("colour")
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(RED));
    let answer = expect_ok(
        app.post_json(serde_json::json!({"image_base64": b64, "top_k": 1}))
            .await,
    )
    .await;
    assert_eq!(
        (answer.label.as_str(), answer.predictions.len()),
        ("red", 1)
    );
    let data_url = format!("data:image/png;base64,{b64}");
    let answer = expect_ok(
        app.post_json(serde_json::json!({"image_base64": data_url}))
            .await,
    )
    .await;
    assert_eq!(answer.label, "red");

    let path = dir.join("red.png");
    let answer = expect_ok(app.post_json(serde_json::json!({"path": path})).await).await;
    assert_eq!(answer.label, "red");
    // The seed's message shape.
    let answer = expect_ok(
        app.post_json(serde_json::json!({"image_dir": dir, "fname": "red.png"}))
            .await,
    )
    .await;
    assert_eq!(answer.label, "red");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_in_query_and_body() {
    let app = spawn_ready(config("colour")).await;
    let answer = app.classify(png(RED), "image/png", "?top_k=10").await;
    assert_eq!(answer.predictions.len(), 10);
    let answer = app.classify(png(RED), "image/png", "?top_k=100").await;
    assert_eq!(
        answer.predictions.len(),
        10,
        "top_k beyond the class count returns all"
    );
    let answer = app
        .classify(png(RED), "image/png", "?top_k=10&threshold=0.5")
        .await;
    assert_eq!(answer.predictions.len(), 1);
    assert!(answer.predictions[0].probability >= 0.5);
    let answer = app.classify(png(RED), "image/png", "?threshold=1").await;
    assert!(answer.predictions.is_empty());
    assert_eq!(
        answer.label, "red",
        "the top-1 label does not depend on threshold"
    );
    // The body wins over the query.
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(RED));
    let answer = expect_ok(
        app.client
            .post(app.url("/classify?top_k=1"))
            .json(&serde_json::json!({"image_base64": b64, "top_k": 4}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.predictions.len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_threshold_is_the_default_and_requests_override_it() {
    let app = spawn_ready(classify_service::Config {
        threshold: 0.5,
        top_k: 10,
        ..config("colour")
    })
    .await;
    let answer = app.classify(png(RED), "image/png", "").await;
    assert_eq!(answer.predictions.len(), 1, "only red is above 0.5");
    assert_eq!(answer.predictions[0].label, "red");
    let answer = app.classify(png(RED), "image/png", "?threshold=0").await;
    assert_eq!(answer.predictions.len(), 10);
    app.stop().await;
}
