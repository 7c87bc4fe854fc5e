"""runmesh.core: what every runmesh process shares (wire events, topics, errors, settings,
Kafka and PostgreSQL clients, telemetry)."""
