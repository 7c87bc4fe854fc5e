"""Thin wrappers over aiokafka: producer, tracked consumer, topic creation (DESIGN §3)."""

from runmesh.core.kafka.admin import ensure_topics
from runmesh.core.kafka.clients import (
    commit_owned,
    consumer_config,
    make_consumer,
    make_producer,
    pin_to_latest,
    replay_from_start,
    wait_for_assignment,
)
from runmesh.core.kafka.offsets import OffsetTracker
from runmesh.core.kafka.publisher import Publisher
from runmesh.core.kafka.tracked_consumer import TrackedConsumer

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
    "replay_from_start",
    "wait_for_assignment",
]
