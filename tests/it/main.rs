//! The one integration test binary. Topic modules:
//! - `support`: tool lookup (fails instead of skipping under HOTBAK_REQUIRE_TOOLS=1), temp dirs, binaries.
//! - `xbstream_interop`, `extract_cli`, `truncation`: the container and xbextract (issue 2).
//! - `mysql_session`: the server session against a throwaway server.
//! - `transforms`: compression and encryption through the binaries.
//! - `backup_e2e`: hot backup under writes, prepare, restore.

mod backup_e2e;
mod mysql_session;
mod native_prepare;
mod support;
mod transforms;
mod xb_graph;
mod xb_hostile;
mod xb_interop;
mod xb_truncation;
