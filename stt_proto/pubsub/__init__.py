"""Publish-subscribe over the DHT (issue 15): topics, meshes, signed messages."""
