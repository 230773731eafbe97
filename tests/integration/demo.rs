//! Integration tests for `reroot demo` (none yet).
