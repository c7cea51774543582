"""The seed's com.custom.requester, with the OFFICIAL Greengrass IPC client.

Subscribes to the reply topic, publishes {"image_dir", "fname"} as a binaryMessage (JSON text) on
the request topic, exactly as the seed's requester does, and prints each reply it receives as one
JSON line: {"reply": "<text>"}. With `--document` instead of `--fname`, each given JSON text is
published as it is (any request document, valid or not), one at a time: the next goes out once
the previous one's reply came, so replies print in the documents' order. Exits 0 after all
replies, 2 when one does not come within `--wait` seconds. The socket and token come from the environment, as Greengrass hands them to a
component (AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT, SVCUID).
"""

import argparse
import json
import queue
import sys

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage, SubscriptionResponseMessage


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-dir")
    parser.add_argument("--fname", action="append", default=[])
    parser.add_argument("--document", action="append", default=[])
    parser.add_argument("--request-topic", default="local/inference")
    parser.add_argument("--reply-topic", default="local/result")
    parser.add_argument("--wait", type=float, default=20.0)
    args = parser.parse_args()

    replies: "queue.Queue[str]" = queue.Queue()

    def on_stream_event(event: SubscriptionResponseMessage) -> None:
        if event.binary_message is not None:
            replies.put(str(event.binary_message.message, "utf-8"))
        elif event.json_message is not None:
            replies.put(json.dumps(event.json_message.message))

    ipc_client = GreengrassCoreIPCClientV2()
    _, operation = ipc_client.subscribe_to_topic(
        topic=args.reply_topic, on_stream_event=on_stream_event
    )
    def publish(text: str) -> None:
        binary_message = BinaryMessage(message=bytes(text, "utf-8"))
        ipc_client.publish_to_topic(
            topic=args.request_topic, publish_message=PublishMessage(binary_message=binary_message)
        )

    def print_reply() -> bool:
        try:
            print(json.dumps({"reply": replies.get(timeout=args.wait)}), flush=True)
            return True
        except queue.Empty:
            print(json.dumps({"error": f"no reply within {args.wait} s"}), flush=True)
            return False

    status = 0
    for fname in args.fname:
        publish(json.dumps({"image_dir": args.image_dir, "fname": fname}))
    for _ in args.fname:
        if not print_reply():
            status = 2
            break
    for document in args.document:
        if status:
            break
        publish(document)
        if not print_reply():
            status = 2
    operation.close()
    ipc_client.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
