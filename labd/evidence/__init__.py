"""Certification evidence: the lab's signing key, report bundles and their signatures."""
