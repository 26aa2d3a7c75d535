"""Plain functions that do each RPC's work, taking only the parts of the lab they use (store, sessions, clock,
metrics, leases…); servicers only check, call one and map errors. Handlers call down into the scheduler."""
