//! coach-worker library.
