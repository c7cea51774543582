//! The scheduled component's configuration: AWS's `aws.greengrass.DLRImageClassification` keys
//! with AWS's meaning (string values, as recipes hold them), and ours beside them.
//!
//! | key | default | accepted |
//! |---|---|---|
//! | `InferenceInterval` | `"3600"` | seconds between classifications: a positive number (decimals allowed), at most a year |
//! | `ImageDirectory` | the component's `sample_images/` (`--default-image-directory`) | an absolute path; empty means the default |
//! | `ImageName` | `"cat.jpeg"` | a file name (no `/`) ending in `.jpg`, `.jpeg` or `.png`, any case; empty: no fixed image (with `ClassifyNewImages`) |
//! | `ClassifyNewImages` | `"false"` | `"true"`: also classify each new image file that appears in `ImageDirectory` (see `new_images`) |
//! | `PublishResultsOnTopic` | `"ml/dlr/image-classification"` | an IoT Core topic without `+`/`#`; empty publishes nothing (log only) |
//! | `PublishResultsOnLocalTopic` | `""` | a local pub/sub topic without `+`/`#` that also gets every result and an error document for every failed run; empty turns it off |
//! | `TopK` | `"5"` | predictions in the document: an integer ≥ 1 |
//! | `ScoreThreshold` | `"0.3"` | minimum probability of a prediction, 0 to 1 |
//!
//! Numbers may also be JSON numbers (a deployment's merge can write either). A key whose value is
//! not accepted is refused with a line saying which key, the value and what is accepted; that key
//! keeps the value in force (at start, its default), so one bad key never stops the schedule.
//! Keys this component does not know (`UseCamera`, `ModelResourceKey`, `accessControl`, …) are
//! ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Configuration key: seconds between classifications.
pub const INFERENCE_INTERVAL: &str = "InferenceInterval";
/// Configuration key: folder of the image.
pub const IMAGE_DIRECTORY: &str = "ImageDirectory";
/// Configuration key: file name of the image.
pub const IMAGE_NAME: &str = "ImageName";
/// Configuration key: IoT Core topic of the results.
pub const PUBLISH_RESULTS_ON_TOPIC: &str = "PublishResultsOnTopic";
/// Configuration key: classify each new image in the folder.
pub const CLASSIFY_NEW_IMAGES: &str = "ClassifyNewImages";
/// Configuration key: local pub/sub topic of results and errors.
pub const PUBLISH_RESULTS_ON_LOCAL_TOPIC: &str = "PublishResultsOnLocalTopic";
/// Configuration key: number of predictions.
pub const TOP_K: &str = "TopK";
/// Configuration key: minimum probability.
pub const SCORE_THRESHOLD: &str = "ScoreThreshold";

/// Every key this component reads from its configuration, live.
pub const KEYS: [&str; 8] = [
    INFERENCE_INTERVAL,
    IMAGE_DIRECTORY,
    IMAGE_NAME,
    CLASSIFY_NEW_IMAGES,
    PUBLISH_RESULTS_ON_TOPIC,
    PUBLISH_RESULTS_ON_LOCAL_TOPIC,
    TOP_K,
    SCORE_THRESHOLD,
];

/// AWS's defaults.
pub mod defaults {
    use std::time::Duration;

    /// `InferenceInterval`: one hour.
    pub const INFERENCE_INTERVAL: Duration = Duration::from_secs(3600);
    /// `ImageName`.
    pub const IMAGE_NAME: &str = "cat.jpeg";
    /// `PublishResultsOnTopic`.
    pub const PUBLISH_RESULTS_ON_TOPIC: &str = "ml/dlr/image-classification";
    /// `TopK`: AWS's hard-coded top 5.
    pub const TOP_K: u64 = 5;
    /// `ScoreThreshold`: AWS's hard-coded 0.3 (here compared with probabilities).
    pub const SCORE_THRESHOLD: f64 = 0.3;
}

/// Longest accepted interval (a year): longer ones are almost certainly a unit mistake.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Shortest accepted interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Image file extensions AWS's component accepts (its `.npy` arrays excepted).
pub const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The settings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Time between classifications.
    pub interval: Duration,
    /// Folder of the image.
    pub image_directory: PathBuf,
    /// File name of the image; empty for none.
    pub image_name: String,
    /// Whether each new image in the folder is classified too.
    pub classify_new_images: bool,
    /// IoT Core topic of the results; `None` publishes nothing.
    pub iot_core_topic: Option<String>,
    /// Local pub/sub topic of results and error documents; `None` publishes nothing.
    pub local_topic: Option<String>,
    /// Number of predictions in the document.
    pub top_k: u64,
    /// Minimum probability of a prediction.
    pub threshold: f64,
    default_image_directory: PathBuf,
}

/// A key whose value was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The configuration key.
    pub key: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Settings {
    /// AWS's defaults, with the image folder this component was installed with.
    pub fn defaults(default_image_directory: impl Into<PathBuf>) -> Self {
        let dir = default_image_directory.into();
        Self {
            interval: defaults::INFERENCE_INTERVAL,
            image_directory: dir.clone(),
            image_name: defaults::IMAGE_NAME.into(),
            classify_new_images: false,
            iot_core_topic: Some(defaults::PUBLISH_RESULTS_ON_TOPIC.into()),
            local_topic: None,
            top_k: defaults::TOP_K,
            threshold: defaults::SCORE_THRESHOLD,
            default_image_directory: dir,
        }
    }

    /// The image file classified on the timer, if there is one.
    pub fn image_path(&self) -> Option<PathBuf> {
        (!self.image_name.is_empty()).then(|| self.image_directory.join(&self.image_name))
    }

    /// These settings with `config` (a whole component configuration) applied key by key: a
    /// missing key takes its default, a refused one keeps its value in force.
    pub fn apply(&self, config: &Value) -> (Self, Vec<Refused>) {
        let mut next = self.clone();
        let mut refused = Vec::new();
        let r = &mut refused;
        let dir = &self.default_image_directory;
        set(
            config,
            INFERENCE_INTERVAL,
            &mut next.interval,
            defaults::INFERENCE_INTERVAL,
            interval,
            r,
        );
        set(
            config,
            IMAGE_DIRECTORY,
            &mut next.image_directory,
            dir.clone(),
            |v| directory(v, dir),
            r,
        );
        set(
            config,
            IMAGE_NAME,
            &mut next.image_name,
            defaults::IMAGE_NAME.into(),
            image_name,
            r,
        );
        set(
            config,
            CLASSIFY_NEW_IMAGES,
            &mut next.classify_new_images,
            false,
            boolean,
            r,
        );
        let default_topic = Some(defaults::PUBLISH_RESULTS_ON_TOPIC.to_owned());
        set(
            config,
            PUBLISH_RESULTS_ON_TOPIC,
            &mut next.iot_core_topic,
            default_topic,
            topic,
            r,
        );
        set(
            config,
            PUBLISH_RESULTS_ON_LOCAL_TOPIC,
            &mut next.local_topic,
            None,
            topic,
            r,
        );
        set(config, TOP_K, &mut next.top_k, defaults::TOP_K, top_k, r);
        set(
            config,
            SCORE_THRESHOLD,
            &mut next.threshold,
            defaults::SCORE_THRESHOLD,
            threshold,
            r,
        );
        (next, refused)
    }
}

/// Applies one key: a missing (or null) value sets `default`; a refused one leaves `target` as
/// it is and is added to `refused`.
fn set<T>(
    config: &Value,
    key: &'static str,
    target: &mut T,
    default: T,
    parse: impl FnOnce(&Value) -> Result<T, String>,
    refused: &mut Vec<Refused>,
) {
    match config.get(key).filter(|v| !v.is_null()) {
        None => *target = default,
        Some(value) => match parse(value) {
            Ok(v) => *target = v,
            Err(message) => refused.push(Refused { key, message }),
        },
    }
}

/// A number given as a JSON number or a string holding one.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
}

fn interval(value: &Value) -> Result<Duration, String> {
    let accepted = format!(
        "a positive number of seconds from {} to {} (e.g. \"3600\")",
        MIN_INTERVAL.as_secs_f64(),
        MAX_INTERVAL.as_secs()
    );
    let seconds = number(value).ok_or_else(|| format!("{value} is not a number; {accepted}"))?;
    if !(MIN_INTERVAL.as_secs_f64()..=MAX_INTERVAL.as_secs_f64()).contains(&seconds) {
        return Err(format!("{value} is out of range; {accepted}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn text(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{value} is not a string"))
}

fn directory(value: &Value, default: &Path) -> Result<PathBuf, String> {
    let dir = text(value)?;
    if dir.is_empty() {
        return Ok(default.to_path_buf());
    }
    let path = PathBuf::from(dir);
    if !path.is_absolute() {
        return Err(format!(
            "{dir:?} is not an absolute path; give the folder from / (or \"\" for the component's sample images)"
        ));
    }
    Ok(path)
}

fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        _ => Err(format!("{value} is not accepted; \"true\" or \"false\"")),
    }
}

fn image_name(value: &Value) -> Result<String, String> {
    let name = text(value)?;
    if name.is_empty() {
        return Ok(String::new());
    }
    let accepted = format!(
        "a file name in ImageDirectory ending in {}",
        EXTENSIONS.map(|e| format!(".{e}")).join(", ")
    );
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name; {accepted}"));
    }
    let extension = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension {
        Some(e) if EXTENSIONS.contains(&e.as_str()) => Ok(name.to_owned()),
        _ => Err(format!("{name:?} has an unsupported extension; {accepted}")),
    }
}

fn topic(value: &Value) -> Result<Option<String>, String> {
    let topic = text(value)?;
    if topic.is_empty() {
        return Ok(None);
    }
    if topic.contains(['+', '#']) {
        return Err(format!(
            "{topic:?} is a filter; give a topic without '+' or '#' (or \"\" for none)"
        ));
    }
    Ok(Some(topic.to_owned()))
}

fn top_k(value: &Value) -> Result<u64, String> {
    match number(value) {
        Some(k) if k >= 1.0 && k.fract() == 0.0 && k <= f64::from(i32::MAX) => Ok(k as u64),
        _ => Err(format!("{value} is not accepted; an integer of at least 1")),
    }
}

fn threshold(value: &Value) -> Result<f64, String> {
    match number(value) {
        Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(format!(
            "{value} is not accepted; a probability from 0 to 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Settings {
        Settings::defaults("/opt/samples")
    }

    #[test]
    fn aws_defaults_and_string_values() {
        let (s, refused) = base().apply(&json!({}));
        assert!(refused.is_empty());
        assert_eq!(s.interval, Duration::from_secs(3600));
        assert_eq!(s.image_path().unwrap(), Path::new("/opt/samples/cat.jpeg"));
        assert_eq!(
            s.iot_core_topic.as_deref(),
            Some("ml/dlr/image-classification")
        );
        assert_eq!((s.top_k, s.threshold), (5, 0.3));

        let (s, refused) = base().apply(&json!({
            "InferenceInterval": "10", "ImageDirectory": "/data/frames", "ImageName": "Bird.PNG",
            "PublishResultsOnTopic": "", "TopK": 3, "ScoreThreshold": "0.05",
            "UseCamera": "false", "accessControl": {}
        }));
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(s.interval, Duration::from_secs(10));
        assert_eq!(s.image_path().unwrap(), Path::new("/data/frames/Bird.PNG"));
        assert_eq!(s.iot_core_topic, None, "empty topic: log only");
        assert_eq!((s.top_k, s.threshold), (3, 0.05));
        // Removing a key brings back its default; an empty directory is the default one.
        let (back, _) = s.apply(&json!({"ImageDirectory": ""}));
        assert_eq!(
            back.image_path().unwrap(),
            Path::new("/opt/samples/cat.jpeg")
        );
        let (none, _) = back.apply(&json!({"ImageName": "", "ClassifyNewImages": "true"}));
        assert_eq!(none.image_path(), None, "no fixed image");
        assert!(none.classify_new_images);
        assert_eq!(back.interval, Duration::from_secs(3600));
    }

    #[test]
    fn a_refused_value_keeps_the_one_in_force_and_says_what_is_accepted() {
        let (good, _) = base().apply(&json!({"InferenceInterval": "60", "ImageName": "a.jpg"}));
        for (key, value, words) in [
            ("InferenceInterval", json!("0"), "out of range"),
            ("InferenceInterval", json!("-5"), "positive number"),
            ("InferenceInterval", json!("soon"), "not a number"),
            ("InferenceInterval", json!("1e12"), "out of range"),
            ("ImageName", json!("a.gif"), ".jpg, .jpeg, .png"),
            ("ImageName", json!("../etc/x.png"), "not a file name"),
            ("ImageDirectory", json!("relative/dir"), "absolute"),
            ("PublishResultsOnTopic", json!("ml/#"), "filter"),
            ("TopK", json!("0"), "at least 1"),
            ("ClassifyNewImages", json!("yes"), "\"true\" or \"false\""),
            ("TopK", json!(2.5), "at least 1"),
            ("ScoreThreshold", json!("1.5"), "from 0 to 1"),
        ] {
            let mut config = json!({"InferenceInterval": "60", "ImageName": "a.jpg"});
            config[key] = value.clone();
            let (next, refused) = good.apply(&config);
            assert_eq!(next, good, "{key}={value} keeps the settings in force");
            assert_eq!(refused.len(), 1, "{key}={value}");
            assert_eq!(refused[0].key, key);
            assert!(
                refused[0].message.contains(words),
                "{key}={value}: {}",
                refused[0]
            );
        }
    }
}
