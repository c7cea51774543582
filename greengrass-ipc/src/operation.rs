//! Request–response operations of `aws.greengrass#GreengrassCoreIPC`, one type each.
//!
//! An operation is a request type implementing [`Operation`] — its name, its request's model
//! type, the JSON body it sends and the response type it reads — and one method on
//! [`IpcClient`](crate::client::IpcClient) that calls [`IpcClient::call`](crate::client::IpcClient::call)
//! with it. Adding an operation touches nothing else: stream ids, the writer lock, frame limits,
//! timeouts and error payloads are the client's, the same for every operation.
//!
//! Streaming operations (`SubscribeToTopic`, `SubscribeToConfigurationUpdate`) have events as well
//! as a response: each has a method of its own on the client, and its event type implements
//! [`StreamEvent`](crate::client::StreamEvent).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use crate::configuration::{self, GetConfigurationResponse};
use crate::iot_core::{self, Qos};
use crate::pubsub::{self, Payload};

/// A request–response operation: the request's fields are the implementing type's.
pub trait Operation {
    /// The operation's name, e.g. `aws.greengrass#PublishToTopic`.
    const NAME: &'static str;
    /// The request's model type, e.g. `aws.greengrass#PublishToTopicRequest`.
    const REQUEST_MODEL: &'static str;
    /// What the response's JSON body reads as; [`IgnoredAny`] for an operation whose response
    /// carries nothing. An empty payload reads as `{}`.
    type Response: DeserializeOwned;
    /// The request's JSON body.
    fn body(&self) -> Value;
}

/// `PublishToTopic`: one message on a local topic.
#[derive(Debug, Clone, Copy)]
pub struct PublishToTopic<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The message.
    pub payload: &'a Payload,
}

impl Operation for PublishToTopic<'_> {
    const NAME: &'static str = pubsub::OP_PUBLISH;
    const REQUEST_MODEL: &'static str = pubsub::PUBLISH_REQUEST;
    type Response = IgnoredAny;
    fn body(&self) -> Value {
        pubsub::publish_request(self.topic, self.payload)
    }
}

/// `UpdateState`: this component's lifecycle state, e.g. `RUNNING` from a `Startup` step (needs
/// no authorization policy).
#[derive(Debug, Clone, Copy)]
pub struct UpdateState<'a> {
    /// The state.
    pub state: &'a str,
}

impl Operation for UpdateState<'_> {
    const NAME: &'static str = pubsub::OP_UPDATE_STATE;
    const REQUEST_MODEL: &'static str = pubsub::UPDATE_STATE_REQUEST;
    type Response = IgnoredAny;
    fn body(&self) -> Value {
        serde_json::json!({ "state": self.state })
    }
}

/// `PublishToIoTCore`: one MQTT message to AWS IoT Core through the nucleus (authorised by the
/// recipe's `aws.greengrass.ipc.mqttproxy` policies). Success means the classic nucleus queued it
/// to its spooler, or nucleus lite sent it; see [`crate::iot_core`].
#[derive(Debug, Clone, Copy)]
pub struct PublishToIoTCore<'a> {
    /// The MQTT topic.
    pub topic_name: &'a str,
    /// Quality of service.
    pub qos: Qos,
    /// The payload.
    pub payload: &'a [u8],
}

impl Operation for PublishToIoTCore<'_> {
    const NAME: &'static str = iot_core::OP_PUBLISH_TO_IOT_CORE;
    const REQUEST_MODEL: &'static str = iot_core::PUBLISH_TO_IOT_CORE_REQUEST;
    type Response = IgnoredAny;
    fn body(&self) -> Value {
        iot_core::publish_request(self.topic_name, self.qos, self.payload)
    }
}

/// `GetConfiguration`: a component's configuration, or one node of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetConfiguration<'a> {
    /// Whose configuration; `None` is the caller's own.
    pub component_name: Option<&'a str>,
    /// Which node; empty is the whole configuration.
    pub key_path: &'a [&'a str],
}

impl Operation for GetConfiguration<'_> {
    const NAME: &'static str = configuration::OP_GET_CONFIGURATION;
    const REQUEST_MODEL: &'static str = configuration::GET_CONFIGURATION_REQUEST;
    type Response = GetConfigurationResponse;
    fn body(&self) -> Value {
        configuration::request(self.component_name, self.key_path)
    }
}
