"""Generated protobuf and gRPC code for pilotlab.v1 (regenerate with `make protos`; never edit by hand)."""
