//! DDL tracking for the short backup lock: what changed among the InnoDB
//! tablespaces between the bulk copy (under `BACKUP STAGE START`, DDL
//! running) and `BLOCK_DDL`, and what the backup must record so that both
//! `hotbak prepare` and `mariabackup --prepare` see the tablespaces as they
//! were at the lock. Pure: no I/O.
//!
//! Two inputs describe the change:
//! - the redo log's file records ([`Tracker`], fed by the follower):
//!   `FILE_CREATE`, `FILE_RENAME`, `FILE_DELETE` in LSN order, and the
//!   space ids `FILE_MODIFY` names;
//! - two lists of files with their tablespace ids: the ones copied in bulk
//!   ([`CopiedFile`]) and the ones present under `BLOCK_DDL` ([`Present`]).
//!
//! [`plan`] compares the lists by tablespace id (a rename keeps the id; a
//! rebuild, `TRUNCATE` or re-creation makes a new one) and yields
//! mariabackup 10.11's markers: `<db>/<t>.del` for a copied tablespace
//! that is gone, `<db>/<t>.ren` (holding the new `db/table`) for one that
//! is now elsewhere, and a copy `<db>/<t>.new` of every tablespace present
//! but not copied. Prepare applies them before recovery: `.del`, then
//! `.ren`, then `.new` → `.ibd`.
//!
//! [`unaccounted`] is the last check before the lock is released: every
//! tablespace a file record of the copied redo names must be in the backup
//! or dropped by that redo, or recovery would stop at it
//! ("Tablespace N was not found").

use std::collections::{BTreeMap, BTreeSet};

use crate::innodb::redo::FileOp;
use crate::innodb::relocate::backup_name;
use crate::innodb::Lsn;

/// A tablespace id.
pub type SpaceId = u32;

/// A file-level DDL record of the redo log, with backup-relative names
/// (`db/t.ibd`; the logged text where it has no such form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `FILE_CREATE`.
    Create {
        /// Tablespace id.
        space: SpaceId,
        /// Name.
        name: String,
    },
    /// `FILE_RENAME`.
    Rename {
        /// Tablespace id.
        space: SpaceId,
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// `FILE_DELETE`.
    Delete {
        /// Tablespace id.
        space: SpaceId,
        /// Name.
        name: String,
    },
}

impl Op {
    /// The tablespace the record is about.
    #[must_use]
    pub fn space(&self) -> SpaceId {
        match self {
            Op::Create { space, .. } | Op::Rename { space, .. } | Op::Delete { space, .. } => {
                *space
            }
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Create { space, name } => write!(f, "create {space} {name}"),
            Op::Rename { space, from, to } => write!(f, "rename {space} {from} -> {to}"),
            Op::Delete { space, name } => write!(f, "delete {space} {name}"),
        }
    }
}

fn name_of(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    backup_name(&text).unwrap_or_else(|| text.into_owned())
}

/// The file records seen in the copied redo log.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    ops: Vec<(Lsn, Op)>,
    modified: BTreeMap<SpaceId, String>,
}

impl Tracker {
    /// Take note of one file record at `lsn` (checkpoint records are ignored).
    pub fn observe(&mut self, lsn: Lsn, op: &FileOp<'_>) {
        let op = match *op {
            FileOp::Create { space, path } => Op::Create {
                space: space.0,
                name: name_of(path),
            },
            FileOp::Rename { space, from, to } => Op::Rename {
                space: space.0,
                from: name_of(from),
                to: name_of(to),
            },
            FileOp::Delete { space, path } => Op::Delete {
                space: space.0,
                name: name_of(path),
            },
            FileOp::Modify { space, path } => {
                self.modified
                    .entry(space.0)
                    .or_insert_with(|| name_of(path));
                return;
            }
            FileOp::Checkpoint { .. } => return,
        };
        self.ops.push((lsn, op));
    }

    /// The create, rename and delete records, in LSN order.
    #[must_use]
    pub fn ddl(&self) -> &[(Lsn, Op)] {
        &self.ops
    }

    /// Whether a `FILE_DELETE` of `space` was seen.
    #[must_use]
    pub fn dropped(&self, space: SpaceId) -> bool {
        self.ops
            .iter()
            .any(|(_, o)| matches!(o, Op::Delete { space: s, .. } if *s == space))
    }

    /// Whether a create, rename or delete names `space` or the file `rel`.
    #[must_use]
    pub fn touched(&self, rel: &str, space: Option<SpaceId>) -> bool {
        self.ops.iter().any(|(_, o)| {
            Some(o.space()) == space
                || match o {
                    Op::Create { name, .. } | Op::Delete { name, .. } => name == rel,
                    Op::Rename { from, to, .. } => from == rel || to == rel,
                }
        })
    }

    /// The tablespace the redo last put at `rel` (created or renamed
    /// there, and not moved or deleted since): how a file whose page 0
    /// never reached the disk is identified.
    #[must_use]
    pub fn id_for_name(&self, rel: &str) -> Option<SpaceId> {
        let mut at: Option<SpaceId> = None;
        for (_, o) in &self.ops {
            match o {
                Op::Create { space, name } if name == rel => at = Some(*space),
                Op::Rename { space, from, to } => {
                    if to == rel {
                        at = Some(*space);
                    } else if from == rel && at == Some(*space) {
                        at = None;
                    }
                }
                Op::Delete { space, .. } if at == Some(*space) => at = None,
                _ => {}
            }
        }
        at
    }

    /// The one tablespace the redo ever put at `rel` (created or renamed
    /// there), if exactly one: identifies a file copied before it was
    /// renamed away, whose page 0 never reached the disk.
    #[must_use]
    pub fn sole_id_ever_at(&self, rel: &str) -> Option<SpaceId> {
        let ids: BTreeSet<SpaceId> = self
            .ops
            .iter()
            .filter_map(|(_, o)| match o {
                Op::Create { space, name } if name == rel => Some(*space),
                Op::Rename { space, to, .. } if to == rel => Some(*space),
                _ => None,
            })
            .collect();
        match ids.len() {
            1 => ids.into_iter().next(),
            _ => None,
        }
    }

    /// A file's tablespace id: its page 0's if that reached the disk, else
    /// the one the redo put at `rel` ([`Tracker::id_for_name`], then
    /// [`Tracker::sole_id_ever_at`] for a file renamed away since).
    #[must_use]
    pub fn resolve(&self, rel: &str, page0: Option<SpaceId>) -> Option<SpaceId> {
        page0
            .or_else(|| self.id_for_name(rel))
            .or_else(|| self.sole_id_ever_at(rel))
    }

    /// Every tablespace a file record names, with the last name it had.
    #[must_use]
    pub fn named(&self) -> BTreeMap<SpaceId, String> {
        let mut out = self.modified.clone();
        for (_, o) in &self.ops {
            let name = match o {
                Op::Create { name, .. } | Op::Delete { name, .. } => name,
                Op::Rename { to, .. } => to,
            };
            out.insert(o.space(), name.clone());
        }
        out
    }

    /// The DDL records as text (for errors and logs).
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.ops
            .iter()
            .map(|(lsn, o)| format!("{o} at LSN {lsn}"))
            .collect()
    }
}

/// An InnoDB file as the bulk copy found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedFile {
    /// Its name in the backup (`db/t.ibd`, `ibdata1`, `undo001`).
    pub rel: String,
    /// The tablespace id of its page 0 (`None`: page 0 was all zero and
    /// the redo names no tablespace at that name).
    pub space: Option<SpaceId>,
}

/// An InnoDB file present under `BLOCK_DDL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Present {
    /// Its name (`db/t.ibd`).
    pub rel: String,
    /// Its tablespace id (as for [`CopiedFile::space`]).
    pub space: Option<SpaceId>,
    /// Whether this very file (same inode, not touched by DDL) was copied
    /// under this name: only then does an unknown id count as unchanged.
    pub same_file_copied: bool,
}

/// What the backup records under `BLOCK_DDL`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixup {
    /// Copied files whose tablespace is gone: `<rel minus .ibd>.del`.
    pub del: Vec<String>,
    /// Copied files whose tablespace is now elsewhere: (copied name, new
    /// name), both `db/t.ibd`; written as `<old minus .ibd>.ren` holding
    /// the new name without `.ibd`.
    pub ren: Vec<(String, String)>,
    /// Present files to copy again, as `<rel minus .ibd>.new`.
    pub new: Vec<String>,
}

impl Fixup {
    /// Nothing to record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.del.is_empty() && self.ren.is_empty() && self.new.is_empty()
    }
}

/// The name of the marker for the tablespace file `rel` (`db/t.ibd` →
/// `db/t.<ext>`).
#[must_use]
pub fn marker(rel: &str, ext: &str) -> String {
    let stem = rel.strip_suffix(".ibd").unwrap_or(rel);
    format!("{stem}.{ext}")
}

/// The content of a `.ren` marker: the new name without `.ibd`.
#[must_use]
pub fn ren_target(new_rel: &str) -> String {
    new_rel.strip_suffix(".ibd").unwrap_or(new_rel).to_owned()
}

/// Compare what was copied with what is present, by tablespace id.
#[must_use]
pub fn plan(copied: &[CopiedFile], present: &[Present]) -> Fixup {
    let mut fx = Fixup::default();
    let present_by_id: BTreeMap<SpaceId, &str> = present
        .iter()
        .filter_map(|p| p.space.map(|s| (s, p.rel.as_str())))
        .collect();
    let present_unknown: BTreeSet<&str> = present
        .iter()
        .filter(|p| p.space.is_none() && p.same_file_copied)
        .map(|p| p.rel.as_str())
        .collect();
    let mut copied_ids: BTreeSet<SpaceId> = BTreeSet::new();
    // Copied files, grouped by id: a tablespace copied under two names
    // (renamed between the two copies) keeps the copy at its present
    // name, or the first one.
    let mut by_id: BTreeMap<SpaceId, Vec<&str>> = BTreeMap::new();
    for c in copied {
        match c.space {
            Some(s) => by_id.entry(s).or_default().push(&c.rel),
            None => {
                // Unknown id: unchanged only if the same file is still there.
                if !present_unknown.contains(c.rel.as_str()) {
                    fx.del.push(c.rel.clone());
                }
            }
        }
    }
    for (id, rels) in &by_id {
        copied_ids.insert(*id);
        match present_by_id.get(id) {
            None => fx.del.extend(rels.iter().map(|r| (*r).to_owned())),
            Some(now) => {
                let keep = rels.iter().position(|r| r == now).unwrap_or(0);
                for (i, r) in rels.iter().enumerate() {
                    if i != keep {
                        fx.del.push((*r).to_owned());
                    } else if r != now {
                        fx.ren.push(((*r).to_owned(), (*now).to_owned()));
                    }
                }
            }
        }
    }
    for p in present {
        let copied_already = match p.space {
            Some(s) => copied_ids.contains(&s),
            None => p.same_file_copied,
        };
        if !copied_already {
            fx.new.push(p.rel.clone());
        }
    }
    // A name that is deleted and then filled by a rename or a new copy
    // needs no `.del` of its own only when mariabackup would not mind it
    // either; keeping it is harmless (`.del` runs first), so it stays.
    fx.del.sort();
    fx.del.dedup();
    fx.ren.sort();
    fx.new.sort();
    fx
}

/// The tablespaces a file record of the copied redo names that are
/// neither in the backup (`in_backup`) nor dropped by the redo itself:
/// recovery would stop at each. One line per tablespace, with its id and name.
#[must_use]
pub fn unaccounted(tracker: &Tracker, in_backup: &BTreeSet<SpaceId>) -> Vec<String> {
    unaccounted_where(tracker, in_backup, |_| false)
}

/// [`unaccounted`], where `left_out` tablespaces (a partial backup's
/// excluded ones) count as accounted for.
#[must_use]
pub fn unaccounted_where(
    tracker: &Tracker,
    in_backup: &BTreeSet<SpaceId>,
    left_out: impl Fn(SpaceId) -> bool,
) -> Vec<String> {
    tracker
        .named()
        .into_iter()
        .filter(|(id, _)| !in_backup.contains(id) && !tracker.dropped(*id) && !left_out(*id))
        .map(|(id, name)| {
            format!("tablespace {id} ({name}) is written by the copied redo log but is not in the backup")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::SpaceId as LoggedSpace;

    fn c(rel: &str, space: u32) -> CopiedFile {
        CopiedFile {
            rel: rel.into(),
            space: Some(space),
        }
    }
    fn p(rel: &str, space: u32) -> Present {
        Present {
            rel: rel.into(),
            space: Some(space),
            same_file_copied: false,
        }
    }

    #[test]
    fn nothing_changed_needs_nothing() {
        let fx = plan(
            &[c("ibdata1", 0), c("d/a.ibd", 5)],
            &[p("ibdata1", 0), p("d/a.ibd", 5)],
        );
        assert!(fx.is_empty(), "{fx:?}");
    }

    /// `ALTER TABLE … FORCE` during the copy: the old tablespace is gone,
    /// a new one has the name.
    #[test]
    fn rebuild_is_del_and_new() {
        let fx = plan(&[c("d/a.ibd", 5)], &[p("d/a.ibd", 9)]);
        assert_eq!(fx.del, vec!["d/a.ibd".to_owned()]);
        assert_eq!(fx.new, vec!["d/a.ibd".to_owned()]);
        assert!(fx.ren.is_empty());
    }

    /// The rebuild's intermediate was copied too (it existed at the listing):
    /// it is renamed into place instead of copied again.
    #[test]
    fn copied_intermediate_is_renamed_into_place() {
        let fx = plan(
            &[c("d/a.ibd", 5), c("d/#sql-alter-1-2.ibd", 9)],
            &[p("d/a.ibd", 9)],
        );
        assert_eq!(fx.del, vec!["d/a.ibd".to_owned()]);
        assert_eq!(
            fx.ren,
            vec![("d/#sql-alter-1-2.ibd".to_owned(), "d/a.ibd".to_owned())]
        );
        assert!(fx.new.is_empty());
    }

    #[test]
    fn rename_swap_create_and_drop() {
        let fx = plan(
            &[c("d/a.ibd", 5), c("d/b.ibd", 6), c("d/gone.ibd", 7)],
            &[p("d/a.ibd", 6), p("d/b.ibd", 5), p("e/new.ibd", 11)],
        );
        assert_eq!(fx.del, vec!["d/gone.ibd".to_owned()]);
        assert_eq!(
            fx.ren,
            vec![
                ("d/a.ibd".to_owned(), "d/b.ibd".to_owned()),
                ("d/b.ibd".to_owned(), "d/a.ibd".to_owned())
            ]
        );
        assert_eq!(fx.new, vec!["e/new.ibd".to_owned()]);
    }

    /// A tablespace copied twice (renamed between the two copies) keeps the
    /// copy at its present name.
    #[test]
    fn copied_twice_keeps_the_present_name() {
        let fx = plan(&[c("d/a.ibd", 5), c("d/b.ibd", 5)], &[p("d/b.ibd", 5)]);
        assert_eq!(fx.del, vec!["d/a.ibd".to_owned()]);
        assert!(fx.ren.is_empty() && fx.new.is_empty(), "{fx:?}");
    }

    #[test]
    fn unknown_ids_follow_the_file() {
        let unknown = |rel: &str, same: bool| Present {
            rel: rel.into(),
            space: None,
            same_file_copied: same,
        };
        let copied = [CopiedFile {
            rel: "d/z.ibd".into(),
            space: None,
        }];
        assert!(plan(&copied, &[unknown("d/z.ibd", true)]).is_empty());
        let fx = plan(&copied, &[unknown("d/z.ibd", false)]);
        assert_eq!(fx.del, vec!["d/z.ibd".to_owned()]);
        assert_eq!(fx.new, vec!["d/z.ibd".to_owned()]);
    }

    #[test]
    fn markers_are_named_like_mariabackups() {
        assert_eq!(marker("d/t.ibd", "ren"), "d/t.ren");
        assert_eq!(marker("d/#sql-alter-1.ibd", "del"), "d/#sql-alter-1.del");
        assert_eq!(ren_target("d2/t2.ibd"), "d2/t2");
    }

    #[test]
    fn tracker_follows_names_and_drops() {
        let mut t = Tracker::default();
        t.observe(
            Lsn(10),
            &FileOp::Create {
                space: LoggedSpace(9),
                path: b"./d/#sql-alter-1.ibd",
            },
        );
        t.observe(
            Lsn(20),
            &FileOp::Rename {
                space: LoggedSpace(5),
                from: b"./d/a.ibd",
                to: b"./d/#sql-ib5.ibd",
            },
        );
        t.observe(
            Lsn(30),
            &FileOp::Rename {
                space: LoggedSpace(9),
                from: b"./d/#sql-alter-1.ibd",
                to: b"./d/a.ibd",
            },
        );
        t.observe(
            Lsn(40),
            &FileOp::Delete {
                space: LoggedSpace(5),
                path: b"./d/#sql-ib5.ibd",
            },
        );
        t.observe(
            Lsn(50),
            &FileOp::Modify {
                space: LoggedSpace(3),
                path: b"./d/other.ibd",
            },
        );
        assert_eq!(t.id_for_name("d/a.ibd"), Some(9));
        assert_eq!(t.id_for_name("d/#sql-alter-1.ibd"), None);
        assert_eq!(t.sole_id_ever_at("d/#sql-alter-1.ibd"), Some(9));
        assert_eq!(t.sole_id_ever_at("d/nothing.ibd"), None);
        assert_eq!(t.id_for_name("d/#sql-ib5.ibd"), None);
        assert!(t.dropped(5) && !t.dropped(9));
        assert!(t.touched("d/a.ibd", None) && t.touched("x", Some(9)));
        assert!(!t.touched("d/other.ibd", Some(3)));
        let named = t.named();
        assert_eq!(named.get(&9).map(String::as_str), Some("d/a.ibd"));
        assert_eq!(named.get(&3).map(String::as_str), Some("d/other.ibd"));
        // 9 and 3 must be in the backup; 5 was dropped by the redo.
        let missing = unaccounted(&t, &BTreeSet::from([9]));
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("tablespace 3 (d/other.ibd)"));
        assert!(unaccounted(&t, &BTreeSet::from([9, 3])).is_empty());
        assert_eq!(t.describe().len(), 4);
    }
}
