//! One request, one response, over the control socket; or, for `logs`, one request and a stream
//! of responses.

use ggrok_proto::ctl::{CTL_VERSION, Command, CtlRequest, CtlResponse, MAX_CTL_LINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long ggrokd may take to answer (add waits up to 5 s for the server).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `command` and returns ggrokd's response; the error is the one line to show when ggrokd
/// cannot be reached.
pub fn call(socket: &Path, command: Command) -> Result<CtlResponse, String> {
    let mut answer = None;
    stream(socket, command, Some(ANSWER_TIMEOUT), |response| {
        answer = Some(response);
        false
    })?;
    Ok(answer.expect("stream returns Ok only after a response"))
}

/// Sends `command` and hands each response line to `each` until it returns false. `timeout`
/// bounds the wait for each line (none: wait as long as it takes, for `logs -f`). The error is
/// the one line to show when ggrokd cannot be reached or the connection ends first.
pub fn stream(
    socket: &Path,
    command: Command,
    timeout: Option<Duration>,
    mut each: impl FnMut(CtlResponse) -> bool,
) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach ggrokd at {} ({e}); is it running? Start it with: systemctl --user start ggrokd",
            socket.display()
        )
    })?;
    let broken = |e: std::io::Error| format!("lost the connection to ggrokd at {}: {e}", socket.display());
    stream.set_read_timeout(timeout).map_err(broken)?;
    let mut line =
        serde_json::to_string(&CtlRequest { version: CTL_VERSION, command }).expect("requests serialise");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(broken)?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let mut answered = false;
    loop {
        answer.clear();
        (&mut reader).take(MAX_CTL_LINE as u64 + 1).read_line(&mut answer).map_err(broken)?;
        if answer.is_empty() {
            let how = if answered { "" } else { " without answering" };
            return Err(format!("ggrokd at {} closed the connection{how}", socket.display()));
        }
        let response = serde_json::from_str(&answer).map_err(|e| {
            format!("ggrokd sent an answer this ggrokctl cannot read ({e}); are both the same version?")
        })?;
        answered = true;
        if !each(response) {
            return Ok(());
        }
    }
}
