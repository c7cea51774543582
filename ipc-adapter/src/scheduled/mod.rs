//! `schedule`: the drop-in for AWS's `aws.greengrass.DLRImageClassification`.
//!
//! Every `InferenceInterval` seconds it classifies `ImageDirectory/ImageName` with the service and
//! publishes the result document ([`document`]) to IoT Core on `PublishResultsOnTopic`, QoS 1 —
//! configured by the component's configuration with AWS's keys ([`settings`]), read with
//! GetConfiguration.
//!
//! Like AWS's component: the first classification runs at start, and a configuration change
//! takes effect without a restart (SubscribeToConfigurationUpdate at the root; GetConfiguration
//! after the events, a burst coalesced into one read) and classifies at once, restarting the
//! schedule from then. Unlike it:
//! * the schedule is fixed-rate (ticks at start + n × interval; a classification that overruns a
//!   tick skips it), so results do not drift by the time each one takes;
//! * the image file is read fresh at every tick (a replaced file is seen), bounded by
//!   `--max-image-bytes`;
//! * a missing, unreadable or undecodable image, a service failure or a failed publish is a
//!   logged error and the schedule goes on — the component never exits for them; only a lost
//!   nucleus connection ends it (status 4, so that Greengrass restarts it);
//! * optionally (`PublishResultsOnLocalTopic`), every result document and an error document for
//!   every failed run also go to a local pub/sub topic, so components on the device see the
//!   results offline ([`document::ErrorDocument`]; as binaryMessages holding the JSON text, which
//!   nucleus lite delivers whatever their size in JSON values);
//! * a configuration value that is not accepted (an interval that is not a positive number, an
//!   unsupported image extension, …) is refused with a log line saying what is accepted, and the
//!   last good value stays in force; a change that leaves the settings as they were (nucleus lite
//!   notifies more than once per deployment) does not classify again.
//!
//! Flow: [`run`] → connect, subscribe to configuration updates, GetConfiguration,
//! [`Settings::apply`] → [`Scheduler::run`]: wait for the tick or a configuration event
//! ([`Scheduler::reconfigure`]) → [`Scheduler::classify`] (read the file, `POST /classify` with
//! the image, the document) → [`Scheduler::publish`].

pub mod document;
pub mod new_images;
pub mod settings;
pub mod spool;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use classify_api::{ClassifyBase64, ClassifyJson};
use greengrass_ipc::client::{IpcClient, IpcError, Subscription};
use greengrass_ipc::configuration::ConfigurationUpdateEvent;
use greengrass_ipc::iot_core::{self, Qos};
use greengrass_ipc::pubsub::Payload;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::adapter::{AdapterError, write_ready_file};
use crate::config::ScheduleArgs;
use crate::messages::{ClassifyRequest, ErrorCode};
use crate::service::ServiceClient;
pub use document::{ErrorDocument, ResultDocument};
use new_images::NewImages;
pub use settings::Settings;
use spool::{Backoff, Spool};

/// Connects, reads the configuration and classifies on schedule until `shutdown` resolves or
/// the nucleus connection is lost. Its errors are the adapter's, with the same exit statuses.
pub async fn run(
    args: ScheduleArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdapterError> {
    let ready_file = args.ready_file.clone();
    let result = Scheduler::start(args).await?.run(shutdown).await;
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// How long a burst of configuration events may keep arriving before the configuration is read
/// (a deployment changing N keys sends about N events).
const SETTLE: Duration = Duration::from_millis(200);

/// A connected scheduler with its settings in force.
#[derive(Debug)]
pub struct Scheduler {
    client: IpcClient,
    service: ServiceClient,
    args: ScheduleArgs,
    settings: Settings,
    /// This component's name, as the nucleus reports it.
    component: String,
    updates: Subscription<ConfigurationUpdateEvent>,
    /// Results not yet delivered to IoT Core (topic, document), oldest first.
    spool: Spool<(String, ResultDocument)>,
    /// When to try delivering them again.
    backoff: Backoff,
    /// The watch for new images, while `ClassifyNewImages` is on and the folder can be watched.
    new_images: Option<NewImages>,
    /// The last reason the folder could not be watched (logged once).
    watch_error: Option<String>,
}

impl Scheduler {
    /// Connects to the nucleus (waiting for its socket) and reads this component's
    /// configuration.
    pub async fn start(args: ScheduleArgs) -> Result<Self, AdapterError> {
        let client_config = args.ipc.client_config().map_err(AdapterError::Config)?;
        let service = ServiceClient::new(&args.service_url).map_err(AdapterError::Config)?;
        let default_dir = std::path::absolute(&args.default_image_directory).map_err(|e| {
            AdapterError::Config(format!(
                "--default-image-directory {}: {e}",
                args.default_image_directory.display()
            ))
        })?;
        let client = IpcClient::connect(client_config)
            .await
            .map_err(AdapterError::Startup)?;
        // Subscribed before the first read, so that no change falls between the two; at the
        // root, because a key-level subscription can be lost when a reset deletes the key.
        let updates = client
            .subscribe_to_configuration_update(None, &[])
            .await
            .map_err(AdapterError::Startup)?;
        let config = client
            .get_configuration(None, &[])
            .await
            .map_err(AdapterError::Startup)?;
        let component = config.component_name.clone().unwrap_or_default();
        let (settings, refused) = Settings::defaults(default_dir).apply(&config.value);
        for r in &refused {
            tracing::error!(
                key = r.key,
                "configuration value refused, default kept: {}",
                r.message
            );
        }
        log_settings(&settings);
        if let Some(path) = &args.ready_file
            && let Err(e) = write_ready_file(path)
        {
            return Err(AdapterError::Config(format!(
                "cannot write --ready-file {}: {e}",
                path.display()
            )));
        }
        let spool = Spool::new(args.spool_max_results, args.spool_max_bytes);
        let backoff = Backoff::new(
            Duration::from_secs(1),
            Duration::from_millis(args.spool_retry_max_ms),
        );
        Ok(Self {
            client,
            service,
            args,
            settings,
            component,
            updates,
            spool,
            backoff,
            new_images: None,
            watch_error: None,
        })
    }

    /// Classifies at once, then at every tick, and each new image when `ClassifyNewImages` is
    /// on, until `shutdown` or a lost connection; a configuration change that changes the
    /// settings classifies at once and restarts the schedule.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AdapterError> {
        tokio::pin!(shutdown);
        let mut runs = 0;
        let mut tick = Instant::now();
        loop {
            self.follow_new_images();
            let retry = self.backoff.due();
            let (path, timed) = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                reason = self.client.closed() => return Err(AdapterError::ConnectionLost(reason)),
                () = tokio::time::sleep_until(retry.unwrap_or(tick)), if retry.is_some() => {
                    self.flush().await;
                    continue;
                }
                event = self.updates.next() => {
                    if !self.reconfigure(event).await? {
                        continue;
                    }
                    tick = Instant::now();
                    continue;
                }
                // The timer before new images, so that a stream of new images cannot starve it.
                () = tokio::time::sleep_until(tick) => match self.settings.image_path() {
                    Some(path) => (path, true),
                    None => {
                        tick = next_tick(tick, self.settings.interval, Instant::now());
                        continue;
                    }
                },
                path = next_new_image(self.new_images.as_ref()), if self.new_images.is_some() => {
                    (path, false)
                }
            };
            runs += 1;
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = self.once(runs, &path) => {}
            }
            if timed {
                // Ticks this run overran are skipped, not run back to back.
                tick = next_tick(tick, self.settings.interval, Instant::now());
            }
        }
    }

    /// Starts, stops or moves the watch for new images to match the settings. A folder that
    /// cannot be watched is logged once and tried again before each wait.
    fn follow_new_images(&mut self) {
        let wanted = self
            .settings
            .classify_new_images
            .then(|| self.settings.image_directory.clone());
        let current = self.new_images.as_ref().map(|w| w.dir().to_path_buf());
        if wanted == current {
            return;
        }
        self.new_images = None;
        let Some(dir) = wanted else {
            return;
        };
        match NewImages::watch(&dir, self.args.new_images_max_pending) {
            Ok(watch) => {
                tracing::info!(dir = %dir.display(), "classifying each new image in the folder");
                self.new_images = Some(watch);
                self.watch_error = None;
            }
            Err(e) => {
                if self.watch_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("{e}; trying again before each run");
                    self.watch_error = Some(e);
                }
            }
        }
    }

    /// Handles a configuration event: waits for the burst to settle, reads the configuration and
    /// applies it. Returns whether the settings in force changed.
    pub async fn reconfigure(
        &mut self,
        event: Option<Result<ConfigurationUpdateEvent, IpcError>>,
    ) -> Result<bool, AdapterError> {
        let mut relevant = self.relevant(event).await?;
        // Coalesce: every event that follows within SETTLE of the last one is the same change.
        while let Ok(next) = tokio::time::timeout(SETTLE, self.updates.next()).await {
            relevant |= self.relevant(next).await?;
        }
        if !relevant {
            return Ok(false);
        }
        let config = match self.client.get_configuration(None, &[]).await {
            Ok(c) => c.value,
            Err(e) if e.is_connection_lost() => {
                return Err(AdapterError::ConnectionLost(e.to_string()));
            }
            Err(e) => {
                tracing::error!(
                    "reading the changed configuration failed; the settings in force stay: {e}"
                );
                return Ok(false);
            }
        };
        let (next, refused) = self.settings.apply(&config);
        for r in &refused {
            tracing::error!(
                key = r.key,
                "configuration value refused, the one in force stays: {}",
                r.message
            );
        }
        if next == self.settings {
            tracing::info!("configuration changed; the settings in force are the same");
            return Ok(false);
        }
        self.settings = next;
        tracing::info!("configuration changed: classifying now with the new settings");
        log_settings(&self.settings);
        Ok(true)
    }

    /// Whether an event concerns this component's configuration. A subscription the nucleus
    /// ended is opened again.
    async fn relevant(
        &mut self,
        event: Option<Result<ConfigurationUpdateEvent, IpcError>>,
    ) -> Result<bool, AdapterError> {
        match event {
            Some(Ok(e)) => {
                let ours = self.component.is_empty() || e.component_name == self.component;
                tracing::debug!(component = %e.component_name, key_path = ?e.key_path, ours, "configuration update event");
                Ok(ours)
            }
            Some(Err(IpcError::MessageTooLarge { len, .. })) => {
                tracing::warn!(len, "a configuration event too large to read was skipped");
                Ok(true)
            }
            Some(Err(e)) if e.is_connection_lost() => {
                Err(AdapterError::ConnectionLost(e.to_string()))
            }
            Some(Err(_)) | None => {
                tracing::warn!(
                    "the nucleus ended the configuration subscription; subscribing again"
                );
                self.updates = self
                    .client
                    .subscribe_to_configuration_update(None, &[])
                    .await
                    .map_err(|e| AdapterError::ConnectionLost(e.to_string()))?;
                // A change may have come while no subscription was open.
                Ok(true)
            }
        }
    }

    /// One scheduled run: classify, log, publish. Every failure is logged (and published as an
    /// error document on the local topic), none is returned.
    async fn once(&mut self, run: u64, path: &Path) {
        let document = match self.classify(path, run).await {
            Ok(document) => document,
            Err((code, message)) => {
                tracing::error!(run, image = %path.display(), code = code.as_str(), "classification failed: {message}");
                let error = ErrorDocument::new(
                    code,
                    &message,
                    &path.display().to_string(),
                    time::OffsetDateTime::now_utc(),
                );
                self.publish_locally(run, &error.to_bytes(), None).await;
                return;
            }
        };
        let text = document.to_bytes();
        tracing::info!(run, result = %String::from_utf8_lossy(&text), "classified");
        self.publish(document.clone(), text.len()).await;
        self.publish_locally(run, &text, Some(&document)).await;
    }

    /// Reads the image fresh and classifies it; a failure is the code of the error document and
    /// what went wrong in plain words.
    pub async fn classify(
        &self,
        path: &Path,
        run: u64,
    ) -> Result<ResultDocument, (ErrorCode, String)> {
        let started = Instant::now();
        let bytes = read_image(path, self.args.max_image_bytes).await?;
        let request = ClassifyRequest {
            request_id: format!("scheduled-{run}"),
            body: ClassifyJson::Base64(ClassifyBase64 {
                image_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
                top_k: Some(self.settings.top_k),
                threshold: Some(self.settings.threshold),
            }),
            reply_topic: None,
        };
        drop(bytes);
        let deadline = Instant::now() + Duration::from_millis(self.args.classify_deadline_ms);
        let answer = self
            .service
            .classify_until(&request, deadline)
            .await
            .map_err(|f| (f.code, f.message))?;
        Ok(ResultDocument::new(
            &answer,
            self.settings.top_k,
            self.settings.threshold,
            &path.display().to_string(),
            started.elapsed().as_secs_f64() * 1000.0,
            time::OffsetDateTime::now_utc(),
        ))
    }

    /// Publishes a document (its JSON `text`) on the local topic, if one is configured; a
    /// result document that does not fit the nucleus' frame limit is sent without its extras.
    /// A failure is logged.
    async fn publish_locally(&self, run: u64, text: &[u8], result: Option<&ResultDocument>) {
        let Some(topic) = &self.settings.local_topic else {
            return;
        };
        let send = async |bytes: &[u8]| {
            let payload = Payload::Binary(bytes.to_vec());
            self.client.publish(topic, &payload).await
        };
        let mut sent = send(text).await;
        if let (Err(IpcError::FrameTooLarge { .. }), Some(document)) = (&sent, result) {
            tracing::warn!(
                run,
                topic,
                "the document's extras were left out to fit the nucleus' frame limit"
            );
            sent = send(&document.without_extras().to_bytes()).await;
        }
        match sent {
            Ok(()) => tracing::debug!(run, topic, "document published on the local topic"),
            Err(e) if e.is_unauthorized() => tracing::error!(
                run,
                topic,
                "not authorised to publish on this local topic: the recipe's accessControl \
                 (aws.greengrass.ipc.pubsub, aws.greengrass#PublishToTopic) must list it: {e}"
            ),
            Err(e) => tracing::error!(run, topic, "publishing on the local topic failed: {e}"),
        }
    }

    /// Publishes a result (of `size` bytes as JSON) to IoT Core on the configured topic, QoS 1
    /// (nothing when the topic is empty): behind the results already waiting in the spool, so
    /// that order is kept.
    async fn publish(&mut self, document: ResultDocument, size: usize) {
        let Some(topic) = self.settings.iot_core_topic.clone() else {
            return;
        };
        let dropped = self.spool.push((topic, document), size);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                dropped_in_total = self.spool.dropped(),
                kept = self.spool.len(),
                "the spool of results waiting for IoT Core is full: the oldest were dropped"
            );
        }
        // While a retry is pending, the new result waits its turn with the others.
        if self.backoff.due().is_none() {
            self.flush().await;
        }
    }

    /// Delivers the spooled results, oldest first, until one cannot be delivered now.
    async fn flush(&mut self) {
        let waiting = self.spool.len();
        let mut delivered = 0;
        while let Some((topic, document)) = self.spool.front().cloned() {
            match self.deliver(&topic, &document).await {
                Delivery::Delivered => delivered += 1,
                Delivery::Dropped(reason) => {
                    tracing::error!(topic, "result not published: {reason}")
                }
                Delivery::Later(reason) => {
                    let pause = self.backoff.failed(Instant::now());
                    tracing::warn!(
                        topic,
                        kept = self.spool.len(),
                        retry_in_ms = pause.as_millis() as u64,
                        "IoT Core cannot be reached; results are kept and sent in order later: {reason}"
                    );
                    return;
                }
            }
            self.spool.pop();
        }
        if self.backoff.due().is_some() || waiting > 1 {
            tracing::info!(
                delivered,
                "results kept while IoT Core could not be reached were delivered"
            );
        }
        self.backoff.succeeded();
    }

    /// One attempt to publish `document` to IoT Core. When it does not fit the nucleus' limit it
    /// is sent without its extras; its results are never trimmed.
    async fn deliver(&self, topic: &str, document: &ResultDocument) -> Delivery {
        let send = async |bytes: Vec<u8>| {
            if bytes.len() > iot_core::CLASSIC_MAX_PAYLOAD {
                return Err(IpcError::FrameTooLarge {
                    len: bytes.len(),
                    max: iot_core::CLASSIC_MAX_PAYLOAD,
                });
            }
            self.client
                .publish_to_iot_core(topic, Qos::AtLeastOnce, &bytes)
                .await
        };
        let mut result = send(document.to_bytes()).await;
        if let Err(IpcError::FrameTooLarge { .. }) = result {
            result = send(document.without_extras().to_bytes()).await;
            if result.is_ok() {
                tracing::warn!(
                    topic,
                    "the document's extras were left out to fit the nucleus' size limit"
                );
            }
        }
        match result {
            Ok(()) => Delivery::Delivered,
            Err(IpcError::FrameTooLarge { len, max }) => Delivery::Dropped(format!(
                "its {} results make a document of {len} bytes, over the nucleus' limit of {max} \
                 bytes even without its extras; lower TopK or raise ScoreThreshold",
                document.inference_results.len()
            )),
            Err(e) if e.is_unauthorized() => Delivery::Dropped(format!(
                "not authorised to publish to IoT Core on this topic: the recipe's accessControl \
                 (aws.greengrass.ipc.mqttproxy, aws.greengrass#PublishToIoTCore) must list it: {e}"
            )),
            Err(e @ IpcError::Service { .. }) if e.to_string().contains("InvalidArguments") => {
                Delivery::Dropped(e.to_string())
            }
            Err(e) => Delivery::Later(e.to_string()),
        }
    }
}

/// What became of one attempt to publish a spooled result.
enum Delivery {
    /// Published.
    Delivered,
    /// Never publishable (not authorised, too large, refused): dropped, with the reason.
    Dropped(String),
    /// Not now (the cloud or the nucleus cannot take it): kept, with the reason.
    Later(String),
}

/// The next new image of `watch` (only polled while there is one).
async fn next_new_image(watch: Option<&NewImages>) -> PathBuf {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

/// The tick after `tick` on the grid `tick + n × interval` that is still ahead of `now`: a run
/// that overran one or more ticks skips them instead of running back to back.
fn next_tick(tick: Instant, interval: Duration, now: Instant) -> Instant {
    let next = tick + interval;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos();
    let skipped = behind / interval.as_nanos().max(1) + 1;
    let skipped = u32::try_from(skipped).unwrap_or(u32::MAX);
    next + interval.saturating_mul(skipped)
}

/// Reads an image file of at most `max` bytes; a failure is the code of the error document and
/// what went wrong.
async fn read_image(path: &Path, max: u64) -> Result<Vec<u8>, (ErrorCode, String)> {
    let shown = path.display();
    let unreadable = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => (ErrorCode::NotFound, format!("{shown} does not exist")),
        std::io::ErrorKind::PermissionDenied => (
            ErrorCode::ForbiddenPath,
            format!("cannot read {shown}: {e}"),
        ),
        _ => (ErrorCode::InvalidImage, format!("cannot read {shown}: {e}")),
    };
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let meta = file.metadata().await.map_err(unreadable)?;
    if !meta.is_file() {
        return Err((ErrorCode::NotFound, format!("{shown} is not a file")));
    }
    let too_large = |what: String| (ErrorCode::ImageTooLarge, what);
    if meta.len() > max {
        return Err(too_large(format!(
            "{shown} is {} bytes; the limit is {max} bytes (--max-image-bytes)",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while being read stops at the limit instead of growing the buffer.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(too_large(format!(
            "{shown} grew past the limit of {max} bytes while being read"
        )));
    }
    Ok(bytes)
}

fn log_settings(s: &Settings) {
    tracing::info!(
        interval_s = s.interval.as_secs_f64(),
        image = %s.image_path().as_deref().unwrap_or(Path::new("(none)")).display(),
        new_images = s.classify_new_images,
        iot_core_topic = s.iot_core_topic.as_deref().unwrap_or("(none: log only)"),
        local_topic = s.local_topic.as_deref().unwrap_or("(none)"),
        top_k = s.top_k,
        threshold = s.threshold,
        "scheduled classification settings"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_on_the_grid_and_overrun_ticks_are_skipped() {
        let t0 = Instant::now();
        let s = Duration::from_secs(10);
        // On time: the next grid point.
        assert_eq!(next_tick(t0, s, t0 + Duration::from_secs(3)), t0 + s);
        // A run that took 25 s skips the ticks at 10 and 20 and lands on 30.
        assert_eq!(
            next_tick(t0, s, t0 + Duration::from_secs(25)),
            t0 + Duration::from_secs(30)
        );
        // Exactly on a tick: the following one.
        assert_eq!(next_tick(t0, s, t0 + s), t0 + 2 * s);
    }
}
