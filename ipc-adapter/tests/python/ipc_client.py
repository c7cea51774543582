"""Drives a nucleus (the crate's emulator) with the OFFICIAL Greengrass IPC client.

Run by the Rust tests in ../python_client.rs with the interpreter of `cargo xtask setup`'s venv
(awsiotsdk==1.31.0). The socket and token come from the environment, exactly as Greengrass hands
them to a component: AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT and SVCUID.

Every scenario prints one JSON line with its findings on stdout and exits 0 when it saw what it
expected, 1 otherwise. Every wait is bounded so a broken peer cannot hang a test.
"""

import argparse
import json
import queue
import sys
import threading
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    QOS,
    BinaryMessage,
    ConfigurationUpdateEvents,
    InvalidArgumentsError,
    JsonMessage,
    PublishMessage,
    ReceiveMode,
    ResourceNotFoundError,
    ServiceError,
    SubscriptionResponseMessage,
    UnauthorizedError,
)

WAIT = 10.0


def out(**kw):
    print(json.dumps(kw), flush=True)


class Collector:
    """Stream handler callbacks feeding a queue."""

    def __init__(self):
        self.events = queue.Queue()
        self.errors = []
        self.closed = threading.Event()

    def on_event(self, event: SubscriptionResponseMessage) -> None:
        if event.binary_message is not None:
            self.events.put({
                "kind": "binary",
                "message": event.binary_message.message.decode("utf-8"),
                "topic": event.binary_message.context.topic if event.binary_message.context else None,
            })
        elif event.json_message is not None:
            self.events.put({
                "kind": "json",
                "message": event.json_message.message,
                "topic": event.json_message.context.topic if event.json_message.context else None,
            })

    def on_error(self, error: Exception) -> bool:
        self.errors.append(repr(error))
        return False  # keep the stream open

    def on_closed(self) -> None:
        self.closed.set()

    def subscribe(self, client, topic, receive_mode=None):
        return client.subscribe_to_topic(
            topic=topic,
            receive_mode=receive_mode,
            on_stream_event=self.on_event,
            on_stream_error=self.on_error,
            on_stream_closed=self.on_closed,
        )

    def take(self, timeout=WAIT):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


def binary(text):
    return PublishMessage(binary_message=BinaryMessage(message=bytes(text, "utf-8")))


def roundtrip(args):
    """Subscribe, publish one binary and one JSON message, receive both, close the stream."""
    client = GreengrassCoreIPCClientV2()
    c = Collector()
    _, op = c.subscribe(client, args.topic)
    client.publish_to_topic(topic=args.topic, publish_message=binary('{"hello": "binary"}'))
    client.publish_to_topic(
        topic=args.topic,
        publish_message=PublishMessage(json_message=JsonMessage(message={"hello": "json"})),
    )
    got = [c.take(), c.take()]
    op.close().result(WAIT)
    client.close()
    ok = (
        got[0] == {"kind": "binary", "message": '{"hello": "binary"}', "topic": args.topic}
        and got[1] == {"kind": "json", "message": {"hello": "json"}, "topic": args.topic}
        and not c.errors
    )
    out(ok=ok, events=got, errors=c.errors)
    return ok


def own_messages(args):
    """RECEIVE_MESSAGES_FROM_OTHERS: count own messages received (classic: 0, lite: 1)."""
    client = GreengrassCoreIPCClientV2()
    c = Collector()
    _, op = c.subscribe(client, args.topic, ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS)
    client.publish_to_topic(topic=args.topic, publish_message=binary("mine"))
    got = c.take(timeout=1.5)
    op.close().result(WAIT)
    client.close()
    out(ok=True, received_own=0 if got is None else 1)
    return True


def unauthorized(args):
    """Publish to (or subscribe to) a topic the component may not use: expect UnauthorizedError."""
    client = GreengrassCoreIPCClientV2()
    try:
        if args.operation == "publish":
            client.publish_to_topic(topic=args.topic, publish_message=binary("x"))
        else:
            Collector().subscribe(client, args.topic)
    except UnauthorizedError as e:
        out(ok=True, error="UnauthorizedError", message=e.message)
        client.close()
        return True
    except Exception as e:  # noqa: BLE001 - report anything else as a failure
        out(ok=False, error=repr(e))
        return False
    out(ok=False, error="no error raised")
    return False


def rejected(args):
    """Connect with a bad token: the client must fail to connect (socket closed)."""
    try:
        client = GreengrassCoreIPCClientV2()
    except Exception as e:  # noqa: BLE001 - the awscrt error type varies
        out(ok=True, error=repr(e))
        return True
    client.close()
    out(ok=False, error="connected with a bad token")
    return False


def close_handshake(args):
    """Subscribe, let the test check the emulator, close, let it check again (via stdin lines)."""
    client = GreengrassCoreIPCClientV2()
    c = Collector()
    _, op = c.subscribe(client, args.topic)
    out(step="subscribed")
    sys.stdin.readline()
    op.close().result(WAIT)
    out(step="closed")
    sys.stdin.readline()
    client.close()
    out(ok=True)
    return True


def seed_request(args):
    """What the seed's com.custom.requester does: binary JSON request, reply on local/result."""
    client = GreengrassCoreIPCClientV2()
    c = Collector()
    _, op = c.subscribe(client, args.reply_topic)
    message = {"image_dir": args.image_dir, "fname": args.fname}
    client.publish_to_topic(topic=args.request_topic, publish_message=binary(json.dumps(message)))
    got = c.take(timeout=args.timeout)
    op.close().result(WAIT)
    client.close()
    if got is None:
        out(ok=False, error="no reply")
        return False
    out(ok=True, reply=got)
    return True


def json_requests(args):
    """A requester that speaks jsonMessage: --count requests one after the other, each with
    top_k 5, each waiting for its reply on the same subscription (on nucleus lite a reply lite
    cannot deliver would silently end that subscription, and later replies would never come)."""
    client = GreengrassCoreIPCClientV2()
    c = Collector()
    _, op = c.subscribe(client, args.reply_topic)
    replies = []
    for i in range(args.count):
        message = {"path": f"{args.image_dir}/{args.fname}", "top_k": 5, "request_id": f"json-{i}"}
        client.publish_to_topic(
            topic=args.request_topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
        )
        got = c.take(timeout=args.timeout)
        if got is None:
            out(ok=False, error=f"no reply to request {i}", replies=replies)
            return False
        replies.append(got)
    op.close().result(WAIT)
    client.close()
    out(ok=True, replies=replies)
    return True


def error_name(call):
    """Runs `call`; returns None on success or the name of the modelled error it raised."""
    try:
        call()
    except (UnauthorizedError, InvalidArgumentsError, ServiceError, ResourceNotFoundError) as e:
        return type(e).__name__
    return None


def iot_core(args):
    """PublishToIoTCore as AWS's components call it: QoS 1 with a payload to --topic; then QoS 0;
    then without qos (the classic nucleus requires it); then to a topic outside the policy."""
    client = GreengrassCoreIPCClientV2()
    results = {
        "qos1": error_name(lambda: client.publish_to_iot_core(
            topic_name=args.topic, qos=QOS.AT_LEAST_ONCE, payload=b'{"n": 1}')),
        "qos0": error_name(lambda: client.publish_to_iot_core(
            topic_name=args.topic, qos=QOS.AT_MOST_ONCE, payload=b'{"n": 2}')),
        "no_qos": error_name(lambda: client.publish_to_iot_core(
            topic_name=args.topic, payload=b'{"n": 3}')),
        "other_topic": error_name(lambda: client.publish_to_iot_core(
            topic_name="not/allowed", qos=QOS.AT_LEAST_ONCE, payload=b"x")),
    }
    client.close()
    out(ok=results["qos1"] is None and results["other_topic"] == "UnauthorizedError", **results)
    return True


def configuration(args):
    """GetConfiguration of the whole configuration and of one leaf; a missing key; then, after
    subscribing at the root, one line per update event until the test closes stdin."""
    client = GreengrassCoreIPCClientV2()
    whole = client.get_configuration()
    leaf = client.get_configuration(key_path=[args.key])
    missing = error_name(lambda: client.get_configuration(key_path=["no", "such", "key"]))
    out(step="read", component=whole.component_name, whole=whole.value, leaf=leaf.value,
        missing=missing)
    events = queue.Queue()

    def on_event(event: ConfigurationUpdateEvents) -> None:
        e = event.configuration_update_event
        events.put({"component": e.component_name, "key_path": e.key_path})

    _, op = client.subscribe_to_configuration_update(on_stream_event=on_event)
    out(step="subscribed")
    while sys.stdin.readline():
        try:
            event = events.get(timeout=WAIT)
        except queue.Empty:
            event = None
        value = client.get_configuration(key_path=[args.key]).value
        out(step="event", event=event, value=value)
    op.close().result(WAIT)
    client.close()
    out(ok=True)
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=[
        "roundtrip", "own-messages", "unauthorized", "rejected", "close-handshake", "seed-request",
        "json-requests", "iot-core", "configuration",
    ])
    p.add_argument("--key", default="ImageName")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--topic", default="test/topic")
    p.add_argument("--operation", choices=["publish", "subscribe"], default="publish")
    p.add_argument("--image-dir", default="/images")
    p.add_argument("--fname", default="pelican.jpeg")
    p.add_argument("--request-topic", default="local/inference")
    p.add_argument("--reply-topic", default="local/result")
    p.add_argument("--timeout", type=float, default=WAIT)
    args = p.parse_args()
    scenario = {
        "roundtrip": roundtrip,
        "own-messages": own_messages,
        "unauthorized": unauthorized,
        "rejected": rejected,
        "close-handshake": close_handshake,
        "seed-request": seed_request,
        "json-requests": json_requests,
        "iot-core": iot_core,
        "configuration": configuration,
    }[args.scenario]
    started = time.monotonic()
    ok = scenario(args)
    sys.stderr.write(f"{args.scenario}: {time.monotonic() - started:.2f}s\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
