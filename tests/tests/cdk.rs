//! The fleet deployment's CDK app (`deploy/cdk/`), synthesised with the pinned `aws-cdk` CLI
//! and the packages `cargo xtask setup` installs from the lock file, from the output of
//! `cargo xtask dist` (which `cargo xtask test` runs before the tests). No AWS account is
//! involved: the stack is environment-agnostic, and the template is read, not deployed.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// The `cargo xtask dist` output the app reads by default.
fn dist() -> std::path::PathBuf {
    let dist = dlr_test_models::paths::workspace_root().join("greengrass-build");
    assert!(
        dist.join("recipes").is_dir(),
        "{} missing: run `cargo xtask dist` (`cargo xtask test` does)",
        dist.display()
    );
    dist
}

/// `cdk synth` with `context` (`key=value` pairs): the stack's CloudFormation template.
fn synth(context: &[&str]) -> Value {
    if context.is_empty() {
        return default_synth().0.clone();
    }
    synth_into(context, tempfile::tempdir().unwrap().path()).0
}

/// The synth without context, made once for the tests that read it (each synth takes 10–30
/// s): its template and cloud assembly, in this test binary's scratch folder under `target/`.
fn default_synth() -> &'static (Value, std::path::PathBuf) {
    static SYNTH: std::sync::OnceLock<(Value, std::path::PathBuf)> = std::sync::OnceLock::new();
    SYNTH.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cdk-synth");
        let _ = std::fs::remove_dir_all(&out);
        synth_into(&[], &out)
    })
}

/// `cdk synth` with `context`, expected to fail: what it printed.
fn synth_failure(context: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let output = cdk(context, out.path()).output().expect("run the cdk CLI");
    assert!(!output.status.success(), "synth with {context:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// [`synth`] into `out`: the template, and the cloud assembly's folder.
fn synth_into(context: &[&str], out: &Path) -> (Value, std::path::PathBuf) {
    let output = cdk(context, out).output().expect("run the cdk CLI");
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "cdk synth failed:\n{printed}");
    // CDK validates the template against CloudFormation's schemas and only warns.
    assert!(
        !printed.contains("CloudFormation Validate"),
        "the template breaks CloudFormation's schema:\n{printed}"
    );
    let template = out.join("ClassifyFleet.template.json");
    let template = serde_json::from_str(&std::fs::read_to_string(&template).unwrap()).unwrap();
    (template, out.to_path_buf())
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

/// The logical id of the bucket whose logical id starts with `name` (`Artifacts`, `AccessLogs`).
fn bucket_id(template: &Value, name: &str) -> String {
    let ids: Vec<&String> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(id, r)| r["Type"] == "AWS::S3::Bucket" && id.starts_with(name))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "one {name} bucket: {ids:?}");
    ids[0].clone()
}

/// The statements of the policy of bucket `id`.
fn bucket_policy<'a>(template: &'a Value, id: &str) -> &'a Vec<Value> {
    resources(template, "AWS::S3::BucketPolicy")
        .into_iter()
        .find(|p| p["Properties"]["Bucket"] == json!({"Ref": id}))
        .unwrap_or_else(|| panic!("no policy on {id}"))["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
}

#[test]
fn the_artifacts_bucket_is_private_encrypted_tls_only_logged_and_kept() {
    let template = synth(&[]);
    assert_eq!(
        resources(&template, "AWS::S3::Bucket").len(),
        2,
        "{template:#}"
    );
    let artifacts = bucket_id(&template, "Artifacts");
    let logs = bucket_id(&template, "AccessLogs");
    for id in [&artifacts, &logs] {
        let bucket = &template["Resources"][id];
        assert_eq!(
            bucket["Properties"]["PublicAccessBlockConfiguration"],
            json!({"BlockPublicAcls": true, "BlockPublicPolicy": true,
                   "IgnorePublicAcls": true, "RestrictPublicBuckets": true}),
            "{id}"
        );
        assert_eq!(
            bucket["Properties"]["OwnershipControls"]["Rules"],
            json!([{"ObjectOwnership": "BucketOwnerEnforced"}]),
            "{id}"
        );
        assert_eq!(
            bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                ["SSEAlgorithm"],
            "AES256",
            "{id}"
        );
        assert_eq!(bucket["DeletionPolicy"], "Retain", "{id}");
        // TLS only: every request without it is denied, for anyone.
        let statements = bucket_policy(&template, id);
        assert!(
            statements.iter().any(|s| s["Effect"] == "Deny"
                && s["Action"] == "s3:*"
                && s["Principal"] == json!({"AWS": "*"})
                && s["Condition"] == json!({"Bool": {"aws:SecureTransport": "false"}})),
            "{id}: {statements:#?}"
        );
    }
    let bucket = &template["Resources"][&artifacts]["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    // Its requests are logged into the access-log bucket, which keeps them a year.
    assert_eq!(
        bucket["LoggingConfiguration"],
        json!({"DestinationBucketName": {"Ref": logs}, "LogFilePrefix": "artifacts/"})
    );
    assert_eq!(
        template["Resources"][&logs]["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"],
        365
    );
    // Nothing deletes the buckets' objects.
    assert!(resources(&template, "Custom::S3AutoDeleteObjects").is_empty());
}

#[test]
fn destroy_artifacts_deletes_the_buckets_and_their_objects_with_the_stack() {
    let template = synth(&["destroyArtifacts=true"]);
    for name in ["Artifacts", "AccessLogs"] {
        let id = bucket_id(&template, name);
        assert_eq!(
            template["Resources"][&id]["DeletionPolicy"], "Delete",
            "{id}"
        );
    }
    assert_eq!(
        resources(&template, "Custom::S3AutoDeleteObjects").len(),
        2,
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

/// The `cdk synth` command with `context`, writing its cloud assembly to `out`.
fn cdk(context: &[&str], out: &Path) -> Command {
    dist();
    let app = dlr_test_models::paths::workspace_root().join("deploy/cdk");
    let cli = app.join("node_modules/.bin/cdk");
    assert!(
        cli.exists(),
        "{} missing: run `cargo xtask setup`",
        cli.display()
    );
    let mut command = Command::new(&cli);
    command
        .current_dir(&app)
        .args(["synth", "--quiet", "--no-notices", "--output"])
        .arg(out)
        // Offline and unattended: no usage report, no prompt, no credentials looked for.
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CI", "true");
    for pair in context {
        command.args(["--context", pair]);
    }
    command
}

/// The logical id of the one resource of `kind`.
fn logical_id(template: &Value, kind: &str) -> String {
    let ids: Vec<&String> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "one {kind}: {ids:?}");
    ids[0].clone()
}

/// A CloudFormation string value with `{"Ref": bucket}` written as `BUCKET`.
fn joined(value: &Value, bucket: &str) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(object) if object.get("Ref") == Some(&json!(bucket)) => "BUCKET".into(),
        Value::Object(object) if object.contains_key("Fn::Join") => {
            let join = &object["Fn::Join"];
            let parts: Vec<String> = join[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|part| joined(part, bucket))
                .collect();
            parts.join(join[0].as_str().unwrap())
        }
        other => panic!("unexpected {other}"),
    }
}

/// One component version per recipe `cargo xtask dist` built (the same set as its
/// declaration), each the built recipe with its artifact URIs in the bucket under
/// `<name>/<version>/`, kept when replaced, created after the upload; the upload's asset is the
/// built artifacts, byte for byte.
#[test]
fn every_built_component_becomes_a_component_version_of_its_built_recipe() {
    let dist = dist();
    let (template, out) = default_synth();
    let bucket = bucket_id(template, "Artifacts");
    let upload = logical_id(template, "Custom::CDKBucketDeployment");

    let mut expected = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dist.join("recipes")).unwrap() {
        let recipe = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let name = xtask::dist::recipe_name(&recipe).unwrap();
        let version = xtask::dist::recipe_version(&recipe).unwrap();
        let inline = recipe.replace(
            "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/",
            &format!("s3://BUCKET/{name}/{version}/"),
        );
        expected.insert(name, inline);
    }
    let declared: std::collections::BTreeSet<&str> =
        xtask::dist::COMPONENTS.iter().map(|c| c.name).collect();
    assert_eq!(
        expected
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        declared,
        "the dist output holds every declared component"
    );

    let versions = resources(template, "AWS::GreengrassV2::ComponentVersion");
    assert_eq!(versions.len(), expected.len(), "{template:#}");
    for version in versions {
        let inline = joined(&version["Properties"]["InlineRecipe"], &bucket);
        let name = xtask::dist::recipe_name(&inline).unwrap();
        assert_eq!(Some(&inline), expected.get(&name), "{name}");
        assert!(inline.contains(&format!("s3://BUCKET/{name}/")), "{name}");
        assert!(!inline.contains("BUCKET_NAME"), "{name}");
        assert_eq!(version["DeletionPolicy"], "Retain", "{name}");
        assert!(
            version["DependsOn"]
                .as_array()
                .unwrap()
                .contains(&json!(upload)),
            "{name} is created after the upload"
        );
    }

    let deployment = &template["Resources"][&upload]["Properties"];
    assert_eq!(deployment["DestinationBucketName"], json!({"Ref": bucket}));
    assert_eq!(
        deployment["Prune"], false,
        "earlier versions' artifacts stay"
    );
    // The asset uploaded is the dist output's artifacts folder, file for file.
    let assets: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ClassifyFleet.assets.json")).unwrap(),
    )
    .unwrap();
    let staged: Vec<std::path::PathBuf> = assets["files"]
        .as_object()
        .unwrap()
        .values()
        .map(|file| out.join(file["source"]["path"].as_str().unwrap()))
        .filter(|path| {
            path.join("com.example.ImageClassification.Service")
                .is_dir()
        })
        .collect();
    assert_eq!(staged.len(), 1, "{assets:#}");
    for component in xtask::dist::COMPONENTS {
        for artifact in component.artifacts() {
            let relative = Path::new(component.name)
                .join(xtask::dist::recipe_version(&expected[component.name]).unwrap())
                .join(artifact.file_name());
            assert_eq!(
                std::fs::read(staged[0].join(&relative)).ok(),
                std::fs::read(dist.join("artifacts").join(&relative)).ok(),
                "{}",
                relative.display()
            );
        }
    }
}

#[test]
fn a_named_token_exchange_role_may_read_the_artifacts() {
    let template = synth(&["tokenExchangeRole=GreengrassV2TokenExchangeRole"]);
    let bucket = bucket_id(&template, "Artifacts");
    let policies = resources(&template, "AWS::IAM::Policy");
    let reading = policies
        .iter()
        .find(|p| p["Properties"]["Roles"] == json!(["GreengrassV2TokenExchangeRole"]))
        .unwrap_or_else(|| panic!("no policy on the role: {template:#}"));
    let statements = reading["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert!(
        statements.iter().any(|s| {
            let actions = s["Action"].to_string();
            actions.contains("s3:GetObject")
                && !actions.contains("s3:PutObject")
                && s["Resource"].to_string().contains(&bucket)
        }),
        "{statements:#?}"
    );
    // Without the context no role is touched.
    assert!(
        !synth(&[])
            .to_string()
            .contains("GreengrassV2TokenExchangeRole"),
        "a role was named without the context"
    );
}

/// A deployment's `TargetArn` with its pseudo parameters written as words.
fn target_arn(deployment: &Value) -> String {
    let join = &deployment["Properties"]["TargetArn"]["Fn::Join"];
    join[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| match part {
            Value::String(text) => text.clone(),
            other => other["Ref"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
fn a_thing_group_gets_the_built_versions_its_merges_and_a_staged_rollout() {
    let work = tempfile::tempdir().unwrap();
    let merges = work.path().join("merges.json");
    std::fs::write(&merges, r#"{"IpcAdapter": {"ReplyFormat": "label"}}"#).unwrap();
    let template = synth(&[
        "thingGroup=cameras",
        &format!("configuration={}", merges.display()),
        "abortThresholdPercent=5",
    ]);
    let deployments = resources(&template, "AWS::GreengrassV2::Deployment");
    assert_eq!(deployments.len(), 1, "{template:#}");
    let deployment = deployments[0];
    assert_eq!(
        target_arn(deployment),
        "arn:AWS::Partition:iot:AWS::Region:AWS::AccountId:thinggroup/cameras"
    );
    // The default components, each at the version this stack publishes (the built one).
    let components = deployment["Properties"]["Components"].as_object().unwrap();
    let names: Vec<&str> = components.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "com.example.ImageClassification.IpcAdapter",
            "com.example.ImageClassification.Service"
        ]
    );
    for (name, spec) in components {
        let resource = spec["ComponentVersion"]["Fn::GetAtt"][0].as_str().unwrap();
        assert_eq!(
            spec["ComponentVersion"]["Fn::GetAtt"][1],
            "ComponentVersion"
        );
        let recipe = joined(
            &template["Resources"][resource]["Properties"]["InlineRecipe"],
            &bucket_id(&template, "Artifacts"),
        );
        assert_eq!(
            xtask::dist::recipe_name(&recipe).as_deref(),
            Some(name.as_str())
        );
        assert!(
            deployment["DependsOn"]
                .as_array()
                .unwrap()
                .contains(&json!(resource)),
            "{name}"
        );
    }
    assert_eq!(
        components["com.example.ImageClassification.IpcAdapter"]["ConfigurationUpdate"],
        json!({"Merge": r#"{"ReplyFormat":"label"}"#})
    );
    assert!(components["com.example.ImageClassification.Service"]["ConfigurationUpdate"].is_null());
    let policies = &deployment["Properties"]["DeploymentPolicies"];
    assert_eq!(policies["FailureHandlingPolicy"], "ROLLBACK");
    let jobs = &deployment["Properties"]["IotJobConfiguration"];
    assert_eq!(
        jobs["AbortConfig"]["CriteriaList"],
        json!([{"Action": "CANCEL", "FailureType": "FAILED", "MinNumberOfExecutedThings": 10,
                "ThresholdPercentage": 5}])
    );
    let rate = &jobs["JobExecutionsRolloutConfig"];
    assert_eq!(rate["ExponentialRate"]["BaseRatePerMinute"], 5);
    assert_eq!(
        rate["ExponentialRate"]["RateIncreaseCriteria"],
        json!({"NumberOfSucceededThings": 10})
    );
    assert_eq!(rate["MaximumPerMinute"], 50);
}

#[test]
fn one_thing_gets_the_components_named_and_no_rollout() {
    let template = synth(&[
        "thing=camera-1",
        "components=Scheduled",
        "memoryLimit=Scheduled:131072",
    ]);
    let deployment = resources(&template, "AWS::GreengrassV2::Deployment")[0];
    assert!(target_arn(deployment).ends_with(":thing/camera-1"));
    let components = deployment["Properties"]["Components"].as_object().unwrap();
    assert_eq!(
        components.keys().collect::<Vec<_>>(),
        ["com.example.ImageClassification.Scheduled"]
    );
    assert!(deployment["Properties"]["IotJobConfiguration"].is_null());
    // The memory limit the device enforces on it (kilobytes), as recipes/README.md explains.
    assert_eq!(
        components["com.example.ImageClassification.Scheduled"]["RunWith"],
        json!({"SystemResourceLimits": {"Memory": 131072}})
    );
    // Without a target the components are published and nothing is deployed.
    assert!(resources(&synth(&[]), "AWS::GreengrassV2::Deployment").is_empty());
}

#[test]
fn a_target_given_twice_or_an_unknown_component_is_refused_in_plain_words() {
    let both = synth_failure(&["thing=camera-1", "thingGroup=cameras"]);
    assert!(
        both.contains("name a thing or a thing group, not both"),
        "{both}"
    );
    let memory = synth_failure(&["thing=camera-1", "memoryLimit=Service:256MB"]);
    assert!(
        memory.contains(r#"-c memoryLimit: "Service:256MB" is not COMPONENT:KILOBYTES"#),
        "{memory}"
    );
    let unknown = synth_failure(&["thing=camera-1", "components=Classifier"]);
    assert!(
        unknown.contains("no built component Classifier; built: com.example"),
        "{unknown}"
    );
}

/// cdk-nag's AwsSolutions pack runs in every synth (any unacknowledged finding fails it, and
/// with it every test here); what it found and was acknowledged is exactly this list, each with
/// its written reason — a new acknowledgement is a change to review here. The one finding fixed
/// rather than acknowledged: the artifacts bucket logs its requests to an access-log bucket.
#[test]
fn aws_solutions_checks_pass_with_reasons_for_each_acknowledged_finding() {
    let app = dlr_test_models::paths::workspace_root().join("deploy/cdk/bin/fleet.ts");
    let source = std::fs::read_to_string(app).unwrap();
    assert!(
        source.contains("addPlugins(new AwsSolutionsChecks("),
        "{source}"
    );

    let (template, out) = default_synth();
    let metadata: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ClassifyFleet.metadata.json")).unwrap(),
    )
    .unwrap();
    let mut acknowledged = std::collections::BTreeMap::new();
    for (path, entries) in metadata.as_object().unwrap() {
        for entry in entries.as_array().unwrap() {
            if entry["type"] != "aws:cdk:acknowledged-rules" {
                continue;
            }
            for (rule, reason) in entry["data"].as_object().unwrap() {
                let reason = reason.as_str().unwrap();
                assert!(reason.len() >= 40, "{path} {rule}: {reason:?} is no reason");
                let construct = path.rsplit('/').next().unwrap();
                let construct = construct.split("8693").next().unwrap();
                acknowledged.insert(
                    format!("{construct} {}", rule.trim_start_matches("Annotation::")),
                    reason.to_owned(),
                );
            }
        }
    }
    let bucket = bucket_id(template, "Artifacts");
    let rules: Vec<&str> = acknowledged.keys().map(String::as_str).collect();
    assert_eq!(
        rules,
        [
            "AccessLogs AwsSolutions-S1".to_owned(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Action::s3:Abort*]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Action::s3:DeleteObject*]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Action::s3:GetBucket*]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Action::s3:GetObject*]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Action::s3:List*]".into(),
            format!("Custom::CDKBucketDeployment AwsSolutions-IAM5[Resource::<{bucket}.Arn>/*]"),
            "Custom::CDKBucketDeployment AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]".into(),
            "Custom::CDKBucketDeployment AwsSolutions-L1".into(),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        "{acknowledged:#?}"
    );
}
