//! The one integration test binary (built with the `testkit` feature, which
//! the dev-dependency on this package turns on). Topic modules:
//! - `support`: tool lookup (fails instead of skipping under HOTBAK_REQUIRE_TOOLS=1), temp dirs, binaries.
//! - `xb_interop`, `xb_hostile`, `xb_truncation`: the container and xbextract (issue 2).
//! - `xb_graph`: the datasink graph and the extractor as a library.
//! - `mysql_session`: the server session against a throwaway server.
//! - `transforms`: compression and encryption through the binaries.
//! - `backup_e2e`: hot backup under writes, prepare, restore.
//! - `remote_e2e`: tables outside the datadir (DATA DIRECTORY, symlinks).
//! - `partial_e2e`: partial backups, `prepare --export`, `restore --table` (issue 15).
//! - `native_prepare`: the native redo applier against `mariabackup --prepare`, page by page.
//! - `incremental_prepare`: `hotbak prepare --incremental-dir` on hotbak's and mariabackup's chains against mariabackup's incremental prepare, page by page; refusals.
//! - `restore_e2e`: restore into an option file's directories, in place, interrupted and rerun.
//! - `verify_e2e`: `hotbak verify` on damaged and intact backups.
//! - `dropin_e2e`: hotbak as a drop-in for mariabackup scripts: its option style, option files, TLS and ed25519 logins (issue 13).
//! - `events_e2e`: `--log-format json` / `HOTBAK_LOG_FORMAT=json`: the event lines of a backup, a failure and xbextract (issue 13).
//! - `ops_e2e`: what an operator expects: `--galera-info` on a single-node Galera cluster, `--history`, `--metrics-file`, a backup user with the README's grants (issue 13).
//! - `s3_e2e`: object storage against a real SeaweedFS (uploads, resume, cuts, live backups).
//! - `lock_stalls`: the lock-stall probe of `bench/lock_stalls.sh` (ignored: a benchmark driver).

mod backup_e2e;
mod dropin_e2e;
mod events_e2e;
mod incremental_prepare;
mod lock_stalls;
mod mysql_session;
mod native_prepare;
mod ops_e2e;
mod partial_e2e;
mod remote_e2e;
mod restore_e2e;
mod s3_e2e;
mod support;
mod transforms;
mod verify_e2e;
mod xb_graph;
mod xb_hostile;
mod xb_interop;
mod xb_truncation;
