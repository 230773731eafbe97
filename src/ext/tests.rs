//! Unit tests on hand-made images (see below).
