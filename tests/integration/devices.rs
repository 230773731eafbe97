//! Integration tests for device safety checks shared by copy, check and bench (none yet).
