"""The measurement harness: scenarios that time queries against a system under test, knowing nothing of models."""
