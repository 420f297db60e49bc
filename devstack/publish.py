"""`python -m devstack publish FILE...`: put event files on the input topic."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path


async def _publish(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for payload in payloads:
            try:
                key = str(json.loads(payload).get("conversation_id", "")).encode() or None
            except (ValueError, AttributeError):
                key = None  # publish bad input as it is: that is what the DLQ is for
            await producer.send_and_wait(topic, payload, key=key)
    finally:
        await producer.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack publish", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="conversation-closed")
    args = parser.parse_args(argv)
    payloads = [path.read_bytes() for path in args.files]
    asyncio.run(_publish(args.bootstrap, args.topic, payloads))
    print(f"published {len(payloads)} event(s) to {args.topic} on {args.bootstrap}")
    return 0
