//! The integration tests of `forum`, in one test binary (one link, one
//! process): each former `tests/*.rs` file is a module here, and the shared
//! helpers are modules beside them.

mod contract;
mod gen_data_binary;
mod hostile;
mod large_data;
