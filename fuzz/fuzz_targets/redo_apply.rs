//! Fuzz the redo record decoder and the page applier. Properties: no
//! panic on any record bytes; decoded data never exceeds the input; every
//! decoded op applied to an index page (COMPACT and REDUNDANT), an undo
//! page and a raw page either succeeds or returns an error, and the page
//! keeps its size; recovery of the ops with the LSN rules never panics.
#![no_main]

use hotbak::innodb::apply::{
    apply_op, decode_mtr, recover_page, LoggedOp, PageId, PageOp, Record,
};
use hotbak::innodb::{Lsn, PageNo, SpaceId};
use libfuzzer_sys::fuzz_target;

const PS: usize = 16384;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, recs)) = data.split_first() else {
        return;
    };
    let Ok(decoded) = decode_mtr(recs, PS as u32) else {
        return;
    };
    let id = PageId {
        space: SpaceId(7),
        page: PageNo(3 + u32::from(sel & 3)),
    };
    let mut ops = Vec::new();
    let mut held = 0usize;
    for r in decoded {
        if let Record::Page { op, .. } = r {
            held += op.heap_bytes();
            ops.push(op);
        }
    }
    assert!(held <= recs.len(), "decoded {held} bytes from {} bytes", recs.len());
    let mut pages: Vec<Vec<u8>> = Vec::new();
    for init in [
        PageOp::InitIndex { compact: true },
        PageOp::InitIndex { compact: false },
        PageOp::UndoInit,
    ] {
        let mut p = vec![0u8; PS];
        apply_op(&mut p, id, &PageOp::InitPage).expect("init applies");
        apply_op(&mut p, id, &init).expect("create applies");
        pages.push(p);
    }
    pages.push(vec![sel; PS]);
    for p in &mut pages {
        for op in &ops {
            let _ = apply_op(p, id, op);
            assert_eq!(p.len(), PS);
        }
    }
    let logged: Vec<LoggedOp> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| LoggedOp {
            start_lsn: Lsn(1000 + i as u64 * 10),
            end_lsn: Lsn(1010 + i as u64 * 10),
            op,
        })
        .collect();
    let mut p = vec![0u8; PS];
    let _ = recover_page(&mut p, id, &logged);
    assert_eq!(p.len(), PS);
});
