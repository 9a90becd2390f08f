use super::*;
use crate::innodb::page::{check_page, PageFormat};
use crate::innodb::redo::encode_varint;
use proptest::prelude::*;

const PS: usize = 16384;

fn vi(v: u32) -> Vec<u8> {
    let (b, n) = encode_varint(v);
    b[..n].to_vec()
}

/// One record: header byte with type `ty` (and same_page), the page id
/// unless same_page, then `body`.
fn rec(ty: u8, same: bool, space: u32, page: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    if !same {
        payload.extend(vi(space));
        payload.extend(vi(page));
    }
    payload.extend_from_slice(body);
    let mut out = Vec::new();
    let first = ty | if same { 0x80 } else { 0 };
    if payload.len() <= 15 && !payload.is_empty() {
        out.push(first | payload.len() as u8);
    } else {
        // length 0 + varint a, record is 1 + 15 + a bytes after the header
        // with the varint counted in the 15 + a.
        let mut a = payload.len().saturating_sub(15);
        assert!(
            payload.len() > 15,
            "short records carry their length in the header"
        );
        loop {
            let n = vi(a as u32).len();
            if 15 + a == payload.len() + n {
                break;
            }
            a += 1;
        }
        out.push(first);
        out.extend(vi(a as u32));
    }
    out.extend(payload);
    out
}

fn id(space: u32, page: u32) -> PageId {
    PageId {
        space: SpaceId(space),
        page: PageNo(page),
    }
}

fn page_ops(recs: &[u8]) -> Vec<(PageId, PageOp<'_>)> {
    decode_mtr(recs, PS as u32)
        .expect("valid records")
        .into_iter()
        .filter_map(|r| match r {
            Record::Page { id, op } => Some((id, op)),
            Record::File(_) => None,
        })
        .collect()
}

#[test]
fn decode_write_memset_memmove_offsets() {
    let mut m = rec(0x30, false, 5, 7, &[&vi(100)[..], &[1, 2, 3]].concat());
    // same page: offset relative to 103
    m.extend(rec(0x30, true, 0, 0, &[&vi(7)[..], &[9]].concat()));
    // MEMSET at 110+0 len 20 fill [0xAB]
    m.extend(rec(
        0x40,
        true,
        0,
        0,
        &[&vi(0)[..], &vi(20), &[0xAB]].concat(),
    ));
    // MEMMOVE at 130+2=132 len 4 from -32 (encoded (32-1)<<1|1)
    m.extend(rec(
        0x50,
        true,
        0,
        0,
        &[&vi(2)[..], &vi(4), &vi((31 << 1) | 1)].concat(),
    ));
    m.push(1);
    let ops = page_ops(&m);
    assert_eq!(
        ops,
        vec![
            (
                id(5, 7),
                PageOp::Write {
                    offset: 100,
                    data: &[1, 2, 3]
                }
            ),
            (
                id(5, 7),
                PageOp::Write {
                    offset: 110,
                    data: &[9]
                }
            ),
            (
                id(5, 7),
                PageOp::Memset {
                    offset: 111,
                    len: 20,
                    fill: &[0xAB]
                }
            ),
            (
                id(5, 7),
                PageOp::Memmove {
                    offset: 133,
                    len: 4,
                    source: 101
                }
            ),
        ]
    );
}

#[test]
fn decode_init_free_extended_and_reset_offsets() {
    let mut m = rec(0x10, false, 3, 9, &[]);
    // after INIT_PAGE the offset base is FIL_PAGE_TYPE (24)
    m.extend(rec(0x30, true, 0, 0, &[&vi(0)[..], &[0x45, 0xBF]].concat()));
    m.extend(rec(0x20, true, 0, 0, &[ext::INIT_ROW_FORMAT_DYNAMIC]));
    m.extend(rec(0x30, true, 0, 0, &[&vi(2)[..], &[7]].concat()));
    m.extend(rec(0x00, false, 3, 10, &[]));
    let ops = page_ops(&m);
    assert_eq!(ops[0], (id(3, 9), PageOp::InitPage));
    assert_eq!(
        ops[1].1,
        PageOp::Write {
            offset: 24,
            data: &[0x45, 0xBF]
        }
    );
    assert_eq!(ops[2].1, PageOp::InitIndex { compact: true });
    assert_eq!(
        ops[3].1,
        PageOp::Write {
            offset: 26,
            data: &[7]
        }
    );
    assert_eq!(ops[4], (id(3, 10), PageOp::FreePage));
    // A same-page WRITE after FREE_PAGE is corrupt.
    let mut bad = rec(0x00, false, 3, 10, &[]);
    bad.extend(rec(0x30, true, 0, 0, &[&vi(30)[..], &[7]].concat()));
    assert!(matches!(
        decode_mtr(&bad, PS as u32),
        Err(Error::Record { .. })
    ));
    // INIT_PAGE with the same_page flag is corrupt.
    let mut bad = rec(0x30, false, 3, 10, &[&vi(30)[..], &[7]].concat());
    bad.extend([0x91, 0x00]);
    assert!(decode_mtr(&bad, PS as u32).is_err());
}

#[test]
fn decode_extended_subtypes() {
    let ins = [
        &[ext::INSERT_REUSE_DYNAMIC][..],
        &vi(10),
        &vi(4),
        &vi(3 << 3),
        &vi(2),
        &vi(5),
        &[1, 2, 3, 4],
    ]
    .concat();
    let del = [
        &[ext::DELETE_ROW_FORMAT_DYNAMIC][..],
        &vi(40),
        &vi(3),
        &vi(200),
    ]
    .concat();
    let undo = [&[ext::UNDO_APPEND][..], &[1, 2, 3, 4]].concat();
    let delr = [&[ext::DELETE_ROW_FORMAT_REDUNDANT][..], &vi(300)].concat();
    let insr = [
        &[ext::INSERT_HEAP_REDUNDANT][..],
        &vi(10),
        &vi(0x21),
        &vi(1),
        &vi(2),
        &[9, 9],
    ]
    .concat();
    let mut m = Vec::new();
    for b in [&ins, &del, &undo, &delr, &insr] {
        m.extend(rec(0x20, false, 4, 5, b));
    }
    let ops: Vec<PageOp> = page_ops(&m).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        ops,
        vec![
            PageOp::InsertDynamic {
                reuse: true,
                prev: 10,
                shift: 4,
                enc_hdr_l: 24,
                hdr_c: 2,
                data_c: 5,
                data: &[1, 2, 3, 4]
            },
            PageOp::DeleteDynamic {
                prev: 40,
                hdr_size: 3,
                data_size: 200
            },
            PageOp::UndoAppend {
                data: &[1, 2, 3, 4]
            },
            PageOp::DeleteRedundant { prev: 300 },
            PageOp::InsertRedundant {
                reuse: false,
                prev: 10,
                enc_hdr: 0x21,
                hdr_c: 1,
                data_c: 2,
                data: &[9, 9]
            },
        ]
    );
    assert!(decode_mtr(&rec(0x20, false, 4, 5, &[11]), PS as u32).is_err());
    assert!(decode_mtr(&rec(0x20, false, 4, 5, &[ext::UNDO_APPEND, 1]), PS as u32).is_err());
}

#[test]
fn decode_file_records_and_option() {
    let mut m = vec![0x80 | 9, 5, 0];
    m.extend_from_slice(b"d/t.ibd");
    let recs = decode_mtr(&m, PS as u32).expect("valid");
    assert!(matches!(
        recs.as_slice(),
        [Record::File(FileOp::Create { .. })]
    ));
    let m = rec(0x70, false, 1, 4, &[0, 0xDE, 0xAD, 0xBE, 0xEF]);
    assert_eq!(
        page_ops(&m),
        vec![(id(1, 4), PageOp::PageChecksum { crc: 0xDEAD_BEEF })]
    );
    // Unknown OPTION subtypes are ignored.
    assert!(page_ops(&rec(0x70, false, 1, 4, &[3, 1])).is_empty());
}

fn blank_index(comp: bool, page_no: u32) -> Vec<u8> {
    let mut p = vec![0u8; PS];
    let pid = id(7, page_no);
    apply_op(&mut p, pid, &PageOp::InitPage).expect("init");
    apply_op(&mut p, pid, &PageOp::InitIndex { compact: comp }).expect("create");
    p
}

#[test]
fn init_page_sets_identity() {
    let mut p = vec![0x5Au8; PS];
    apply_op(&mut p, id(9, 33), &PageOp::InitPage).expect("ok");
    assert_eq!(be32(&p, 4), Some(33));
    assert_eq!(be32(&p, 8), Some(u32::MAX));
    assert_eq!(be32(&p, 12), Some(u32::MAX));
    assert_eq!(be32(&p, 34), Some(9));
    assert!(p[16..34].iter().all(|&b| b == 0));
    assert!(p[38..].iter().all(|&b| b == 0));
}

#[test]
fn memset_pattern_and_memmove() {
    let mut p = vec![0u8; PS];
    apply_op(
        &mut p,
        id(1, 1),
        &PageOp::Memset {
            offset: 100,
            len: 7,
            fill: &[1, 2, 3],
        },
    )
    .expect("ok");
    assert_eq!(&p[100..108], &[1, 2, 3, 1, 2, 3, 1, 0]);
    apply_op(
        &mut p,
        id(1, 1),
        &PageOp::Memmove {
            offset: 102,
            len: 5,
            source: 100,
        },
    )
    .expect("ok");
    assert_eq!(&p[100..108], &[1, 2, 1, 2, 3, 1, 2, 0]);
    assert!(apply_op(
        &mut p,
        id(1, 1),
        &PageOp::Write {
            offset: PS as u32 - 1,
            data: &[1, 2]
        }
    )
    .is_err());
    assert!(apply_op(&mut [0u8; 100], id(1, 1), &PageOp::InitPage).is_err());
}

#[test]
fn page_create_compact_layout() {
    let p = blank_index(true, 3);
    assert_eq!(be16(&p, 24), Some(17855));
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_DIR_SLOTS), Some(2));
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_HEAP), Some(0x8002));
    assert_eq!(
        be16(&p, PAGE_HEADER + PAGE_HEAP_TOP),
        Some(PAGE_NEW_SUPREMUM_END as u16)
    );
    assert_eq!(&p[PAGE_NEW_INFIMUM..PAGE_NEW_INFIMUM + 7], b"infimum");
    assert_eq!(&p[PAGE_NEW_SUPREMUM..PAGE_NEW_SUPREMUM + 8], b"supremum");
    assert_eq!(be16(&p, PS - 10), Some(PAGE_NEW_INFIMUM as u16));
    assert_eq!(be16(&p, PS - 12), Some(PAGE_NEW_SUPREMUM as u16));
    let r = blank_index(false, 3);
    assert_eq!(be16(&r, PAGE_HEADER + PAGE_N_HEAP), Some(2));
    assert_eq!(&r[PAGE_OLD_INFIMUM..PAGE_OLD_INFIMUM + 7], b"infimum");
    assert_eq!(be16(&r, PS - 12), Some(PAGE_OLD_SUPREMUM as u16));
}

/// Walk a compact page's record list: the data of each user record.
fn walk_new(p: &[u8], data_len: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = PAGE_NEW_INFIMUM;
    for _ in 0..1000 {
        let next = (r + usize::from(be16(p, r - 2).expect("in page"))) & 0xFFFF;
        if next == PAGE_NEW_SUPREMUM {
            return out;
        }
        out.push(p[next..next + data_len].to_vec());
        r = next;
    }
    panic!("cycle");
}

/// Insert a fixed-size record (no variable header) with `data` after
/// the record at absolute offset `prev_abs`, as the server logs it
/// without compression against the predecessor.
fn insert_new(p: &mut [u8], prev_abs: usize, data: &[u8]) {
    let op = PageOp::InsertDynamic {
        reuse: false,
        prev: (prev_abs - PAGE_NEW_INFIMUM) as u32,
        shift: 0,
        enc_hdr_l: 0,
        hdr_c: 0,
        data_c: 0,
        data,
    };
    apply_op(p, id(7, 3), &op).expect("insert applies");
}

fn n_slots_owned_sum(p: &[u8], comp: bool) -> usize {
    let n = usize::from(be16(p, PAGE_HEADER).expect("hdr"));
    (0..n)
        .map(|i| {
            let rec = usize::from(be16(p, PS - 10 - 2 * i).expect("slot"));
            usize::from(p[rec - if comp { 5 } else { 6 }] & 0x0F)
        })
        .sum()
}

#[test]
fn dynamic_inserts_split_slots_and_deletes_balance() {
    let mut p = blank_index(true, 3);
    // Append 20 records in ascending order, each after the previous one.
    let mut prev = PAGE_NEW_INFIMUM;
    for i in 0..20u8 {
        insert_new(&mut p, prev, &[i; 8]);
        prev = usize::from(be16(&p, PAGE_HEADER + PAGE_LAST_INSERT).expect("hdr"));
    }
    let got = walk_new(&p, 8);
    assert_eq!(got, (0..20u8).map(|i| vec![i; 8]).collect::<Vec<_>>());
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_RECS), Some(20));
    assert_eq!(p[PAGE_HEADER + PAGE_DIRECTION_B] & 7, PAGE_RIGHT);
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_DIRECTION), Some(19));
    // Every record plus infimum and supremum is owned by exactly one slot.
    assert!(be16(&p, PAGE_HEADER).expect("hdr") > 2, "slots were split");
    assert_eq!(n_slots_owned_sum(&p, true), 22);
    // Delete the first 15 records (predecessor is always the infimum).
    for _ in 0..15 {
        let first =
            (PAGE_NEW_INFIMUM + usize::from(be16(&p, PAGE_NEW_INFIMUM - 2).expect("x"))) & 0xFFFF;
        let _ = first;
        apply_op(
            &mut p,
            id(7, 3),
            &PageOp::DeleteDynamic {
                prev: 0,
                hdr_size: 0,
                data_size: 8,
            },
        )
        .expect("delete applies");
    }
    let got = walk_new(&p, 8);
    assert_eq!(got, (15..20u8).map(|i| vec![i; 8]).collect::<Vec<_>>());
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_RECS), Some(5));
    assert_eq!(n_slots_owned_sum(&p, true), 7);
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_GARBAGE), Some(15 * 13));
    // Reuse the freed space: PAGE_FREE is the last deleted record.
    let free = usize::from(be16(&p, PAGE_HEADER + PAGE_FREE).expect("hdr"));
    assert_ne!(free, 0);
    let op = PageOp::InsertDynamic {
        reuse: true,
        prev: 0,
        shift: 0,
        enc_hdr_l: 0,
        hdr_c: 0,
        data_c: 0,
        data: &[0xEE; 8],
    };
    apply_op(&mut p, id(7, 3), &op).expect("reuse applies");
    assert_eq!(walk_new(&p, 8)[0], vec![0xEE; 8]);
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_GARBAGE), Some(14 * 13));
    // Deleting the top record shrinks the heap instead.
    let top = usize::from(be16(&p, PAGE_HEADER + PAGE_HEAP_TOP).expect("hdr"));
    let heap = be16(&p, PAGE_HEADER + PAGE_N_HEAP).expect("hdr");
    let prev_of_last = {
        let mut r = PAGE_NEW_INFIMUM;
        loop {
            let n = (r + usize::from(be16(&p, r - 2).expect("x"))) & 0xFFFF;
            let nn = (n + usize::from(be16(&p, n - 2).expect("x"))) & 0xFFFF;
            if nn == PAGE_NEW_SUPREMUM {
                break r;
            }
            r = n;
        }
    };
    apply_op(
        &mut p,
        id(7, 3),
        &PageOp::DeleteDynamic {
            prev: (prev_of_last - PAGE_NEW_INFIMUM) as u32,
            hdr_size: 0,
            data_size: 8,
        },
    )
    .expect("delete top");
    assert_eq!(
        usize::from(be16(&p, PAGE_HEADER + PAGE_HEAP_TOP).expect("hdr")),
        top - 13
    );
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_HEAP), Some(heap - 1));
}

#[test]
fn redundant_insert_and_delete() {
    let mut p = blank_index(false, 3);
    // One field of 4 bytes, 1-byte offsets: header = 6 + 1 bytes; the
    // field end offset byte (4) is the only non-fixed header byte.
    // enc_hdr: n_fields-1 = 0 → bits 3..; short flag bit 2; info bits 0.
    let enc_hdr = 1 << 2;
    for i in 0..12u8 {
        // The 6 fixed header bytes always come from the predecessor (their
        // bit fields are then rewritten): the literal is the field end
        // info byte, then the 4 data bytes.
        let mut data = vec![4u8];
        data.extend_from_slice(&[i; 4]);
        let prev = if i == 0 {
            0
        } else {
            usize::from(be16(&p, PAGE_HEADER + PAGE_LAST_INSERT).expect("hdr")) - PAGE_OLD_INFIMUM
        };
        let op = PageOp::InsertRedundant {
            reuse: false,
            prev: prev as u32,
            enc_hdr,
            hdr_c: 0,
            data_c: 0,
            data: &data,
        };
        apply_op(&mut p, id(7, 3), &op).expect("insert applies");
    }
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_RECS), Some(12));
    assert_eq!(n_slots_owned_sum(&p, false), 14);
    let mut r = PAGE_OLD_INFIMUM;
    let mut seen = Vec::new();
    loop {
        r = usize::from(be16(&p, r - 2).expect("x"));
        if r == PAGE_OLD_SUPREMUM {
            break;
        }
        seen.push(p[r]);
    }
    assert_eq!(seen, (0..12u8).collect::<Vec<_>>());
    for _ in 0..10 {
        apply_op(&mut p, id(7, 3), &PageOp::DeleteRedundant { prev: 0 }).expect("delete");
    }
    assert_eq!(be16(&p, PAGE_HEADER + PAGE_N_RECS), Some(2));
    assert_eq!(n_slots_owned_sum(&p, false), 4);
}

#[test]
fn extended_refused_on_low_pages_and_wrong_shapes() {
    let mut p = vec![0u8; PS];
    assert!(apply_op(&mut p, id(1, 2), &PageOp::UndoInit).is_err());
    // Insert into a page that is not an index page.
    let op = PageOp::InsertDynamic {
        reuse: false,
        prev: 0,
        shift: 0,
        enc_hdr_l: 0,
        hdr_c: 0,
        data_c: 0,
        data: &[1],
    };
    assert!(matches!(
        apply_op(&mut p, id(1, 5), &op),
        Err(Error::Page { .. })
    ));
    assert!(apply_op(
        &mut p,
        id(1, 5),
        &PageOp::DeleteDynamic {
            prev: 0,
            hdr_size: 0,
            data_size: 1
        }
    )
    .is_err());
}

#[test]
fn undo_init_and_append() {
    let mut p = vec![0x77u8; PS];
    apply_op(&mut p, id(2, 10), &PageOp::UndoInit).expect("init");
    assert_eq!(be16(&p, 24), Some(2));
    assert_eq!(be16(&p, 38), Some(0));
    assert_eq!(be16(&p, 40), Some(56));
    assert_eq!(be16(&p, 42), Some(56));
    assert_eq!(be32(&p, 44), Some(u32::MAX));
    // the segment header (56..86) is preserved
    assert!(p[56..86].iter().all(|&b| b == 0x77));
    assert!(p[86..PS - 8].iter().all(|&b| b == 0));
    apply_op(
        &mut p,
        id(2, 10),
        &PageOp::UndoAppend {
            data: &[1, 2, 3, 4, 5],
        },
    )
    .expect("append");
    assert_eq!(be16(&p, 42), Some(56 + 9));
    assert_eq!(be16(&p, 56), Some(65));
    assert_eq!(&p[58..63], &[1, 2, 3, 4, 5]);
    assert_eq!(be16(&p, 63), Some(56));
    let big = vec![0u8; PS];
    assert!(apply_op(&mut p, id(2, 10), &PageOp::UndoAppend { data: &big }).is_err());
}

fn logged(start: u64, end: u64, op: PageOp) -> LoggedOp {
    LoggedOp {
        start_lsn: Lsn(start),
        end_lsn: Lsn(end),
        op,
    }
}

#[test]
fn recovery_rules() {
    let fmt = PageFormat::from_flags(0x15).expect("full_crc32");
    let mut p = vec![0u8; PS];
    apply_op(&mut p, id(5, 4), &PageOp::InitPage).expect("init");
    finish_page(&mut p, id(5, 4), &fmt, Lsn(1000)).expect("finish");
    assert!(check_page(&fmt, Some(PageNo(4)), &p).is_ok());
    let ops = vec![
        logged(
            900,
            950,
            PageOp::Write {
                offset: 100,
                data: &[1],
            },
        ),
        logged(
            1000,
            1100,
            PageOp::Write {
                offset: 101,
                data: &[2],
            },
        ),
        logged(
            1100,
            1200,
            PageOp::Write {
                offset: 102,
                data: &[3],
            },
        ),
    ];
    assert!(needs_read(&ops));
    let mut q = p.clone();
    assert_eq!(
        recover_page(&mut q, id(5, 4), &ops).expect("ok"),
        Recovered::Applied { end_lsn: Lsn(1200) }
    );
    assert_eq!(
        &q[100..103],
        &[0, 2, 3],
        "the record older than the page LSN is skipped"
    );
    let mut q = p.clone();
    assert_eq!(
        recover_page(&mut q, id(5, 4), &ops[..1]).expect("ok"),
        Recovered::Unchanged
    );
    // INIT_PAGE: replay from the last init, ignoring the page LSN.
    let ops2 = vec![
        logged(
            10,
            20,
            PageOp::Write {
                offset: 100,
                data: &[1],
            },
        ),
        logged(20, 30, PageOp::InitPage),
        logged(
            20,
            30,
            PageOp::Write {
                offset: 104,
                data: &[4],
            },
        ),
    ];
    assert!(!needs_read(&ops2));
    let mut q = p.clone();
    assert_eq!(
        recover_page(&mut q, id(5, 4), &ops2).expect("ok"),
        Recovered::Applied { end_lsn: Lsn(30) }
    );
    assert_eq!(q[100], 0);
    assert_eq!(q[104], 4);
    // FREE_PAGE last: not written.
    let ops3 = vec![
        logged(10, 20, PageOp::InitPage),
        logged(30, 40, PageOp::FreePage),
    ];
    assert_eq!(
        recover_page(&mut p.clone(), id(5, 4), &ops3).expect("ok"),
        Recovered::Freed
    );
    // OPT_PAGE_CHECKSUM verifies the result.
    let mut q = p.clone();
    apply_op(
        &mut q,
        id(5, 4),
        &PageOp::Write {
            offset: 200,
            data: &[9],
        },
    )
    .expect("w");
    let crc = opt_page_checksum(&q);
    let ops4 = vec![
        logged(
            2000,
            2100,
            PageOp::Write {
                offset: 200,
                data: &[9],
            },
        ),
        logged(2000, 2100, PageOp::PageChecksum { crc }),
    ];
    assert!(recover_page(&mut p.clone(), id(5, 4), &ops4).is_ok());
    let ops5 = vec![logged(2000, 2100, PageOp::PageChecksum { crc })];
    assert!(matches!(
        recover_page(&mut p.clone(), id(5, 4), &ops5),
        Err(Error::Checksum { .. })
    ));
    // The error names the mtr whose record failed, not the page's first.
    let mut ops6 = ops4.clone();
    ops6[1] = logged(3000, 3100, PageOp::PageChecksum { crc: crc ^ 1 });
    assert!(matches!(
        recover_page_at(&mut p.clone(), id(5, 4), &ops6),
        Err((Lsn(3000), Error::Checksum { .. }))
    ));
}

#[test]
fn finish_page_legacy_crc32() {
    let fmt = PageFormat::from_flags(0x21).expect("legacy");
    let mut p = blank_index(true, 3);
    finish_page(&mut p, id(7, 3), &fmt, Lsn(0x0102_0304_0506_0708)).expect("finish");
    assert!(check_page(&fmt, Some(PageNo(3)), &p).is_ok());
    assert_eq!(crate::innodb::be64(&p, 16), Some(0x0102_0304_0506_0708));
    assert_eq!(be32(&p, PS - 4), Some(0x0506_0708));
    let zip = PageFormat::from_flags(0x27).expect("zip 4k");
    assert!(finish_page(&mut vec![0u8; 8192], id(7, 3), &zip, Lsn(5)).is_err());
    let mut z = vec![0u8; 4096];
    apply_op(&mut z, id(7, 3), &PageOp::InitPage).expect("init on a compressed page");
    apply_op(
        &mut z,
        id(7, 3),
        &PageOp::Write {
            offset: 4000,
            data: &[1, 2],
        },
    )
    .expect("write");
    assert!(apply_op(
        &mut z,
        id(7, 3),
        &PageOp::Write {
            offset: 4095,
            data: &[1, 2]
        }
    )
    .is_err());
    finish_page(&mut z, id(7, 3), &zip, Lsn(77)).expect("finish zip");
    assert_eq!(crate::innodb::be64(&z, 16), Some(77));
    assert!(check_page(&zip, Some(PageNo(3)), &z).is_ok());
    let pc = PageFormat::from_flags(0x35).expect("page_compressed");
    assert!(matches!(
        finish_page(&mut vec![0u8; PS], id(7, 3), &pc, Lsn(5)),
        Err(Error::Unsupported { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_records_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(recs) = decode_mtr(&data, PS as u32) {
            let mut p = blank_index(true, 3);
            for r in recs {
                if let Record::Page { op, .. } = r {
                    let _ = apply_op(&mut p, id(7, 3), &op);
                }
            }
        }
    }

    #[test]
    fn random_ops_on_index_pages_never_panic(
        ops in prop::collection::vec((0u8..6, any::<u16>(), any::<u16>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)), 1..30),
        comp in any::<bool>(),
    ) {
        let mut p = blank_index(comp, 3);
        for (k, a, b, c, d) in ops {
            let op = match k {
                0 => PageOp::InsertDynamic { reuse: a & 1 == 1, prev: u32::from(a % 300), shift: u32::from(b % 16), enc_hdr_l: u32::from(c % 64), hdr_c: u32::from(b % 4), data_c: u32::from(c % 8), data: &d },
                1 => PageOp::InsertRedundant { reuse: a & 1 == 1, prev: u32::from(a % 300), enc_hdr: u32::from(c % 64), hdr_c: u32::from(b % 4), data_c: u32::from(c % 8), data: &d },
                2 => PageOp::DeleteDynamic { prev: u32::from(a % 300), hdr_size: u32::from(b % 8), data_size: u32::from(c % 64) },
                3 => PageOp::DeleteRedundant { prev: u32::from(a % 300) },
                4 => PageOp::Write { offset: u32::from(a) % (PS as u32 - 50) + 8, data: &d },
                _ => PageOp::UndoAppend { data: &d },
            };
            let _ = apply_op(&mut p, id(7, 3), &op);
        }
    }
}

#[test]
fn find_pair_finds_the_first_whole_element() {
    // Elements are 2-byte pairs; a match across two elements does not count.
    let mut dir = Vec::new();
    for v in 0u16..100 {
        dir.extend_from_slice(&(v * 3).to_be_bytes());
    }
    for v in 0u16..100 {
        assert_eq!(
            super::find_pair(&dir, (v * 3).to_be_bytes()),
            Some(usize::from(v))
        );
    }
    assert_eq!(super::find_pair(&dir, 1u16.to_be_bytes()), None);
    // 0x0003 0x0006: the bytes 0x03 0x00 straddle two elements.
    assert_eq!(super::find_pair(&dir, [0x03, 0x00]), None);
    // A duplicate: the first wins, also when it is past the first block.
    dir.extend_from_slice(&297u16.to_be_bytes());
    assert_eq!(super::find_pair(&dir, 297u16.to_be_bytes()), Some(99));
    assert_eq!(super::find_pair(&dir[..1], [0, 0]), None);
    assert_eq!(super::find_pair(&[], [0, 0]), None);
}

proptest! {
    #[test]
    fn find_pair_agrees_with_a_plain_scan(dir in proptest::collection::vec(0u8..4, 0..200), a in 0u8..4, b in 0u8..4) {
        let naive = dir.chunks_exact(2).position(|s| s == [a, b]);
        prop_assert_eq!(super::find_pair(&dir, [a, b]), naive);
    }
}
