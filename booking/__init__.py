"""The salon booking bot behind the engine's dialogue hook: understanding Russian, the state
machine, stores and backends, notifications. Knows nothing about audio."""
