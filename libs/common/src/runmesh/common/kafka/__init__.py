"""Thin wrappers over aiokafka: producer, tracked consumer, topic creation (DESIGN §3)."""

from runmesh.common.kafka.admin import ensure_topics
from runmesh.common.kafka.clients import (
    commit_owned,
    consumer_config,
    make_consumer,
    make_producer,
    pin_to_latest,
    wait_for_assignment,
)
from runmesh.common.kafka.offsets import OffsetTracker
from runmesh.common.kafka.publisher import Publisher
from runmesh.common.kafka.tracked_consumer import TrackedConsumer

__all__ = [
    "OffsetTracker",
    "Publisher",
    "TrackedConsumer",
    "commit_owned",
    "consumer_config",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "pin_to_latest",
    "wait_for_assignment",
]
