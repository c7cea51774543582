//! The table of request documents (`request_documents.json`) through the one reader: each
//! valid document reads as its form with its options, each invalid one is refused naming the
//! field and saying what is accepted. The service's HTTP tests and the IPC end-to-end tests
//! run the same table through their own transports.

use classify_api::ClassifyJson;
use serde_json::Value;

fn table() -> Vec<Value> {
    serde_json::from_str(include_str!("request_documents.json")).expect("the table is JSON")
}

#[test]
fn every_document_gets_its_verdict() {
    let table = table();
    assert!(table.len() > 20, "the table is read whole");
    for case in table {
        let doc = case["doc"].clone();
        let read = ClassifyJson::from_value(doc.clone());
        match case.get("form") {
            Some(form) => {
                let body = read.unwrap_or_else(|e| panic!("{doc} must be accepted, got: {e}"));
                let got = match &body {
                    ClassifyJson::Base64(_) => "base64",
                    ClassifyJson::Path(_) => "path",
                    ClassifyJson::DirAndName(_) => "dir_and_name",
                };
                assert_eq!(got, form.as_str().unwrap(), "{doc}");
                assert_eq!(body.top_k(), case["top_k"].as_u64(), "{doc}");
                assert_eq!(body.threshold(), case["threshold"].as_f64(), "{doc}");
                // What a client writes reads back as the same body.
                let again = serde_json::to_value(&body).unwrap();
                assert_eq!(ClassifyJson::from_value(again).unwrap(), body, "{doc}");
            }
            None => {
                let error = read.expect_err(&format!("{doc} must be refused"));
                assert_eq!(error.field(), case["field"].as_str(), "{doc}: {error}");
                for words in case["says"].as_array().unwrap() {
                    let words = words.as_str().unwrap();
                    assert!(
                        error.message().contains(words),
                        "{doc}: {error:?} lacks {words:?}"
                    );
                }
                // serde's Deserialize is the same reader, with the same message (serde_json
                // adds where in the text it stopped).
                let text = doc.to_string();
                let via_serde = serde_json::from_str::<ClassifyJson>(&text).unwrap_err();
                assert!(
                    via_serde.to_string().starts_with(error.message()),
                    "{doc}: {via_serde}"
                );
            }
        }
    }
}

#[test]
fn unknown_fields_list_what_the_caller_also_accepts() {
    let Value::Object(fields) = serde_json::json!({"path": "/a.png", "reply_to": "x"}) else {
        unreachable!()
    };
    let error = ClassifyJson::from_fields(fields, &["request_id", "reply_topic"]).unwrap_err();
    assert_eq!(error.field(), Some("reply_to"));
    assert!(
        error
            .message()
            .ends_with("top_k, threshold, request_id, reply_topic"),
        "{error}"
    );
}
