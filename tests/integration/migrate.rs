//! Integration tests for `reroot migrate` (none yet).
