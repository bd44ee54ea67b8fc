//! `waveform`: a Python extension module whose `Waveform` type holds Rust `i16` samples and
//! exports them through the buffer protocol as format `'h'`, so that `numpy.asarray(w)`,
//! `memoryview(w)` and `f.readinto(w)` work on the samples in place. bufferkit makes the type,
//! the module and the whole buffer protocol; this file has one `unsafe` line.

use bufferkit::ffi::convert::{index_arg, new_int, none};
use bufferkit::ffi::spec::{Args, ExportingType};
use bufferkit::ffi::{Borrowed, Error, Owned, Result, This};
use bufferkit::SharedVec;
use bufferkit::{bufferkit_method, bufferkit_slot, BufferExporter, ExportCounter, Gil, Memory};

/// The value inside a `waveform.Waveform` object.
pub struct Waveform {
    samples: SharedVec<i16>,
}

// SAFETY: `SharedVec` changes its memory only under its lock, which refuses while exports live.
unsafe impl BufferExporter for Waveform {
    fn counter(&self) -> &ExportCounter {
        self.samples.counter()
    }
    fn memory(&self) -> Option<Memory<'_>> {
        self.samples.memory()
    }
}

/// A number of samples: an int >= 0.
fn length(n: Borrowed<'_>) -> Result<usize> {
    let n = index_arg(n, &|| "n".into())?;
    usize::try_from(n).map_err(|_| Error::value_error(format!("n must be >= 0, not {n}")))
}

fn waveform_new(_gil: Gil<'_>, args: Args<'_>) -> Result<Waveform> {
    let [n] = args.exactly("Waveform")?;
    let samples = SharedVec::try_filled(length(n)?, 0, false)?;
    Ok(Waveform { samples })
}

fn waveform_peak(this: This<'_, Waveform>) -> Result<Owned> {
    let samples = this.value.samples.to_vec(this.gil);
    let peak = samples.iter().map(|s| i32::from(*s).abs()).max();
    new_int(this.gil, peak.unwrap_or(0) as isize)
}

fn waveform_resize(this: This<'_, Waveform>, n: Borrowed<'_>) -> Result<Owned> {
    let len = length(n)?;
    let mut samples = this.value.samples.lock_for(this.gil, "resize")?;
    samples.resize(len, 0)?;
    Ok(none(this.gil))
}

fn waveform_len(this: This<'_, Waveform>) -> Result<isize> {
    Ok(this.value.samples.len() as isize)
}

static WAVEFORM: ExportingType<Waveform> = ExportingType::new(c"waveform.Waveform")
    .doc(c"Waveform(n)\n--\n\nn zero samples of type int16, exported as format 'h'.")
    .subclassable()
    .slots(&[
        bufferkit_slot!(new, waveform_new),
        bufferkit_slot!(len, waveform_len),
    ])
    .methods(&[
        bufferkit_method!(noargs, c"peak", waveform_peak, c"The largest |sample|."),
        bufferkit_method!(onearg, c"resize", waveform_resize, c"Keep n samples."),
    ]);

fn waveform_exec(gil: Gil<'_>, module: Borrowed<'_>) -> Result<()> {
    WAVEFORM.add_to(gil, module).map(drop)
}

bufferkit::bufferkit_module!(PyInit_waveform: c"waveform", c"Rust i16 samples.", waveform_exec);
