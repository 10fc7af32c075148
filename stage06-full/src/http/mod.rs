//! HTTP/1.1, as far as a static-file server needs it, and free of I/O: the
//! request parser, body framing, dates, paths and what opening one gave
//! (the opening is the worker's), ranges, every response, and the
//! [`session`] that ties them into one connection's state machine.

pub mod body;
pub mod date;
pub mod parser;
pub mod path;
pub mod range;
pub mod response;
pub mod session;

/// A read buffer holds a whole head of the largest size accepted (an 8 KiB
/// request line and 16 KiB of fields) with room to spare for pipelining.
pub const READ_BUF: usize = 32 * 1024;
/// A connection reads first into a buffer this small, as most requests are
/// (nginx's `client_header_buffer_size` is 1 KiB too), and takes a
/// `READ_BUF` one only when a read fills it: a connection that sends one
/// byte of a head and waits holds 1 KiB, not 32.
pub const FIRST_READ: usize = 1024;
/// Bodies up to this size are read into memory and leave with the head in
/// one `writev`; larger ones go by `sendfile`.
pub const SMALL_BODY: usize = 16 * 1024;
/// The output buffer's size: a head plus a small body.
pub const WRITE_BUF: usize = SMALL_BODY + 4096;
