//! Stub glue (shadow build only).
use std::path::Path;
use super::DecodeOptions;
/// Install decoders.
///
/// # Errors
/// Never in the stub.
pub fn install_decoders(_d: &mut DecodeOptions, _key_file: Option<&Path>, _key_env: Option<&str>) -> anyhow::Result<()> {
    Ok(())
}
