//! The integration tests of `parity`, in one test binary (one link, one
//! process): each former `tests/*.rs` file is a module here, and the shared
//! helpers are modules beside them.

mod checker;
mod common;
mod compare;
mod report;
mod requests;
