//! The control socket: a Unix socket that ggrokctl talks to with newline-delimited JSON
//! ([`ggrok_proto::ctl`]). The directory is 0700 and the socket 0600; a stale socket left by a
//! crashed daemon is replaced, a live one makes this daemon refuse to start.

pub mod commands;
pub mod logs;
pub mod names;

use crate::daemon::Daemon;
use ggrok_proto::ctl::{COMMANDS, CTL_VERSION, Command, CtlRequest, CtlResponse, ErrorCode, MAX_CTL_LINE};
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Control clients served at once; more wait for a slot.
const MAX_CLIENTS: usize = 32;

/// A bound control socket; the file is removed when this is dropped.
pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ControlSocket {
    /// Creates the directory (0700) and binds the socket (0600). Refuses when another daemon
    /// answers on `path`, or when `path` exists and is not a socket.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the control socket directory {}: {e}", dir.display())
                })?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            } else if dir.metadata()?.uid() != nix::unistd::getuid().as_raw() {
                anyhow::bail!(
                    "the control socket directory {} belongs to another user; choose another with --socket",
                    dir.display()
                );
            }
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    anyhow::bail!(
                        "another ggrokd is already running with control socket {}; stop it first \
                         (systemctl --user stop ggrokd) or give this one another --socket",
                        path.display()
                    );
                }
                info!(socket = %path.display(), "replacing a stale control socket");
                fs::remove_file(path)?;
            }
            Ok(_) => anyhow::bail!(
                "{} exists and is not a socket; remove it or choose another --socket",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("cannot bind the control socket {}: {e}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        Ok(Self { path: path.to_owned(), listener })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves control clients until `shutdown`.
    pub async fn serve(self, daemon: Arc<Daemon>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!("control socket accept failed: {e}");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                serve_client(daemon, stream).await;
                drop(slot);
            });
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

async fn serve_client(daemon: Arc<Daemon>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        let response = match read_line(&mut reader, &mut line).await {
            Ok(Line::End) => return,
            Ok(Line::TooLong) => {
                CtlResponse::error(ErrorCode::TooLarge, format!("request longer than {MAX_CTL_LINE} bytes"))
            }
            Ok(Line::Complete) if line.trim_ascii().is_empty() => continue,
            Ok(Line::Complete) => match parse(&line) {
                Ok(CtlRequest { command: Command::Logs { follow, host, last }, .. }) => {
                    let query = logs::Query { follow, host, last };
                    match logs::serve(&daemon, &mut reader, &mut write, query).await {
                        // A follow ends only when the client hangs up.
                        Ok(()) if !follow => continue,
                        _ => return,
                    }
                }
                Ok(request) => CtlResponse::new(commands::execute(&daemon, request.command).await),
                Err((code, message)) => CtlResponse::error(code, message),
            },
            Err(e) => return debug!("control client: {e}"),
        };
        let mut text = serde_json::to_vec(&response).expect("responses serialise");
        text.push(b'\n');
        if write.write_all(&text).await.is_err() {
            return;
        }
    }
}

enum Line {
    /// `line` holds one line, without its newline.
    Complete,
    /// The line exceeded [`MAX_CTL_LINE`]; it was read and discarded up to its newline.
    TooLong,
    /// The client closed the connection.
    End,
}

/// Reads one newline-terminated line of at most [`MAX_CTL_LINE`] bytes into `line`, never
/// buffering more than that: a longer line is skipped, so the connection stays usable.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::End);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1),
            None => (available, available.len()),
        };
        if line.len() + chunk.len() > MAX_CTL_LINE {
            too_long = true;
            line.clear();
        } else if !too_long {
            line.extend_from_slice(chunk);
        }
        let newline = done > chunk.len();
        reader.consume(done);
        if newline {
            return Ok(if too_long { Line::TooLong } else { Line::Complete });
        }
    }
}

/// Parses a request line, telling malformed requests, unknown commands and version mismatches apart.
fn parse(line: &[u8]) -> Result<CtlRequest, (ErrorCode, String)> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| refusal(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let cmd = value.get("cmd").and_then(|c| c.as_str());
    match cmd {
        None => return Err(refusal(ErrorCode::BadRequest, "no \"cmd\" in the request")),
        Some(c) if !COMMANDS.contains(&c) => {
            return Err(refusal(
                ErrorCode::UnknownCommand,
                format!("unknown command {c:?}; known: {}", COMMANDS.join(", ")),
            ));
        }
        Some(_) => {}
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(CTL_VERSION) => {}
        other => {
            return Err(refusal(
                ErrorCode::Version,
                format!("control protocol version {other:?} is not supported; ggrokd speaks {CTL_VERSION}"),
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| refusal(ErrorCode::BadRequest, format!("malformed request: {e}")))
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> (ErrorCode, String) {
    (code, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_and_the_next_line_is_read() {
        let mut input = vec![b'x'; MAX_CTL_LINE + 10];
        input.extend_from_slice(b"\nshort\n\npartial");
        let mut reader = BufReader::with_capacity(1000, input.as_slice());
        let mut line = Vec::new();
        assert!(matches!(read_line(&mut reader, &mut line).await.unwrap(), Line::TooLong));
        assert!(matches!(read_line(&mut reader, &mut line).await.unwrap(), Line::Complete));
        assert_eq!(line, b"short");
        assert!(matches!(read_line(&mut reader, &mut line).await.unwrap(), Line::Complete));
        assert!(line.is_empty());
        assert!(matches!(read_line(&mut reader, &mut line).await.unwrap(), Line::End));
    }
}
