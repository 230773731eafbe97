//! Iterative pre-copy (see below).
