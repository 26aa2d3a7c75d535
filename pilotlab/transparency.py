"""The evidence log's checkpoints and inclusion proofs as they travel in bundles (signer and verifier side)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pilotlab import merkle

LOG_ORIGIN = "pilotlab-evidence-log/v1"


def checkpoint_text(size: int, root: bytes, timestamp: str) -> bytes:
    return f"{LOG_ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n{timestamp}\n".encode()


def sign_checkpoint(key: Ed25519PrivateKey, size: int, root: bytes, timestamp: str) -> dict[str, Any]:
    sig = key.sign(checkpoint_text(size, root, timestamp))
    return {"origin": LOG_ORIGIN, "size": size, "root_hash": root.hex(), "timestamp": timestamp,
            "signature": base64.b64encode(sig).decode()}


def proof_document(index: int, leaves: list[bytes], checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {"leaf_index": index, "tree_size": len(leaves), "leaf_hash": leaves[index].hex(),
            "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(index, leaves)], "checkpoint": checkpoint}


def verify_proof(doc: dict[str, Any], report_json: bytes, public_key: Ed25519PublicKey) -> list[str]:
    """Problems with a bundle's log entry: the leaf is not this report.json, the proof does not reach the
    checkpoint's root, or the checkpoint is not signed by the lab."""
    problems = []
    leaf = merkle.leaf_hash(report_json)
    cp = doc.get("checkpoint") or {}
    try:
        root = bytes.fromhex(cp["root_hash"])
        public_key.verify(base64.b64decode(cp["signature"]), checkpoint_text(int(cp["size"]), root, cp["timestamp"]))
    except (KeyError, ValueError, InvalidSignature):
        return ["transparency.json: the log checkpoint is not signed by the lab's key"]
    if doc.get("leaf_hash") != leaf.hex():
        problems.append("transparency.json: the logged leaf is not this report.json (report missing from the log)")
    proof = [bytes.fromhex(h) for h in doc.get("inclusion_proof", [])]
    if int(doc.get("tree_size", -1)) != int(cp["size"]) or not merkle.verify_inclusion(
            int(doc.get("leaf_index", -1)), int(cp["size"]), leaf, proof, root):
        problems.append("transparency.json: the inclusion proof does not lead to the signed log root")
    return problems
