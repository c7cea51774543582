//! The fleet deployment's CDK app (`deploy/cdk/`), synthesised with the pinned `aws-cdk` CLI
//! and the packages `cargo xtask setup` installs from the lock file. No AWS account is
//! involved: the stack is environment-agnostic, and the template is read, not deployed.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// `cdk synth` with `context` (`key=value` pairs): the stack's CloudFormation template.
fn synth(context: &[&str]) -> Value {
    let app = dlr_test_models::paths::workspace_root().join("deploy/cdk");
    let cli = app.join("node_modules/.bin/cdk");
    assert!(
        cli.exists(),
        "{} missing: run `cargo xtask setup`",
        cli.display()
    );
    let out = tempfile::tempdir().unwrap();
    let mut command = Command::new(&cli);
    command
        .current_dir(&app)
        .args(["synth", "--quiet", "--no-notices", "--output"])
        .arg(out.path())
        // Offline and unattended: no usage report, no prompt, no credentials looked for.
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CI", "true");
    for pair in context {
        command.args(["--context", pair]);
    }
    let output = command.output().expect("run the cdk CLI");
    assert!(
        output.status.success(),
        "cdk synth failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let template = out.path().join("ClassifyFleet.template.json");
    serde_json::from_str(&std::fs::read_to_string(&template).unwrap()).unwrap()
}

/// The resources of `kind` in `template`.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
    template["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == kind)
        .collect()
}

#[test]
fn the_artifacts_bucket_is_private_encrypted_tls_only_and_kept() {
    let template = synth(&[]);
    let buckets = resources(&template, "AWS::S3::Bucket");
    assert_eq!(buckets.len(), 1, "{template:#}");
    let bucket = buckets[0];
    assert_eq!(
        bucket["Properties"]["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true,
               "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    assert_eq!(
        bucket["Properties"]["OwnershipControls"]["Rules"],
        json!([{"ObjectOwnership": "BucketOwnerEnforced"}])
    );
    assert_eq!(
        bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    assert_eq!(
        bucket["Properties"]["VersioningConfiguration"]["Status"],
        "Enabled"
    );
    assert_eq!(bucket["DeletionPolicy"], "Retain");

    // TLS only: every request without it is denied, for anyone.
    let policies = resources(&template, "AWS::S3::BucketPolicy");
    assert_eq!(policies.len(), 1, "{template:#}");
    let statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert!(
        statements.iter().any(|s| s["Effect"] == "Deny"
            && s["Action"] == "s3:*"
            && s["Principal"] == json!({"AWS": "*"})
            && s["Condition"] == json!({"Bool": {"aws:SecureTransport": "false"}})),
        "{statements:#?}"
    );
    // Nothing else is created yet, and nothing deletes the bucket's objects.
    assert!(resources(&template, "Custom::S3AutoDeleteObjects").is_empty());
}

#[test]
fn destroy_artifacts_deletes_the_bucket_and_its_objects_with_the_stack() {
    let template = synth(&["destroyArtifacts=true"]);
    let buckets = resources(&template, "AWS::S3::Bucket");
    assert_eq!(buckets[0]["DeletionPolicy"], "Delete");
    assert_eq!(
        resources(&template, "Custom::S3AutoDeleteObjects").len(),
        1,
        "{template:#}"
    );
}

#[test]
fn the_app_pins_its_packages_in_a_committed_lock_file() {
    let app = dlr_test_models::paths::workspace_root().join("deploy/cdk");
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(app.join("package-lock.json")).unwrap())
            .unwrap();
    let installed =
        |name: &str| lock["packages"][format!("node_modules/{name}")]["version"].clone();
    // The 2.1149.x CLI reads the cloud assembly aws-cdk-lib 2.27x writes (3.0.0 does not).
    assert!(
        installed("aws-cdk")
            .as_str()
            .unwrap()
            .starts_with("2.1149."),
        "{}",
        installed("aws-cdk")
    );
    for name in [
        "aws-cdk-lib",
        "constructs",
        "cdk-nag",
        "typescript",
        "ts-node",
    ] {
        assert!(
            installed(name).is_string(),
            "{name} is not in the lock file"
        );
    }
    assert!(Path::new(&app.join(".gitignore")).exists());
}
