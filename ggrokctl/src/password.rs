//! Passwords for `basic_auth`, hashed here, before anything is sent: the password never reaches
//! ggrokd, its config file or a log. Hashes are argon2id with the crate's default costs
//! (19 MiB, 2 passes, 1 lane: OWASP's recommendation), which a server checks in some tens of
//! milliseconds.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use ggrok_proto::access::Credential;
use std::io::BufRead;

/// `user:HASH` for `--basic-auth user:password`. An entry whose part after the colon is already
/// a bcrypt or argon2 hash (from `htpasswd -B`, or `ggrokctl hash-password`) is kept as it is. For
/// `--basic-auth user` alone, `ask` gives the password (kept out of the shell's history and the
/// process list): [`ask`] prompts on the terminal, or reads the next line of standard input.
pub fn basic_auth_entry(
    entry: &str,
    ask: impl FnOnce(&str) -> Result<String, String>,
) -> Result<String, String> {
    let Some((user, password)) = entry.split_once(':') else {
        let password = ask(entry).map_err(|e| format!("--basic-auth {entry}: {e}"))?;
        return credential(entry, &password).map_err(|e| format!("--basic-auth: {e}"));
    };
    if Credential::parse(entry).is_ok() {
        return Ok(entry.to_owned());
    }
    credential(user, password).map_err(|e| format!("--basic-auth: {e}"))
}

/// `user:HASH` of `password`.
pub fn credential(user: &str, password: &str) -> Result<String, String> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err("the user name must not be empty or contain control characters".into());
    }
    if password.is_empty() {
        return Err(format!("user {user:?} has an empty password"));
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("hashing the password failed: {e}"))?;
    Ok(format!("{user}:{hash}"))
}

/// `ggrokctl hash-password USER`: the password is the first line of `input` (so that it stays out
/// of the shell's history and the process list).
pub fn from_input(user: &str, input: impl BufRead) -> Result<String, String> {
    credential(user, &read_line(input)?)
}

/// One line of `input`, without its line end.
fn read_line(input: impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    input.take(64 * 1024).read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

/// The password for `user`: typed twice at the terminal without echo when standard input is one,
/// else the next line of standard input (one line per user, in order).
pub fn ask(user: &str) -> Result<String, String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return read_line(std::io::stdin().lock());
    }
    let first = prompt(&format!("Password for {user}: "))?;
    let again = prompt(&format!("Password for {user} again: "))?;
    if first != again {
        return Err("the two passwords differ".into());
    }
    Ok(first)
}

/// Asks on the terminal with echo off, and turns it back on, also when the question is
/// interrupted (Ctrl-C, `Ctrl-\`, a hangup or `kill`): see [`restore_on_signal`].
fn prompt(question: &str) -> Result<String, String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::Write;
    let fail = |e: &dyn std::fmt::Display| format!("cannot ask for the password on the terminal: {e}");
    let mut tty =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|e| fail(&e))?;
    let before = tcgetattr(&tty).map_err(|e| fail(&e))?;
    restore_on_signal(tty.try_clone().map_err(|e| fail(&e))?, before.clone()).map_err(|e| fail(&e))?;
    let mut quiet = before.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(|e| fail(&e))?;
    let _ = write!(tty, "{question}").and_then(|()| tty.flush());
    let line = read_line(std::io::BufReader::new(&tty));
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &before);
    let _ = writeln!(tty);
    line
}

/// The signals that end ggrokctl while it asks for a password.
const ENDING: [nix::sys::signal::Signal; 4] = {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    [SIGINT, SIGQUIT, SIGHUP, SIGTERM]
};

/// From now on, a signal in [`ENDING`] puts `tty` back as `before` (echo on) and ends ggrokctl
/// by that signal, as it would have ended anyway: without this, Ctrl-C at the prompt
/// left the shell without echo. The signals are blocked in this thread and taken by a thread that
/// waits for them (no code runs in a signal handler); the first call sets it up, later calls
/// (the second question) find it in place.
fn restore_on_signal(tty: std::fs::File, before: nix::sys::termios::Termios) -> nix::Result<()> {
    use nix::sys::signal::SigSet;
    use nix::sys::termios::{SetArg, tcsetattr};
    use std::io::Write;
    static WAITING: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    WAITING.call_once(|| {
        let mut signals = SigSet::empty();
        ENDING.iter().for_each(|&s| signals.add(s));
        // Blocked before the thread starts, so that it and this thread both have them blocked
        // and the one that waits for them gets them.
        result = signals.thread_block();
        if result.is_err() {
            return;
        }
        std::thread::spawn(move || {
            if let Ok(signal) = signals.wait() {
                let _ = tcsetattr(&tty, SetArg::TCSANOW, &before);
                let _ = writeln!(&tty);
                // Die of the signal itself (its default action), so that a shell script sees an
                // interrupted command, not one that chose to exit.
                let mut only = SigSet::empty();
                only.add(signal);
                let _ = only.thread_unblock();
                let _ = nix::sys::signal::raise(signal);
                std::process::exit(128 + signal as i32);
            }
        });
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    fn unasked(_: &str) -> Result<String, String> {
        Err("not asked".into())
    }

    #[test]
    fn passwords_become_argon2id_hashes() {
        let entry = basic_auth_entry("alice:s3cret:with:colons", unasked).unwrap();
        assert!(entry.starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"), "{entry}");
        assert!(!entry.contains("s3cret"));
        let c = Credential::parse(&entry).unwrap();
        let parsed = PasswordHash::new(&c.hash).unwrap();
        assert!(Argon2::default().verify_password(b"s3cret:with:colons", &parsed).is_ok());
        assert_ne!(
            basic_auth_entry("alice:x", unasked).unwrap(),
            basic_auth_entry("alice:x", unasked).unwrap(),
            "salted"
        );
    }

    #[test]
    fn hashes_pass_through_and_mistakes_are_named() {
        let bcrypt = "bob:$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        assert_eq!(basic_auth_entry(bcrypt, unasked).unwrap(), bcrypt);
        assert!(basic_auth_entry("alice", unasked).unwrap_err().contains("--basic-auth alice: not asked"));
        let typed = basic_auth_entry("alice", |user| Ok(format!("{user}-typed"))).unwrap();
        let c = Credential::parse(&typed).unwrap();
        let parsed = PasswordHash::new(&c.hash).unwrap();
        assert!(Argon2::default().verify_password(b"alice-typed", &parsed).is_ok(), "the password asked for");
        assert!(basic_auth_entry("alice:", unasked).unwrap_err().contains("empty password"));
        assert!(basic_auth_entry(":pw", unasked).unwrap_err().contains("user name"));
    }

    #[test]
    fn the_password_is_read_from_the_first_line() {
        let entry = from_input("carol", &b"pa ss\r\nignored\n"[..]).unwrap();
        let c = Credential::parse(&entry).unwrap();
        let parsed = PasswordHash::new(&c.hash).unwrap();
        assert!(Argon2::default().verify_password(b"pa ss", &parsed).is_ok());
        assert!(from_input("carol", &b""[..]).is_err());
    }
}
