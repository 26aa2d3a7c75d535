"""Plain functions of (lab, request) that do each RPC's work; servicers only check, call and map errors."""
