//! Fuzz the incremental `.delta`/`.meta` format. Properties: parsing any
//! bytes never panics; every page it returns is one page long and lies
//! inside the input; pages written by `DeltaWriter` (numbers and contents
//! from the input) parse back to the same list.
#![no_main]

use hotbak::format::delta::{parse, DeltaWriter, Meta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Meta::parse(&String::from_utf8_lossy(data));
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let ps = 1024usize << (sel % 3);
    if let Ok(pages) = parse(rest, ps) {
        for (_, p) in &pages {
            assert_eq!(p.len(), ps);
        }
        assert!(pages.len() * ps <= rest.len());
    }
    // Round trip: page numbers and fill bytes from the input.
    let Ok(mut w) = DeltaWriter::new(ps) else {
        return;
    };
    let mut want = Vec::new();
    let mut out = Vec::new();
    for (i, b) in rest.iter().take(600).enumerate() {
        let page = vec![*b; ps];
        let no = u32::from(*b) * 1000 + i as u32;
        want.push((no, page.clone()));
        if let Some(c) = w.push(no, &page).expect("one page") {
            out.extend(c);
        }
    }
    out.extend(w.finish());
    let back = parse(&out, ps).expect("own output parses");
    assert_eq!(back.len(), want.len());
    for ((n, p), (wn, wp)) in back.iter().zip(&want) {
        assert_eq!((*n, *p), (*wn, wp.as_slice()));
    }
});
