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

/// A request that must be refused, and the words its `detail` must contain.
struct Refusal {
    query: &'static str,
    body: Body,
    status: u16,
    slug: &'static str,
    says: &'static [&'static str],
}

enum Body {
    Json(&'static str),
    /// Multipart parts `(name, bytes)`; `"PNG"` stands for a red PNG.
    Parts(&'static [(&'static str, &'static str)]),
    Png,
    Large,
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        query: "?top_k=1&top_k=2",
        body: Body::Png,
        status: 422,
        slug: "invalid-options",
        says: &["top_k is given more than once"],
    },
    Refusal {
        query: "?topk=2",
        body: Body::Png,
        status: 422,
        slug: "invalid-options",
        says: &["unknown query parameter \"topk\"", "top_k, threshold"],
    },
    Refusal {
        query: "?top_k=0",
        body: Body::Png,
        status: 422,
        slug: "invalid-options",
        says: &["top_k must be a whole number from 1 to 2147483647", "\"0\""],
    },
    Refusal {
        query: "?top_k=2.5",
        body: Body::Png,
        status: 422,
        slug: "invalid-options",
        says: &["top_k must be a whole number", "\"2.5\""],
    },
    Refusal {
        query: "?threshold=2",
        body: Body::Png,
        status: 422,
        slug: "invalid-options",
        says: &["threshold must be a number from 0 to 1"],
    },
    Refusal {
        query: "",
        body: Body::Parts(&[("image", "PNG"), ("image", "PNG")]),
        status: 422,
        slug: "invalid-options",
        says: &["more than one part named \"image\""],
    },
    Refusal {
        query: "",
        body: Body::Parts(&[("image", "PNG"), ("top_k", "1"), ("top_k", "2")]),
        status: 422,
        slug: "invalid-options",
        says: &["more than one part named \"top_k\""],
    },
    Refusal {
        query: "",
        body: Body::Parts(&[("picture", "PNG")]),
        status: 422,
        slug: "invalid-options",
        says: &["\"picture\"", "image, top_k, threshold"],
    },
    Refusal {
        query: "",
        body: Body::Parts(&[("top_k", "1")]),
        status: 400,
        slug: "invalid-body",
        says: &["no part named \"image\""],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image_base64": "aGk=", "top_k": "3"}"#),
        status: 422,
        slug: "invalid-options",
        says: &["top_k must be a number", "the string \"3\""],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image_base64": 5}"#),
        status: 422,
        slug: "invalid-options",
        says: &["image_base64 must be a string", "the number 5"],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image": "aGk="}"#),
        status: 422,
        slug: "invalid-options",
        says: &["unknown field \"image\"", "image_base64, path"],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image_base64": "aGk=", "path": "/x.png"}"#),
        status: 422,
        slug: "invalid-options",
        says: &["exactly one image source", "2 given"],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"["aGk="]"#),
        status: 422,
        slug: "invalid-options",
        says: &["the JSON body is an array", "image_base64"],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image_base64": "aGk=""#),
        status: 400,
        slug: "invalid-body",
        says: &["not valid JSON", "line 1"],
    },
    Refusal {
        query: "",
        body: Body::Json(r#"{"image_base64": "a!b"}"#),
        status: 400,
        slug: "invalid-body",
        says: &["image_base64 is not valid base64", "standard alphabet"],
    },
    Refusal {
        query: "",
        body: Body::Large,
        status: 413,
        slug: "payload-too-large",
        says: &["the request body is 2000 bytes", "the limit is 1000 bytes"],
    },
];

/// Words that would mean a parser's or Rust's own message leaked into a detail.
const INTERNAL_WORDS: &[&str] = &[
    "usize",
    "u32",
    "struct",
    "serde",
    "invalid type",
    "expected",
    "Failed to deserialize",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_field_and_what_is_accepted_in_plain_words() {
    let app = spawn_ready(classify_service::Config {
        max_body_bytes: 1000,
        ..config("colour")
    })
    .await;
    for (i, refusal) in REFUSALS.iter().enumerate() {
        let request = app
            .client
            .post(app.url(&format!("/classify{}", refusal.query)));
        let request = match &refusal.body {
            Body::Png => request.header("content-type", "image/png").body(png(RED)),
            Body::Large => request
                .header("content-type", "image/png")
                .body(vec![0u8; 2000]),
            Body::Json(text) => request
                .header("content-type", "application/json")
                .body(*text),
            Body::Parts(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in parts.iter() {
                    let part = match *value {
                        "PNG" => reqwest::multipart::Part::bytes(png(RED)).file_name("red.png"),
                        text => reqwest::multipart::Part::text(text),
                    };
                    form = form.part(*name, part);
                }
                request.multipart(form)
            }
        };
        let problem =
            expect_problem(request.send().await.unwrap(), refusal.status, refusal.slug).await;
        for words in refusal.says {
            assert!(
                problem.detail.contains(words),
                "case {i}: {words:?} not in {:?}",
                problem.detail
            );
        }
        for internal in INTERNAL_WORDS {
            assert!(
                !problem.detail.contains(internal),
                "case {i}: {internal:?} in {:?}",
                problem.detail
            );
        }
    }
    app.stop().await;
}
