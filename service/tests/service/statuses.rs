//! Every error status of `POST /classify`, as problem+json.

use std::process::Command;

use classify_service::Config;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors() {
    let (_guard, dir) = image_dir();
    let app = spawn_ready(Config {
        allowed_dirs: vec![dir.clone()],
        max_body_bytes: 64 * 1024,
        max_image_pixels: 1_000_000,
        ..config("colour")
    })
    .await;

    // 400
    expect_problem(
        app.post_raw(b"not an image".to_vec(), "image/png", "")
            .await,
        400,
        "undecodable-image",
    )
    .await;
    expect_problem(
        app.post_raw(Vec::new(), "application/octet-stream", "")
            .await,
        400,
        "undecodable-image",
    )
    .await;
    let truncated = png(RED)[..60].to_vec();
    expect_problem(
        app.post_raw(truncated, "image/png", "").await,
        400,
        "undecodable-image",
    )
    .await;
    expect_problem(
        app.post_raw(b"{\"image_base64\": ".to_vec(), "application/json", "")
            .await,
        400,
        "invalid-body",
    )
    .await;
    expect_problem(
        app.post_json(serde_json::json!({"image_base64": "***"}))
            .await,
        400,
        "invalid-body",
    )
    .await;
    let form = reqwest::multipart::Form::new().text("top_k", "2");
    let response = app
        .client
        .post(app.url("/classify"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "invalid-body").await;
    expect_problem(
        app.post_raw(
            b"--x\r\nbroken".to_vec(),
            "multipart/form-data; boundary=x",
            "",
        )
        .await,
        400,
        "invalid-body",
    )
    .await;

    // 403
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().canonicalize().unwrap().join("secret.png");
    std::fs::write(&secret, png(RED)).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link.png")).unwrap();
    for body in [
        serde_json::json!({"path": dir.join("../").join(secret.file_name().unwrap())}),
        serde_json::json!({"path": format!("{}/../{}", dir.display(), "x.png")}),
        serde_json::json!({"image_dir": dir, "fname": "../../etc/passwd"}),
        serde_json::json!({"path": dir.join("link.png")}),
        serde_json::json!({"path": secret}),
        serde_json::json!({"path": "red.png"}),
    ] {
        let problem =
            expect_problem(app.post_json(body.clone()).await, 403, "path-forbidden").await;
        assert!(
            !problem.detail.contains("No such file"),
            "{body}: {}",
            problem.detail
        );
    }

    // 404
    expect_problem(
        app.post_json(serde_json::json!({"path": dir.join("missing.png")}))
            .await,
        404,
        "file-not-found",
    )
    .await;
    expect_problem(
        app.post_json(serde_json::json!({"image_dir": dir, "fname": "missing.png"}))
            .await,
        404,
        "file-not-found",
    )
    .await;
    expect_problem(
        app.client.get(app.url("/nope")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        app.client.get(app.url("/classify")).send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;

    // 413: body, file and image area.
    let big = vec![0u8; 100 * 1024];
    expect_problem(
        app.post_raw(big.clone(), "image/png", "").await,
        413,
        "payload-too-large",
    )
    .await;
    std::fs::write(dir.join("big.png"), &big).unwrap();
    expect_problem(
        app.post_json(serde_json::json!({"path": dir.join("big.png")}))
            .await,
        413,
        "payload-too-large",
    )
    .await;
    // A 2000x2000 single-colour PNG compresses to a few kB but decodes to 12 MB.
    let bomb = encode(&uniform(RED, 2000, 2000), image::ImageFormat::Png);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    expect_problem(
        app.post_raw(bomb, "image/png", "").await,
        413,
        "image-too-large",
    )
    .await;

    // 415
    expect_problem(
        app.post_raw(b"hello".to_vec(), "text/plain", "").await,
        415,
        "unsupported-media-type",
    )
    .await;
    expect_problem(
        app.post_raw(png(RED), "image/tiff", "").await,
        415,
        "unsupported-media-type",
    )
    .await;
    let response = app
        .client
        .post(app.url("/classify"))
        .body(png(RED))
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "unsupported-media-type").await;

    // 422
    for query in [
        "?top_k=0",
        "?top_k=-1",
        "?top_k=abc",
        "?threshold=1.5",
        "?threshold=nan",
        "?topk=3",
    ] {
        expect_problem(
            app.post_raw(png(RED), "image/png", query).await,
            422,
            "invalid-options",
        )
        .await;
    }
    for body in [
        serde_json::json!({}),
        serde_json::json!({"image_base64": "aGk=", "path": "/x"}),
        serde_json::json!({"image_dir": dir}),
        serde_json::json!({"image_base64": "aGk=", "colour": "red"}),
        serde_json::json!({"image_base64": "aGk=", "top_k": "five"}),
        serde_json::json!({"image_base64": "aGk=", "top_k": 0}),
    ] {
        expect_problem(app.post_json(body).await, 422, "invalid-options").await;
    }
    app.stop().await;
}

/// A colour model whose dense kernel fails at run time for very red images (and only
/// those, so that the warm-up on a blank image succeeds): libdlr's RunDLRModel returns -1.
fn failing_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in dlr_test_models::model_files(&dlr_test_models::ColourModel::COLOUR) {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let anchor = "  for (int64_t k = 0; k < classes; k++) {\n    double acc";
    assert_eq!(
        dlr_test_models::KERNEL_SOURCE.matches(anchor).count(),
        1,
        "the test-model kernel source changed; update the fault injection in this test"
    );
    let source = dlr_test_models::KERNEL_SOURCE
        .replace(anchor, &format!("  if (in[0] > 2.0f) return -1;\n{anchor}"));
    let c_file = dir.path().join("failing.c");
    std::fs::write(&c_file, source).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(dir.path().join(dlr_test_models::KERNEL_FILE_NAME))
        .arg(&c_file)
        .status()
        .expect("a C compiler (cc) is needed to build the failing test model");
    assert!(status.success());
    std::fs::remove_file(c_file).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failure_is_a_500_without_internals() {
    let model = failing_model();
    let app = spawn_ready(Config {
        model_dir: Some(model.path().to_path_buf()),
        ..config("colour")
    })
    .await;
    let response = app.post_raw(png(RED), "image/png", "").await;
    let problem = expect_problem(response, 500, "internal").await;
    for leak in ["RunDLRModel", "compiled", "/tmp", "dlr", "failed:"] {
        assert!(
            !problem.detail.contains(leak),
            "{leak} leaked: {}",
            problem.detail
        );
    }
    // The worker survives: other images still work.
    assert_eq!(
        app.classify(png([0, 0, 255]), "image/png", "").await.label,
        "blue"
    );
    app.stop().await;
}
