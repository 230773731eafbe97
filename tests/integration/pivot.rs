//! Integration tests for `reroot pivot` (none yet).
