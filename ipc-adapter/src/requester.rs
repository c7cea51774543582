//! One-shot requester: the seed's `com.custom.requester` as a subcommand, for manual tests.
//!
//! Subscribes to the reply topic first (so the reply cannot be missed), publishes one request —
//! a binaryMessage holding JSON text like the seed, or a jsonMessage with `--json-message` — and
//! waits for the reply carrying its `request_id`. A reply that is not JSON (the adapter's `label`
//! format carries no id) is taken as the answer as it is.

use std::time::Duration;

use base64::Engine as _;
use classify_api::{ClassifyBase64, ClassifyDirAndName, ClassifyJson, ClassifyPath};
use serde_json::Value;

use crate::config::RequestArgs;
use crate::messages::{REPLY_TOPIC, REQUEST_ID, new_request_id};
use greengrass_ipc::client::IpcClient;
use greengrass_ipc::pubsub::Payload;

/// The reply a request received.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutcome {
    /// The reply exactly as text (JSON document or label text).
    pub text: String,
    /// Whether it reports success (`status: ok`, or a label that is not `ERROR …`).
    pub ok: bool,
}

/// Builds the request document from the arguments: the typed body of `POST /classify`, plus
/// the adapter's `request_id` and (when not the default) `reply_topic`. Values are sent as
/// given, so that the adapter's answer to a bad one can be tried by hand.
pub fn build_request(args: &RequestArgs, request_id: &str) -> Result<Value, String> {
    let (top_k, threshold) = (args.top_k.map(u64::from), args.threshold);
    let body = match (
        &args.image_dir,
        &args.fname,
        &args.path,
        &args.image_base64_file,
    ) {
        (Some(dir), Some(fname), None, None) => ClassifyJson::DirAndName(ClassifyDirAndName {
            image_dir: dir.clone(),
            fname: fname.clone(),
            top_k,
            threshold,
        }),
        (None, None, Some(path), None) => ClassifyJson::Path(ClassifyPath {
            path: path.clone(),
            top_k,
            threshold,
        }),
        (None, None, None, Some(file)) => {
            let bytes =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            ClassifyJson::Base64(ClassifyBase64 {
                image_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                top_k,
                threshold,
            })
        }
        _ => return Err("give --image-dir with --fname, or --path, or --image-base64-file".into()),
    };
    let Ok(Value::Object(mut doc)) = serde_json::to_value(&body) else {
        unreachable!("a request body serialises as a JSON object")
    };
    doc.insert(REQUEST_ID.into(), request_id.into());
    if args.topics.reply_topic != crate::config::defaults::REPLY_TOPIC {
        doc.insert(REPLY_TOPIC.into(), args.topics.reply_topic.clone().into());
    }
    Ok(Value::Object(doc))
}

/// Publishes one request and waits for its reply.
pub async fn request(args: &RequestArgs) -> Result<RequestOutcome, String> {
    let request_id = args.request_id.clone().unwrap_or_else(new_request_id);
    let doc = build_request(args, &request_id)?;
    let client = IpcClient::connect(args.ipc.client_config()?)
        .await
        .map_err(|e| e.to_string())?;
    let topics = &args.topics;
    let mut replies = client
        .subscribe(&topics.reply_topic, None)
        .await
        .map_err(|e| format!("subscribing to {}: {e}", topics.reply_topic))?;
    let payload = if args.json_message {
        Payload::Json(doc)
    } else {
        Payload::Binary(doc.to_string().into_bytes())
    };
    client
        .publish(&topics.request_topic, &payload)
        .await
        .map_err(|e| format!("publishing to {}: {e}", topics.request_topic))?;

    let wait = Duration::from_millis(args.timeout_ms);
    let outcome = tokio::time::timeout(wait, async {
        while let Some(event) = replies.next().await {
            let event = event.map_err(|e| e.to_string())?;
            let (text, value) = match event.payload {
                Payload::Binary(b) => {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    let value = serde_json::from_str::<Value>(&text).ok();
                    (text, value)
                }
                Payload::Json(v) => (v.to_string(), Some(v)),
            };
            match value {
                Some(v) if v.get("request_id").is_some() => {
                    if v.get("request_id").and_then(Value::as_str) == Some(request_id.as_str()) {
                        let ok = v.get("status").and_then(Value::as_str) == Some("ok");
                        return Ok(RequestOutcome { text, ok });
                    }
                }
                _ => {
                    let ok = !text.starts_with("ERROR ");
                    return Ok(RequestOutcome { text, ok });
                }
            }
        }
        Err("the reply subscription ended".to_owned())
    })
    .await
    .map_err(|_| {
        format!(
            "no reply on {} within {} ms",
            topics.reply_topic, args.timeout_ms
        )
    })?;
    let _ = replies.close().await;
    outcome
}
