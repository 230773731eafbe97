//! Integration tests for `reroot bench` (none yet).
