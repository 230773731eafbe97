//! Integration tests for `reroot check` (none yet).
