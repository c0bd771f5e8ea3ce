"""Telling the world: the outbox that delivers audit events to EventBridge, mail and webhooks."""
