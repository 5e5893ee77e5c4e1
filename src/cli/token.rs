//! `foreman token add`, and where the client commands find their token.
//!
//! A token never travels on the command line (where `ps` and shell histories show it): the CLI reads it from
//! `--token-file`, else `$FOREMAN_TOKEN_FILE`, else `~/.config/foreman/token` if that exists; a file that group or
//! others may read is refused with the `chmod` to run. Without one the CLI sends no token.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::core::auth::{Role, Scope};
use crate::rpc::tokens::GrantLine;

/// `foreman token add`: a new token for a user, appended (as its hash) to the masters' tokens file.
#[derive(Clone, Debug, Args)]
pub struct AddFlags {
    /// The user the token is for (what refusals and logs name; a `user/NAME` certificate gets the same grants).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The project the token's role applies to, or * for every project.
    #[arg(long, value_name = "PROJECT", value_parser = parse_scope, allow_hyphen_values = true)]
    pub project: String,
    /// What the token may do there: read (get, list, status), submit (also create, cancel, delete), or admin (the
    /// same; with --project '*', also `cluster resign` and deregistering executors).
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: String,
    /// The tokens file (the masters' auth.tokens); created with mode 0600 if missing.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
}

fn parse_scope(text: &str) -> Result<String, String> {
    Scope::parse(text).map(|_| text.to_owned()).map_err(|e| e.to_string())
}

fn parse_role(text: &str) -> Result<String, String> {
    Role::parse(text).map(|r| r.as_str().to_owned()).map_err(|e| e.to_string())
}

/// What `token add` prints: the token alone on stdout (for a script to capture), and how to use it on stderr.
pub struct Added {
    pub token: String,
    pub advice: String,
}

/// Runs `foreman token add`.
pub fn add(flags: &AddFlags) -> Result<Added, String> {
    let grant = GrantLine { project: flags.project.clone(), role: flags.role.clone() };
    let token = crate::rpc::tokens::add(&flags.file, &flags.name, &[grant])?;
    let advice = format!(
        "token for user {} ({}={}) added to {}; it is shown only this once. Give it to the CLI in a file only its \
         owner may read, e.g.\n  (umask 077; mkdir -p ~/.config/foreman; echo TOKEN > ~/.config/foreman/token)\nor \
         --token-file FILE / $FOREMAN_TOKEN_FILE. The masters read {} again when it changes.",
        flags.name,
        flags.project,
        flags.role,
        flags.file.display(),
        flags.file.display()
    );
    Ok(Added { token, advice })
}

/// The file the CLI reads its token from: `flag` (`--token-file` or `$FOREMAN_TOKEN_FILE`) if given, else
/// `~/.config/foreman/token` if it exists; `None` when there is none.
pub fn token_path(flag: Option<&Path>, home: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(p) = flag {
        return Some((p.to_owned(), true));
    }
    let default = home?.join(".config/foreman/token");
    default.exists().then_some((default, false))
}

/// Reads the token in `path` (its first line, trimmed); `given` says whether the user named the file (for
/// messages).
pub fn read_token(path: &Path, given: bool) -> Result<String, String> {
    let what = if given { "--token-file" } else { "the default token file" };
    crate::rpc::tls::check_owner_only(what, path, "a token file")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() || token.len() > crate::rpc::tokens::TOKEN_MAX || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what} {}: the first line must be the token `foreman token add` printed (printable, at most {} \
             characters)",
            path.display(),
            crate::rpc::tokens::TOKEN_MAX
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("foreman-cli-token-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(unix)]
    fn write(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_found_and_checked() {
        let d = dir("find");
        let home = d.join("home");
        assert_eq!(token_path(None, Some(&home)), None, "no default file: no token");
        std::fs::create_dir_all(home.join(".config/foreman")).unwrap();
        let default = home.join(".config/foreman/token");
        write(&default, "foreman_abc\n", 0o600);
        assert_eq!(token_path(None, Some(&home)), Some((default.clone(), false)));
        let given = d.join("t");
        assert_eq!(token_path(Some(&given), Some(&home)), Some((given.clone(), true)), "the flag comes first");
        assert_eq!(read_token(&default, false).unwrap(), "foreman_abc");
        write(&given, "  foreman_x  \nignored\n", 0o600);
        assert_eq!(read_token(&given, true).unwrap(), "foreman_x");
        write(&given, "foreman_x\n", 0o644);
        let e = read_token(&given, true).unwrap_err();
        assert!(e.contains("--token-file") && e.contains("chmod 600"), "{e}");
        write(&given, "\n", 0o600);
        assert!(read_token(&given, true).unwrap_err().contains("first line must be the token"));
        assert!(read_token(&d.join("missing"), true).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn add_refuses_bad_flags_before_writing() {
        assert!(parse_scope("*").is_ok() && parse_scope("team-a").is_ok());
        assert!(parse_scope("Team").unwrap_err().contains("not valid"));
        assert!(parse_role("root").unwrap_err().contains("read, submit or admin"));
        let d = dir("add");
        let flags =
            AddFlags { name: "alice".into(), project: "team-a".into(), role: "read".into(), file: d.join("tokens") };
        let added = add(&flags).unwrap();
        assert!(added.advice.contains("shown only this once"), "{}", added.advice);
        let tokens = crate::rpc::tokens::read_file("--file", &flags.file).unwrap();
        assert_eq!(tokens.lookup(&added.token).unwrap().wire(), "user/alice team-a=read");
    }
}
