//! What a session answers: once a request head is complete (`on_head`)
//! and once its file is open (`opened`), the decisions that make a
//! response, and the refusals that end a connection.

use super::{Env, Phase, Session};
use crate::http::body::{self, BodySkipper};
use crate::http::parser::{Head, Version};
use crate::http::path::{self, Opened, Resolved};
use crate::http::response::{self, Response};

/// A request whose file is being opened.
pub(super) struct Request {
    head: Head,
    pub(super) path: Resolved,
    skipper: BodySkipper,
    close: bool,
}

/// The interim response that asks for an announced body (see `opened`).
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Session {
    /// A complete head arrived: refuse it, or name the file to open.
    pub(super) fn on_head(&mut self, head: Head, env: &mut Env<'_>) {
        let line = env.logging.then(|| {
            let target = String::from_utf8_lossy(&head.target);
            format!("{} {target} {}", head.method, head.version)
        });
        // Exactly one Host in HTTP/1.1, at most one in 1.0, and a valid one
        // (RFC 9112 §3.2): anything else is 400.
        let hosts: Vec<&[u8]> = head.headers_named("host").collect();
        let one_needed = head.version == Version::Http11;
        if hosts.len() > 1
            || (one_needed && hosts.is_empty())
            || !hosts.iter().all(|h| path::valid_host(h))
        {
            return self.refuse(400, line, env);
        }
        match head.method.as_str() {
            "GET" | "HEAD" => {}
            "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT" => {
                return self.refuse(405, line, env);
            }
            _ => return self.refuse(501, line, env),
        }
        let skipper = match body::framing(&head)
            .and_then(|f| BodySkipper::new(f, env.max_body).map_err(|e| e.status()))
        {
            Ok(skipper) => skipper,
            Err(status) => return self.refuse(status, line, env),
        };
        let close = !response::wants_keep_alive(&head) || env.stopping || self.peer_closed;
        self.line = line;
        match path::resolve(&head.target) {
            Ok(path) => {
                let rq = Request {
                    head,
                    path,
                    skipper,
                    close,
                };
                self.phase = Phase::Open(Box::new(rq));
            }
            Err(e) => {
                let head_only = head.method == "HEAD";
                let outputs = &mut env.pools.outputs;
                let r = response::error(e.status(), head_only, close, env.date, outputs);
                self.respond(r, skipper);
            }
        }
    }

    /// The file named by [`Next::Open`](super::Next::Open) was opened (or could not be).
    pub fn opened(&mut self, opened: Opened, env: &mut Env<'_>) {
        let Phase::Open(rq) = std::mem::replace(&mut self.phase, Phase::Send) else {
            return;
        };
        let outputs = &mut env.pools.outputs;
        let mut r = response::for_request(&rq.head, &rq.path, opened, rq.close, env.date, outputs);
        // `Expect: 100-continue`: the client waits for a word before it
        // sends the body it announced.
        let expects = rq.head.has_token("expect", "100-continue");
        if expects && rq.head.version == Version::Http11 && !rq.skipper.is_done() {
            if r.status / 100 == 2 {
                // The body will be read: ask for it (RFC 9110 §10.1.1).
                self.continue_sent = Some(0);
            } else {
                // A final answer needs no body: send it now, and close, as
                // whether the body comes cannot be told from the next
                // request. Waiting for a body the client holds back until
                // it hears from us would stall both until a timeout.
                response::close_after(&mut r);
                self.cut_short = true;
                self.response = Some(Box::new(r));
                return;
            }
        }
        self.respond(r, rq.skipper);
    }

    /// Holds `r` as the response; the body (if any) is skipped first.
    fn respond(&mut self, r: Response, skipper: BodySkipper) {
        self.response = Some(Box::new(r));
        self.phase = if skipper.is_done() {
            Phase::Send
        } else {
            Phase::Body(skipper)
        };
    }

    pub(super) fn skip_body(&mut self, env: &mut Env<'_>) {
        let Phase::Body(skipper) = &mut self.phase else {
            return;
        };
        match skipper.skip(&self.input[self.start..self.end]) {
            Err(e) => {
                let line = self.line.take();
                self.refuse(e.status(), line, env);
            }
            Ok(skipped) => {
                self.start += skipped.consumed;
                if skipped.done {
                    self.phase = Phase::Send;
                }
            }
        }
    }

    /// An error response after which the connection closes: what follows
    /// (a body of unknown framing, the rest of a bad head) cannot be
    /// trusted, so it is thrown away, and closing will linger.
    pub(super) fn refuse(&mut self, status: u16, line: Option<String>, env: &mut Env<'_>) {
        self.start = self.end;
        self.cut_short = true;
        let r = response::error(status, false, true, env.date, &mut env.pools.outputs);
        if let Some(old) = self.response.replace(Box::new(r)) {
            old.give_back(&mut env.pools.outputs);
        }
        self.line = line.or_else(|| env.logging.then(|| "-".to_string()));
        self.phase = Phase::Send;
    }
}
