"""labd: the central lab daemon — fleet, queue, dispatch, results, grading and evidence over gRPC."""
