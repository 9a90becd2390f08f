//! qpress container decoding.
