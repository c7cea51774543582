//! Start-up: labels in every form, clear errors, model discovery, the embedded demo model.

use classify_service::{Application, Config};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_files_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = dlr_test_models::CLASSES
        .iter()
        .map(|(n, _)| format!("{n}!"))
        .collect();
    let forms = [
        ("lines.txt", names.join("\n") + "\n"),
        ("array.json", serde_json::to_string(&names).unwrap()),
        (
            "object.json",
            serde_json::to_string(
                &names
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, n)| (i.to_string(), serde_json::Value::from(n.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
            )
            .unwrap(),
        ),
        (
            "dict.txt",
            dlr_test_models::synset_text().replace("red", "red!"),
        ),
    ];
    for (file, text) in forms {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let app = spawn_ready(Config {
            labels: Some(path),
            ..config("colour")
        })
        .await;
        let answer = app.classify(png(RED), "image/png", "").await;
        assert_eq!(answer.label, "red!", "{file}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "only\nthree\nlabels\n").unwrap();
    let err = Application::build(Config {
        labels: Some(short.clone()),
        ..config("colour")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("3 labels") && err.contains("10 classes") && err.contains("short.txt"),
        "{err}"
    );

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "{0: 'a', 1: }").unwrap();
    let err = Application::build(Config {
        labels: Some(bad),
        ..config("colour")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.txt") && err.contains("quoted label"),
        "{err}"
    );

    // No --model-dir: discovery under the Greengrass root says where it looked.
    let err = Application::build(Config {
        model_dir: None,
        greengrass_root: dir.path().to_path_buf(),
        ..config("colour")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(
        err.contains("variant.DLR.ImageClassification.ModelStore"),
        "{err}"
    );

    let err = Application::build(Config {
        workers: Some(0),
        model_dir: Some("/nonexistent/model".into()),
        ..config("colour")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("workers") && err.contains("/nonexistent/model"),
        "{err}"
    );

    let err = Application::build(Config {
        dlr_library: Some(dir.path().join("libdlr.so")),
        ..config("colour")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("libdlr.so"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_newest_model_store_install() {
    let root = tempfile::tempdir().unwrap();
    let arch = classify_service::model_store::model_store_arch();
    for version in ["2.1.9", "2.1.10"] {
        let dir = root
            .path()
            .join("packages/artifacts-unarchived/variant.DLR.ImageClassification.ModelStore")
            .join(version)
            .join(format!("DLR-resnet50-{arch}-cpu-ImageClassification"));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(dlr_test_models::paths::model_dir("colour")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let app = spawn_ready(Config {
        model_dir: None,
        greengrass_root: root.path().to_path_buf(),
        ..config("colour")
    })
    .await;
    let answer = app.classify(png(RED), "image/png", "").await;
    assert_eq!(answer.model.version, "2.1.10");
    assert_eq!(
        answer.model.name,
        format!("DLR-resnet50-{arch}-cpu-ImageClassification")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_serves_the_embedded_model_and_cleans_up() {
    let app = spawn_ready(Config {
        model_dir: None,
        demo: true,
        ..config("colour")
    })
    .await;
    let info: serde_json::Value = app.get_json("/v1/model").await;
    let path = std::path::PathBuf::from(info["path"].as_str().unwrap());
    assert!(path.is_dir());
    assert_eq!(info["name"], "colour-demo");
    assert_eq!(app.classify(jpeg(RED), "image/jpeg", "").await.label, "red");
    app.stop().await;
    assert!(!path.exists(), "the demo directory is removed at exit");
}
