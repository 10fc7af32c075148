//! The master's status lines, printed on stdout on SIGUSR1 and SIGUSR2.

use std::io::{self, Write};

use nix::unistd::Pid;

use super::Master;

impl Master {
    /// SIGUSR1: one line on stdout, `workers PID:LIVE:TAKEN …`, after reading
    /// every pending load report so the figures are current. LIVE and TAKEN
    /// count the connections on their way to a worker too.
    pub(super) fn print_status(&mut self) {
        self.read_all_reports();
        let mut line = String::from("workers");
        for i in 0..self.workers.len() {
            let st = self.channels.status(i);
            line += &format!(" {}:{}:{}", self.pid_of(i), st.live, st.taken);
        }
        print_line(&line);
    }

    /// SIGUSR2: one line on stdout, `channels PID:QUEUED:SENT:RECEIVED …
    /// accepting|paused`: per worker, the connections queued for it in the
    /// master, sent into its channel, and received by it (its last report);
    /// then whether the master accepts new ones or leaves them in the backlog.
    pub(super) fn print_channels(&mut self) {
        self.read_all_reports();
        let mut line = String::from("channels");
        for i in 0..self.workers.len() {
            let st = self.channels.status(i);
            let pid = self.pid_of(i);
            line += &format!(" {pid}:{}:{}:{}", st.queued, st.sent, st.received);
        }
        line += if self.accept_paused {
            " paused"
        } else {
            " accepting"
        };
        print_line(&line);
    }

    fn read_all_reports(&mut self) {
        for i in 0..self.workers.len() {
            self.channels.read_reports(i, &self.poller);
        }
        self.channels.flush(&self.poller);
    }

    fn pid_of(&self, i: usize) -> i32 {
        self.workers[i].pid.map_or(0, Pid::as_raw)
    }
}

fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
