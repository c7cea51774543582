//! Every error status of `POST /classify`, as problem+json.

use std::process::Command;

use classify_service::Config;
use serde_json::json;

use crate::common::*;

/// How a case sends its request.
enum Send {
    /// `POST /classify{query}` with these bytes and Content-Type.
    Raw {
        body: Vec<u8>,
        content_type: &'static str,
        query: &'static str,
    },
    /// `POST /classify` with this JSON.
    Json(serde_json::Value),
    /// `POST /classify` with a multipart form holding these text parts.
    Multipart(Vec<(&'static str, &'static str)>),
    /// `POST /classify` with a body and no Content-Type.
    NoContentType(Vec<u8>),
    /// `GET` this path.
    Get(&'static str),
}

/// One request and the problem it must get.
struct Case {
    what: String,
    send: Send,
    status: u16,
    slug: &'static str,
}

fn case(what: impl Into<String>, send: Send, status: u16, slug: &'static str) -> Case {
    Case {
        what: what.into(),
        send,
        status,
        slug,
    }
}

fn raw(body: impl Into<Vec<u8>>, content_type: &'static str) -> Send {
    Send::Raw {
        body: body.into(),
        content_type,
        query: "",
    }
}

async fn send(app: &TestApp, send: Send) -> reqwest::Response {
    match send {
        Send::Raw {
            body,
            content_type,
            query,
        } => app.post_raw(body, content_type, query).await,
        Send::Json(body) => app.post_json(body).await,
        Send::Multipart(parts) => {
            let form = parts
                .into_iter()
                .fold(reqwest::multipart::Form::new(), |form, (name, value)| {
                    form.text(name, value)
                });
            let request = app.client.post(app.url("/classify")).multipart(form);
            request.send().await.unwrap()
        }
        Send::NoContentType(body) => {
            let request = app.client.post(app.url("/classify")).body(body);
            request.send().await.unwrap()
        }
        Send::Get(path) => app.client.get(app.url(path)).send().await.unwrap(),
    }
}

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

    // Files for the 403, 404 and 413 cases.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().canonicalize().unwrap().join("secret.png");
    std::fs::write(&secret, png(RED)).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link.png")).unwrap();
    let big = vec![0u8; 100 * 1024];
    std::fs::write(dir.join("big.png"), &big).unwrap();
    // A 2000x2000 single-colour PNG compresses to a few kB but decodes to 12 MB.
    let bomb = encode(&uniform(RED, 2000, 2000), image::ImageFormat::Png);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());

    let mut cases = vec![
        // 400
        case(
            "not an image",
            raw("not an image", "image/png"),
            400,
            "undecodable-image",
        ),
        case(
            "empty body",
            raw(Vec::new(), "application/octet-stream"),
            400,
            "undecodable-image",
        ),
        case(
            "truncated PNG",
            raw(&png(RED)[..60], "image/png"),
            400,
            "undecodable-image",
        ),
        case(
            "cut-off JSON",
            raw("{\"image_base64\": ", "application/json"),
            400,
            "invalid-body",
        ),
        case(
            "bad base64",
            Send::Json(json!({"image_base64": "***"})),
            400,
            "invalid-body",
        ),
        case(
            "multipart without image",
            Send::Multipart(vec![("top_k", "2")]),
            400,
            "invalid-body",
        ),
        case(
            "broken multipart",
            raw("--x\r\nbroken", "multipart/form-data; boundary=x"),
            400,
            "invalid-body",
        ),
    ];
    // 403: every way out of the allowed directory, and relative paths.
    for body in [
        json!({"path": dir.join("../").join(secret.file_name().unwrap())}),
        json!({"path": format!("{}/../{}", dir.display(), "x.png")}),
        json!({"image_dir": dir, "fname": "../../etc/passwd"}),
        json!({"path": dir.join("link.png")}),
        json!({"path": secret}),
        json!({"path": "red.png"}),
    ] {
        cases.push(case(
            body.to_string(),
            Send::Json(body),
            403,
            "path-forbidden",
        ));
    }
    cases.extend([
        // 404, 405
        case(
            "missing path",
            Send::Json(json!({"path": dir.join("missing.png")})),
            404,
            "file-not-found",
        ),
        case(
            "missing fname",
            Send::Json(json!({"image_dir": dir, "fname": "missing.png"})),
            404,
            "file-not-found",
        ),
        case("unknown route", Send::Get("/nope"), 404, "not-found"),
        case(
            "GET /classify",
            Send::Get("/classify"),
            405,
            "method-not-allowed",
        ),
        // 413: body, file and image area.
        case(
            "body over the limit",
            raw(big.clone(), "image/png"),
            413,
            "payload-too-large",
        ),
        case(
            "file over the limit",
            Send::Json(json!({"path": dir.join("big.png")})),
            413,
            "payload-too-large",
        ),
        case(
            "decompression bomb",
            raw(bomb, "image/png"),
            413,
            "image-too-large",
        ),
        // 415
        case(
            "text/plain",
            raw("hello", "text/plain"),
            415,
            "unsupported-media-type",
        ),
        case(
            "image/tiff",
            raw(png(RED), "image/tiff"),
            415,
            "unsupported-media-type",
        ),
        case(
            "no Content-Type",
            Send::NoContentType(png(RED)),
            415,
            "unsupported-media-type",
        ),
    ]);
    // 422
    for query in [
        "?top_k=0",
        "?top_k=-1",
        "?top_k=abc",
        "?threshold=1.5",
        "?threshold=nan",
        "?topk=3",
    ] {
        let send = Send::Raw {
            body: png(RED),
            content_type: "image/png",
            query,
        };
        cases.push(case(query, send, 422, "invalid-options"));
    }
    for body in [
        json!({}),
        json!({"image_base64": "aGk=", "path": "/x"}),
        json!({"image_dir": dir}),
        json!({"image_base64": "aGk=", "colour": "red"}),
        json!({"image_base64": "aGk=", "top_k": "five"}),
        json!({"image_base64": "aGk=", "top_k": 0}),
    ] {
        cases.push(case(
            body.to_string(),
            Send::Json(body),
            422,
            "invalid-options",
        ));
    }

    for Case {
        what,
        send: request,
        status,
        slug,
    } in cases
    {
        eprintln!("case: {what} -> {status} {slug}");
        let problem = expect_problem(send(&app, request).await, status, slug).await;
        if status == 403 {
            // Refused for where it points, not because it happens not to exist.
            assert!(
                !problem.detail.contains("No such file"),
                "{what}: {}",
                problem.detail
            );
        }
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
