//! The integration tests of `migrate`, in one test binary (one link, one
//! process): each former `tests/*.rs` file is a module here, and the shared
//! helpers are modules beside them.

mod cli;
mod demo;
mod docs;
mod gates;
mod leaks;
mod local_alb;
mod long;
mod moto;
mod ops;
mod retire;
mod support;
mod verify;
