//! The shipped Python types, one file each: the object's Rust value, its slots, its spec.

pub mod buffer;
pub mod common;
pub mod exporter;
pub mod inspect;
pub mod view;

pub use buffer::Buffer;
pub use view::View;
