"""Inference backends; each is the only module that imports its runtime."""
