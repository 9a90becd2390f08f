//! Hotbak crypt envelope format.
