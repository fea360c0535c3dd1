"""Fault-injection helpers for the stream tests: the service as a child process, a private
Kafka broker that can be restarted with its data, and the exactly-once checks."""
