"""Shared by the reference-service tests."""

TOKEN = "refservices-test-token-42"
