//! Fuzz target: `Request::new`, `Request::check` and `Request::admit` against the rules of
//! docs/semantics.md ("Request flags"), written out again here from the page, for any `int`
//! of flags and every combination of exporter facts. A panic or a disagreement is a crash.
#![no_main]

// `admit` and the facts' table index are crate-private plumbing of the export path; the
// fuzz target reaches them through `bufferkit::__private`.
use bufferkit::__private;
use bufferkit::request::{Facts, Refusal, Request};
use libfuzzer_sys::fuzz_target;

const ND: i32 = 0x08;
const STRIDES: i32 = 0x18;

/// Rule 1: the flags are not a request.
fn malformed(flags: i32) -> bool {
    flags & !0x1fd != 0
        || (flags & 0x10 != 0 && flags & ND == 0)
        || ([0x20, 0x40, 0x80, 0x100].iter().any(|&b| flags & b != 0) && flags & STRIDES != STRIDES)
}

/// Rules 2-5, in order: which refusal, if any.
fn refusal(flags: i32, f: Facts) -> Option<Refusal> {
    let has = |mask: i32| flags & mask == mask;
    if has(0x01) && f.readonly {
        return Some(Refusal::NotWritable);
    }
    if has(0x38) && !f.c_contiguous {
        return Some(Refusal::NotCContiguous);
    }
    if has(0x58) && !f.f_contiguous {
        return Some(Refusal::NotFContiguous);
    }
    if has(0x98) && !(f.c_contiguous || f.f_contiguous) {
        return Some(Refusal::NotContiguous);
    }
    if !has(STRIDES) && !f.c_contiguous {
        return Some(Refusal::NeedsStrides);
    }
    if !has(ND) && has(0x04) && !f.byte_format {
        return Some(Refusal::FormatWithoutShape);
    }
    None
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    // Mostly the 9 meaningful bits with a few others, sometimes the raw int.
    let flags = match data.get(4).copied().unwrap_or(0) % 4 {
        0 => raw,
        1 => raw & 0x1ff,
        2 => raw & 0x3fff,
        _ => raw & 0x1fd,
    };
    let new = Request::new(flags);
    assert_eq!(
        new.is_err(),
        malformed(flags),
        "Request::new({flags:#x}) = {new:?}"
    );
    for index in 0..16u8 {
        let facts = __private::facts_from_index(index);
        assert_eq!(__private::facts_index(facts), index);
        let want = if malformed(flags) {
            None
        } else {
            Some(refusal(flags, facts))
        };
        match new {
            Err(why) => {
                let text = Refusal::Malformed(flags, why).message("T", "B").to_string();
                assert!(
                    text.starts_with(&format!(
                        "invalid buffer request flags {:#x}: ",
                        flags as u32
                    )),
                    "{text}"
                );
            }
            Ok(r) => {
                assert_eq!(r.flags(), flags);
                let got = r.check(facts).err();
                assert_eq!(Some(got), want, "check({flags:#x}, {facts:?})");
                if let Some(why) = got {
                    assert!(!why.message("T", "i").to_string().is_empty());
                }
            }
        }
        let admitted = __private::admit(flags, index);
        assert_eq!(
            admitted.is_some(),
            want == Some(None),
            "admit({flags:#x}, {facts:?}) = {admitted:?}"
        );
    }
});
