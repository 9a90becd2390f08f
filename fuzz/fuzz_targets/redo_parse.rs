//! Fuzz the redo log parsers. Properties: no panic; the mtr scanner's
//! lengths sum to the consumed count, which is at most the input length;
//! each reported mtr re-validates on its own at its LSN; FILE_* iteration
//! over every mtr terminates; the header parsers never panic.
#![no_main]

use hotbak::innodb::redo::{
    file_records, parse_log_prefix, parse_mtr, scan_mtrs, LogGeometry, MtrParse, MtrSpan,
};
use hotbak::innodb::Lsn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_log_prefix(data);
    if data.len() < 6 {
        return;
    }
    // First bytes pick the geometry and the start LSN; the rest is log.
    let cap = 16 + u64::from(u16::from_be_bytes([data[0], data[1]]));
    let skew = u64::from(u16::from_be_bytes([data[2], data[3]]));
    let log = &data[4..];
    let Ok(geo) = LogGeometry::new(Lsn(12288), 12288 + cap) else {
        return;
    };
    let start = Lsn(12288 + skew);
    let Ok(scan) = scan_mtrs(&geo, start, log) else {
        return;
    };
    assert!(scan.consumed <= log.len());
    assert_eq!(scan.mtr_lens.iter().sum::<usize>(), scan.consumed);
    assert_eq!(scan.end_lsn, Lsn(start.0 + scan.consumed as u64));
    let mut pos = 0usize;
    let mut lsn = start;
    for &len in &scan.mtr_lens {
        let one = &log[pos..pos + len];
        assert_eq!(
            parse_mtr(&geo, lsn, one).ok(),
            Some(MtrParse::Complete(MtrSpan::plain(len)))
        );
        let mut count = 0usize;
        for r in file_records(one) {
            let _ = r;
            count += 1;
            assert!(count <= len);
        }
        pos += len;
        lsn = Lsn(lsn.0 + len as u64);
    }
});
