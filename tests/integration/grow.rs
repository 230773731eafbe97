//! Integration tests for `reroot grow` (none yet).
