"""gRPC servicers: thin layers that authenticate, call one handler and map domain errors to status codes."""
