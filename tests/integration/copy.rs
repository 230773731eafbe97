//! Integration tests for `reroot copy` (none yet).
