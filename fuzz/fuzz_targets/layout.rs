//! Fuzz target: `Layout::strided`, `Layout::contiguous` and `Layout::sliced` against an
//! independent oracle in 128-bit arithmetic (the rules of docs/semantics.md and the head of
//! src/layout.rs). A panic, or any disagreement with the oracle, is a crash.
//!
//! The oracle, for a layout of item size `s`, shape `n`, strides `d`, `offset` in a block of
//! `block_len` bytes: accepted exactly when `ndim <= 64`, every `n_k >= 0`,
//! `len(d) == len(n)`, `product(n) * s` fits `isize`, `block_len` fits `isize`,
//! `0 <= offset <= block_len`, and, if the layout is not empty, every byte of every element
//! lies in `[0, block_len)`. Slicing an accepted layout by clipped slices is accepted, unless
//! the result is not empty and a new stride `d_k * step_k` does not fit `isize` (an empty
//! result keeps saturated strides), and addresses a subset of the parent's bytes.
#![no_main]

use bufferkit::layout::{Format, Layout, LayoutError, Order};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::ffi::CString;

const INTERESTING: [i64; 18] = [
    0,
    1,
    2,
    -1,
    -2,
    3,
    7,
    1 << 31,
    (1 << 32) + 1,
    1 << 62,
    (1 << 62) + 1,
    -(1 << 62),
    i64::MAX,
    i64::MAX - 1,
    i64::MIN,
    i64::MIN + 1,
    i64::MAX / 3,
    -(1 << 40),
];

/// Mostly small numbers and boundary values, sometimes anything.
fn num(u: &mut Unstructured<'_>, small: i64) -> Result<isize> {
    let v = match u.int_in_range(0u8..=9)? {
        0..=5 => u.int_in_range(-small..=small)?,
        6..=8 => INTERESTING[u.choose_index(INTERESTING.len())?],
        _ => u.arbitrary::<i64>()?,
    };
    Ok(v as isize)
}

fn format(u: &mut Unstructured<'_>) -> Result<Format> {
    const TEXTS: [(&str, usize); 8] = [
        ("B", 1),
        ("<B", 1),
        ("b", 1),
        ("h", 2),
        ("<i", 4),
        ("d", 8),
        ("hi", 8),
        ("16s", 16),
    ];
    let (text, size) = TEXTS[u.choose_index(TEXTS.len())?];
    // Now and then an item size the text does not explain: Format records it for a text
    // whose size only `struct` knows ('hi', '16s'), and refuses it for a one-item format
    // whose size `struct` fixes ('B', '<i': FormatSize), as for a size of 0 (ItemSize).
    let given = size;
    let size = if u.ratio(1u8, 16u8)? {
        u.int_in_range(0usize..=40)?
    } else {
        size
    };
    let fixed = !matches!(text, "hi" | "16s"); // one item: struct fixes its size
    match Format::new(CString::new(text).unwrap(), size) {
        Ok(f) => {
            assert!(
                !fixed || size == given,
                "Format::new took '{text}' with item size {size}"
            );
            Ok(f)
        }
        Err(LayoutError::ItemSize(0)) if size == 0 => Ok(Format::bytes()),
        Err(LayoutError::FormatSize {
            fixed: want,
            itemsize,
            ..
        }) if fixed => {
            assert_eq!((want, itemsize), (given, size));
            Ok(Format::bytes())
        }
        Err(e) => panic!("Format::new refused '{text}' with item size {size}: {e}"),
    }
}

/// `PySlice_AdjustIndices` for `(start, stop, step)` on a dimension of `length`.
fn adjust(length: i128, start: i128, stop: i128, step: i128) -> (i128, i128, i128) {
    let clip = |v: i128, lo: i128, hi: i128| v.max(lo).min(hi);
    let (start, stop) = if step > 0 {
        let s = if start < 0 {
            clip(start + length, 0, length)
        } else {
            clip(start, 0, length)
        };
        let e = if stop < 0 {
            clip(stop + length, 0, length)
        } else {
            clip(stop, 0, length)
        };
        (s, e)
    } else {
        let s = if start < 0 {
            clip(start + length, -1, length - 1)
        } else {
            clip(start, -1, length - 1)
        };
        let e = if stop < 0 {
            clip(stop + length, -1, length - 1)
        } else {
            clip(stop, -1, length - 1)
        };
        (s, e)
    };
    let len = if step > 0 {
        if stop > start {
            (stop - start - 1) / step + 1
        } else {
            0
        }
    } else if start > stop {
        (start - stop - 1) / (-step) + 1
    } else {
        0
    };
    (start, step, len)
}

/// `[lo, hi)`: the bytes a non-empty layout addresses, relative to the block.
fn extent(itemsize: i128, shape: &[isize], strides: &[isize], offset: i128) -> (i128, i128) {
    let mut lo = offset;
    let mut hi = offset + itemsize;
    for (&n, &d) in shape.iter().zip(strides) {
        // |span| < 2**127 for one dimension; sums saturate, far beyond any block
        let span = (n as i128 - 1) * d as i128;
        if span < 0 {
            lo = lo.saturating_add(span);
        } else {
            hi = hi.saturating_add(span);
        }
    }
    (lo, hi)
}

fn product(itemsize: i128, shape: &[isize]) -> i128 {
    if shape.contains(&0) {
        return 0;
    }
    // saturate far beyond isize::MAX: only "fits or not" matters
    shape.iter().fold(itemsize, |acc, &n| {
        acc.saturating_mul(n as i128).min(1 << 100)
    })
}

fn oracle_accepts(
    itemsize: i128,
    shape: &[isize],
    strides: &[isize],
    offset: isize,
    block_len: usize,
) -> bool {
    if shape.len() > 64 || shape.iter().any(|&n| n < 0) || strides.len() != shape.len() {
        return false;
    }
    let nbytes = product(itemsize, shape);
    if nbytes > isize::MAX as i128 || block_len > isize::MAX as usize {
        return false;
    }
    let (offset, block) = (offset as i128, block_len as i128);
    if offset < 0 || offset > block {
        return false;
    }
    if nbytes == 0 {
        return true;
    }
    let (lo, hi) = extent(itemsize, shape, strides, offset);
    lo >= 0 && hi <= block
}

/// `PyBuffer_IsContiguous` for one order; `dims` fastest-varying first.
fn contiguous_in(itemsize: i128, shape: &[isize], strides: &[isize], c_order: bool) -> bool {
    if product(itemsize, shape) == 0 {
        return true;
    }
    let mut expected = itemsize;
    let dims: Vec<usize> = if c_order {
        (0..shape.len()).rev().collect()
    } else {
        (0..shape.len()).collect()
    };
    for k in dims {
        if shape[k] > 1 && strides[k] as i128 != expected {
            return false;
        }
        expected = expected.saturating_mul(shape[k] as i128);
    }
    true
}

fn check_layout(
    l: &Layout,
    itemsize: i128,
    shape: &[isize],
    strides: &[isize],
    offset: isize,
    block_len: usize,
) {
    assert_eq!(l.shape(), shape);
    assert_eq!(l.strides(), strides);
    assert_eq!(l.offset(), offset);
    assert_eq!(l.ndim(), shape.len());
    assert_eq!(l.itemsize() as i128, itemsize);
    assert_eq!(l.nbytes() as i128, product(itemsize, shape));
    assert_eq!(l.required_len(), block_len);
    assert_eq!(
        l.is_c_contiguous(),
        contiguous_in(itemsize, shape, strides, true)
    );
    assert_eq!(
        l.is_f_contiguous(),
        contiguous_in(itemsize, shape, strides, false)
    );
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let fmt = format(u)?;
    let itemsize = fmt.itemsize() as i128;
    let ndim = match u.int_in_range(0u8..=15)? {
        15 => u.int_in_range(7usize..=70)?,
        k => (k % 7) as usize,
    };
    let mut shape = Vec::with_capacity(ndim);
    let mut strides = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        shape.push(num(u, 6)?);
        strides.push(num(u, 40)?);
    }
    if u.ratio(1u8, 32u8)? {
        strides.pop(); // a length mismatch
    }
    let offset = num(u, 120)?;
    let block_len = match u.int_in_range(0u8..=9)? {
        0..=7 => u.int_in_range(0usize..=256)?,
        8 => usize::MAX - u.int_in_range(0usize..=3)?,
        _ => (isize::MAX as usize).wrapping_add(u.int_in_range(0usize..=2)?),
    };

    // --- Layout::strided
    let got = Layout::strided(fmt.clone(), &shape, &strides, offset, block_len);
    let want = oracle_accepts(itemsize, &shape, &strides, offset, block_len);
    assert_eq!(
        got.is_ok(),
        want,
        "strided(itemsize {itemsize}, shape {shape:?}, strides {strides:?}, offset {offset}, \
         block {block_len}) = {got:?}, oracle accepts: {want}"
    );
    if let Err(e) = &got {
        assert!(!e.to_string().is_empty());
        let _ = e.is_overflow();
    }

    // --- Layout::contiguous
    let order = if u.arbitrary::<bool>()? {
        Order::C
    } else {
        Order::F
    };
    let cont = Layout::contiguous(fmt.clone(), &shape, order);
    let fits = shape.len() <= 64
        && shape.iter().all(|&n| n >= 0)
        && product(itemsize, &shape) <= isize::MAX as i128;
    assert_eq!(
        cont.is_ok(),
        fits,
        "contiguous({shape:?}, {order:?}) = {cont:?}"
    );
    if let Ok(c) = &cont {
        let nbytes = product(itemsize, &shape);
        assert_eq!(c.nbytes() as i128, nbytes);
        assert_eq!(c.offset(), 0);
        assert_eq!(c.required_len() as i128, nbytes);
        if nbytes > 0 {
            assert!(match order {
                Order::C => c.is_c_contiguous(),
                Order::F => c.is_f_contiguous(),
            });
            check_layout(c, itemsize, &shape, c.strides(), 0, nbytes as usize);
            let again = Layout::strided(fmt.clone(), &shape, c.strides(), 0, nbytes as usize)
                .expect("a contiguous layout fits its own nbytes");
            assert_eq!(&again, c);
        }
    }

    // --- Layout::sliced, on an accepted layout
    let Ok(layout) = got else { return Ok(()) };
    check_layout(&layout, itemsize, &shape, &strides, offset, block_len);
    let nslices = u.int_in_range(0..=layout.ndim())?;
    let mut slices = Vec::with_capacity(nslices);
    let mut overflow = false;
    let mut new_shape = shape.clone();
    let mut new_strides = strides.clone();
    for k in 0..nslices {
        let mut step = num(u, 4)? as i128;
        if step == 0 {
            step = 1;
        }
        let (start, stop) = (num(u, 8)? as i128, num(u, 8)? as i128);
        let (start, step, len) = adjust(shape[k] as i128, start, stop, step);
        let stride = strides[k] as i128 * step;
        if stride > isize::MAX as i128 || stride < isize::MIN as i128 {
            overflow = true;
        }
        // (an empty result keeps the saturated stride: it steps over nothing)
        new_strides[k] = stride.clamp(isize::MIN as i128, isize::MAX as i128) as isize;
        new_shape[k] = len as isize;
        slices.push((start as isize, step as isize, len as isize));
    }
    // An empty result addresses nothing and is always accepted (src/layout.rs, `sliced`);
    // a non-empty one is refused exactly when a new stride does not fit `isize`.
    let empty = new_shape.contains(&0);
    let overflow = overflow && !empty;
    let sliced = layout.sliced(&slices);
    match &sliced {
        Ok(s) => {
            assert!(
                !overflow,
                "sliced {slices:?} of {layout:?}: a stride overflowed, got {s:?}"
            );
            assert_eq!(s.shape(), &new_shape[..]);
            assert_eq!(s.strides(), &new_strides[..]);
            assert!(oracle_accepts(
                itemsize,
                s.shape(),
                s.strides(),
                s.offset(),
                block_len
            ));
            if s.nbytes() > 0 {
                let parent = extent(itemsize, &shape, &strides, offset as i128);
                let child = extent(itemsize, s.shape(), s.strides(), s.offset() as i128);
                assert!(
                    parent.0 <= child.0 && child.1 <= parent.1,
                    "slice {slices:?} addresses {child:?}, outside its parent's {parent:?}"
                );
            }
        }
        Err(e) => assert!(
            overflow,
            "sliced({slices:?}) of an accepted {layout:?} was refused: {e}"
        ),
    }
    Ok(())
}
