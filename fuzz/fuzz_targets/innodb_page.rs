//! Fuzz the InnoDB page parsers: arbitrary bytes as page 0 and as a page of
//! every format. Properties: no panic; a page reported valid re-checks as
//! valid (the check is deterministic and pure); a re-stamped page is valid.
#![no_main]

use hotbak::innodb::page::{check_page, parse_page0, stamp_checksum, PageFormat};
use hotbak::innodb::PageNo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let flags = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let body = &data[4..];

    if let Ok(info) = parse_page0(body) {
        // parse_page0 validated the flags, so they decode again.
        assert_eq!(
            PageFormat::from_flags(info.format.flags()).ok(),
            Some(info.format)
        );
    }

    let Ok(fmt) = PageFormat::from_flags(flags) else {
        return;
    };
    let size = fmt.physical_size() as usize;
    // Build one physical page from the input, padded with zeros.
    let mut page = vec![0u8; size];
    let n = body.len().min(size);
    page[..n].copy_from_slice(&body[..n]);
    let expected = PageNo(u32::from_be_bytes([page[4], page[5], page[6], page[7]]));

    let v1 = check_page(&fmt, Some(expected), &page);
    let v2 = check_page(&fmt, Some(expected), &page);
    assert_eq!(v1, v2);
    if v1.is_ok() {
        assert!(check_page(&fmt, None, &page).is_ok());
    }
    // Wrong sizes are always refused, never panic.
    assert!(!check_page(&fmt, None, &page[..size - 1]).is_ok());

    // A freshly stamped uncompressed page with a consistent LSN trailer is valid.
    let mut stamped = page.clone();
    if !fmt.is_zip() {
        // Make the page an ordinary (not page_compressed, not encrypted) page.
        stamped[24] &= 0x7F;
        stamped[0..4].fill(0);
        stamped[26..34].fill(0);
        if fmt.is_full_crc32() {
            stamped.copy_within(20..24, size - 8);
        } else {
            stamped.copy_within(20..24, size - 4);
        }
    }
    if stamp_checksum(&fmt, &mut stamped).is_ok() {
        let v = check_page(&fmt, None, &stamped);
        assert!(v.is_ok(), "{v:?}");
    }
});
