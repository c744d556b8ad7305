//! lancetorch's Rust core: the modules below, with no Python in them (`cargo test
//! --no-default-features` builds and tests them alone), and with the `python` feature the
//! bindings in `py/`, the only code that touches Python (`py/mod.rs` makes and fills the
//! Python module). This file only declares the modules.
//!
//! The core modules depend on each other in one direction, lowest first: `error`, `dtype`,
//! `dlpack`, `memory`, `threads`, `pool`, `lending`; `tensor`; `row_block`; `store`;
//! `gather`; `loader` (the prefetcher), with `permutation`, `bijection`, `tokens`, `image`
//! (which reads a file's layout with `jpeg` first, and decodes a JPEG's crop with `libjpeg`) and `sql` beside them.

pub mod bijection;
pub mod dlpack;
pub mod dtype;
pub mod error;
pub mod gather;
pub mod image;
pub mod jpeg;
pub mod lending;
pub mod libjpeg;
pub mod loader;
pub mod memory;
pub mod permutation;
pub mod pool;
pub mod row_block;
pub mod sql;
pub mod store;
pub mod tensor;
pub mod threads;
pub mod tokens;

#[cfg(feature = "python")]
pub mod py;
