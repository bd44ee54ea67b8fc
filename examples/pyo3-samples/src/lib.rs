//! `samples`: a PyO3 extension module whose `Samples` class holds Rust `f32` samples and
//! exports them through the buffer protocol as format `'f'` (`numpy.asarray(s)`,
//! `memoryview(s)`, `f.readinto(s)` work on them in place). It extends a plain class,
//! `Signal`, to show that the export does not depend on the object's layout.

use std::ffi::c_int;

use bufferkit::request::{flags, Request};
use bufferkit::{BufferExporter, BufferView, ExportCounter, Memory, SharedVec};
use pyo3::ffi::Py_buffer;
use pyo3::prelude::*;

/// A signal's sample rate; the base class.
#[pyclass(frozen, subclass)]
struct Signal {
    #[pyo3(get)]
    rate: u32,
}

/// `Samples(n, rate)`: n zero samples.
#[pyclass(frozen, subclass, extends = Signal)]
struct Samples(SharedVec<f32>);

// SAFETY: `SharedVec` changes its memory only under its lock, which refuses while exports live.
unsafe impl BufferExporter for Samples {
    fn counter(&self) -> &ExportCounter {
        self.0.counter()
    }
    fn memory(&self) -> Option<Memory<'_>> {
        self.0.memory()
    }
}

#[pymethods]
impl Samples {
    #[new]
    fn new(n: usize, rate: u32) -> PyResult<PyClassInitializer<Self>> {
        let data = SharedVec::try_filled(n, 0.0, false)?;
        Ok(PyClassInitializer::from(Signal { rate }).add_subclass(Samples(data)))
    }
    fn peak(&self, py: Python<'_>) -> f32 {
        let samples = self.0.to_vec(bufferkit::pyo3::gil(py));
        samples.iter().fold(0.0, |peak, s| peak.max(s.abs()))
    }
    fn resize(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        let mut data = self.0.lock_for(bufferkit::pyo3::gil(py), "resize")?;
        Ok(data.resize(n, 0.0)?)
    }
    fn __len__(&self) -> usize {
        self.0.len()
    }
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: PyO3 passes the consumer's view (bf_getbuffer).
        unsafe { bufferkit::pyo3::getbuffer(&slf, view, flags) }
    }
    unsafe fn __releasebuffer__(slf: Bound<'_, Self>, view: *mut Py_buffer) {
        // SAFETY: PyO3 calls it once per export __getbuffer__ made (bf_releasebuffer).
        unsafe { bufferkit::pyo3::releasebuffer(&slf, view) }
    }
}

/// `Scratch(n)`: n zero bytes in a class that is not frozen (see docs/pyo3.md: prefer frozen).
#[pyclass]
struct Scratch(SharedVec<u8>);

// SAFETY: as for `Samples`; no `&mut self` method replaces the `SharedVec`.
unsafe impl BufferExporter for Scratch {
    fn counter(&self) -> &ExportCounter {
        self.0.counter()
    }
    fn memory(&self) -> Option<Memory<'_>> {
        self.0.memory()
    }
}

#[pymethods]
impl Scratch {
    #[new]
    fn new(n: usize) -> PyResult<Self> {
        Ok(Scratch(SharedVec::try_filled(n, 0, false)?))
    }
    /// Calls `f()` while `self` is mutably borrowed.
    fn while_borrowed(&mut self, f: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        f.call0().map(Bound::unbind)
    }
    fn resize(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        let mut data = self.0.lock_for(bufferkit::pyo3::gil(py), "resize")?;
        Ok(data.resize(n, 0)?)
    }
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: PyO3 passes the consumer's view (bf_getbuffer).
        unsafe { bufferkit::pyo3::getbuffer(&slf, view, flags) }
    }
    unsafe fn __releasebuffer__(slf: Bound<'_, Self>, view: *mut Py_buffer) {
        // SAFETY: PyO3 calls it once per export __getbuffer__ made (bf_releasebuffer).
        unsafe { bufferkit::pyo3::releasebuffer(&slf, view) }
    }
}

/// `nbytes(obj)`: the bytes of any exporter's C-contiguous buffer (the consumer side).
#[pyfunction]
fn nbytes(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    let request = Request::new(flags::CONTIG_RO).expect("a standard request");
    Ok(BufferView::from_bound(obj, request)?.len())
}

#[pymodule]
fn samples(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Signal>()?;
    m.add_class::<Samples>()?;
    m.add_class::<Scratch>()?;
    m.add_function(wrap_pyfunction!(nbytes, m)?)
}
