//! Integration tests for `reroot map` (none yet).
