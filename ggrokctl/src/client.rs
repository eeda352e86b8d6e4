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
    open(socket, command, Some(ANSWER_TIMEOUT))?.read()
}

/// The answer lines to one command.
pub struct Responses {
    reader: BufReader<UnixStream>,
    socket: String,
    answered: bool,
    line: String,
}

/// Connects and sends `command`. `timeout` bounds the wait for each answer line (none: as long
/// as it takes, for `logs -f`). The error is the one line to show when ggrokd cannot be reached.
pub fn open(socket: &Path, command: Command, timeout: Option<Duration>) -> Result<Responses, String> {
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
    let socket = socket.display().to_string();
    Ok(Responses { reader: BufReader::new(stream), socket, answered: false, line })
}

impl Responses {
    /// The next answer line; an error when the connection ends or fails first, or the line
    /// cannot be read.
    pub fn read(&mut self) -> Result<CtlResponse, String> {
        self.line.clear();
        let read = (&mut self.reader).take(MAX_CTL_LINE as u64 + 1).read_line(&mut self.line);
        read.map_err(|e| format!("lost the connection to ggrokd at {}: {e}", self.socket))?;
        if self.line.is_empty() {
            let how = if self.answered { "" } else { " without answering" };
            return Err(format!("ggrokd at {} closed the connection{how}", self.socket));
        }
        self.answered = true;
        serde_json::from_str(&self.line).map_err(|e| {
            format!("ggrokd sent an answer this ggrokctl cannot read ({e}); are both the same version?")
        })
    }
}
