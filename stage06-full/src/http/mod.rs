//! HTTP/1.1, as far as a static-file server needs it: the request parser,
//! body framing, dates, paths, content types, ranges, and responses.

pub mod body;
pub mod date;
pub mod mime;
pub mod parser;
pub mod path;
pub mod range;
pub mod response;
