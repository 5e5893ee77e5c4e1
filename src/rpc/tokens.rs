//! Users' bearer tokens: who a call with `authorization: Bearer <token>` comes from, and what it may do.
//!
//! The masters read a tokens file (`[auth] tokens`, `--auth-tokens`): JSON lines
//! `{"name": "alice", "sha256": "<hex>", "grants": [{"project": "team-a", "role": "submit"}]}`, one per token,
//! where `project` may be `*` (every project). Only the SHA-256 of a token is stored; the token itself is printed
//! once by `foreman token add`, which appends its line. The file holds the keys to the cluster's jobs, so one
//! that group or others may read is refused, with the `chmod` to run.
//!
//! The file is read again when it changes (its length or modification time), so a token added to a running
//! cluster works without a restart. A file that becomes unreadable or invalid refuses every token until it is
//! fixed (the refusal says why): a cluster never falls back to accepting what it cannot check.
//!
//! The same names are what a `user/NAME` certificate gets: the grants of every token named NAME ([`Tokens::grants_of`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::core::auth::{Grant, Principal, Role, Scope, NAME_MAX};

/// The prefix of every token `foreman token add` draws: recognisable in a leaked log or file.
pub const TOKEN_PREFIX: &str = "foreman_";

/// The longest token a call may present, in bytes (the ones drawn here are 72).
pub const TOKEN_MAX: usize = 256;

/// The most lines a tokens file may hold.
pub const TOKENS_MAX: usize = 10_000;

/// One grant as the file writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantLine {
    pub project: String,
    pub role: String,
}

/// One line of the tokens file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLine {
    pub name: String,
    pub sha256: String,
    pub grants: Vec<GrantLine>,
}

/// A token's entry, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    sha256: [u8; 32],
    grants: Vec<Grant>,
}

/// A tokens file, read and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// The grants of a line, checked (`what` names the line in messages).
pub fn grants_of_lines(lines: &[GrantLine], what: &str) -> Result<Vec<Grant>, String> {
    if lines.is_empty() {
        return Err(format!("{what}: a token needs at least one grant"));
    }
    if lines.len() > crate::core::auth::GRANTS_MAX {
        return Err(format!("{what}: at most {} grants", crate::core::auth::GRANTS_MAX));
    }
    lines
        .iter()
        .map(|g| {
            let scope = Scope::parse(&g.project).map_err(|e| format!("{what}: {e}"))?;
            let role = Role::parse(&g.role).map_err(|e| format!("{what}: {e}"))?;
            Ok(Grant { scope, role })
        })
        .collect()
}

/// Checks a user's name as a principal's (what a certificate and the simulation's identity name too).
pub fn check_name(name: &str) -> Result<(), String> {
    Principal::parse(&format!("user/{name}")).map(|_| ()).map_err(|_| {
        format!("{}: a user's name has 1 to {NAME_MAX} printable characters, no spaces", crate::core::text::quote(name))
    })
}

impl Tokens {
    /// Reads the file's text; an error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = vec![];
        for (i, line) in text.lines().enumerate() {
            let what = format!("line {}", i + 1);
            if line.trim().is_empty() {
                continue;
            }
            if entries.len() == TOKENS_MAX {
                return Err(format!("more than {TOKENS_MAX} tokens"));
            }
            let l: TokenLine = serde_json::from_str(line).map_err(|e| {
                format!("{what}: {e}; write {{\"name\": ..., \"sha256\": ..., \"grants\": [{{\"project\": ..., \"role\": ...}}]}}")
            })?;
            check_name(&l.name).map_err(|e| format!("{what}: {e}"))?;
            let sha256 = unhex(&l.sha256)
                .ok_or_else(|| format!("{what}: sha256 must be 64 hexadecimal digits (the token's SHA-256)"))?;
            let grants = grants_of_lines(&l.grants, &what)?;
            entries.push(Entry { name: l.name, sha256, grants });
        }
        Ok(Tokens { entries })
    }

    /// The user `token` belongs to, with its grants; `None` for a token not in the file.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let digest = sha256(token);
        self.entries
            .iter()
            .find(|e| e.sha256 == digest)
            .map(|e| Principal::User { name: e.name.clone(), grants: e.grants.clone() })
    }

    /// The grants of every token named `name` (what a `user/NAME` certificate may do); empty when none is.
    pub fn grants_of(&self, name: &str) -> Vec<Grant> {
        let mut grants: Vec<Grant> =
            self.entries.iter().filter(|e| e.name == name).flat_map(|e| e.grants.iter().cloned()).collect();
        grants.sort();
        grants.dedup();
        grants.truncate(crate::core::auth::GRANTS_MAX);
        grants
    }
}

/// The SHA-256 of a token.
pub fn sha256(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A new token from the OS's generator: [`TOKEN_PREFIX`] and 32 random bytes in hexadecimal.
pub fn generate() -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "the OS's random generator failed".to_owned())?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// Reads and checks a tokens file (`flag` names where it was configured, for messages).
pub fn read_file(flag: &str, path: &Path) -> Result<Tokens, String> {
    crate::rpc::tls::check_owner_only(flag, path, "a tokens file")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    Tokens::parse(&text).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// What a file looked like when it was read: it is read again when this changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { len: m.len(), modified: m.modified().ok() })
}

/// A tokens file as last read: what it looked like, and its tokens or why they cannot be used.
type LastRead = (Option<Stamp>, Result<Arc<Tokens>, String>);

/// The tokens file a master checks calls against, read again when it changes.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    read: Mutex<LastRead>,
}

/// The flag that sets the tokens file, for messages.
pub const TOKENS_FLAG: &str = "--auth-tokens";

impl TokenFile {
    /// Reads `path` once, refusing it as [`read_file`] does.
    pub fn open(path: &Path) -> Result<TokenFile, String> {
        let before = stamp(path);
        let tokens = read_file(TOKENS_FLAG, path)?;
        Ok(TokenFile { path: path.to_owned(), read: Mutex::new((before, Ok(Arc::new(tokens)))) })
    }

    /// The tokens as the file holds them now; the reason they cannot be read, if they cannot.
    pub fn current(&self) -> Result<Arc<Tokens>, String> {
        let now = stamp(&self.path);
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_none() || read.0 != now {
            let fresh = read_file(TOKENS_FLAG, &self.path).map(Arc::new);
            if let Err(e) = &fresh {
                tracing::warn!("the tokens file cannot be used; every token is refused until it is fixed: {e}");
            }
            *read = (now, fresh);
        }
        read.1.clone()
    }
}

static INSTALLED: OnceLock<TokenFile> = OnceLock::new();

/// Makes `path` this process's tokens file (a master's, once at start). With it, identity checking is on even
/// without TLS ([`crate::rpc::identity::mode`]). The simulation build checks the file but installs nothing.
pub fn install(path: &Path) -> Result<(), String> {
    let file = TokenFile::open(path)?;
    if cfg!(madsim) {
        return Ok(());
    }
    INSTALLED.set(file).map_err(|_| "a tokens file is already set up in this process".to_owned())
}

/// This process's tokens file, if [`install`]ed.
pub fn installed() -> Option<&'static TokenFile> {
    INSTALLED.get()
}

/// Appends a new token for `name` with `grants` to the file at `path` (created owner-only if missing; refused if
/// group or others may read it, or if it is not a valid tokens file, so a line is never added to a broken one).
/// Returns the token, which is stored nowhere: only its hash is written.
pub fn add(path: &Path, name: &str, grants: &[GrantLine]) -> Result<String, String> {
    const FLAG: &str = "--file";
    check_name(name)?;
    grants_of_lines(grants, "the grant")?;
    if path.exists() {
        let tokens = read_file(FLAG, path)?;
        if tokens.entries.len() >= TOKENS_MAX {
            return Err(format!("{FLAG} {}: holds {TOKENS_MAX} tokens already", path.display()));
        }
    }
    let token = generate()?;
    let line = TokenLine { name: name.to_owned(), sha256: hex(&sha256(&token)), grants: grants.to_vec() };
    let mut text = serde_json::to_string(&line).map_err(|e| format!("cannot write the line: {e}"))?;
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| format!("{FLAG} {}: cannot open: {e}", path.display()))?;
    // A file that did not end its last line would glue this one to it.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > 0 {
        let existing = std::fs::read(path).map_err(|e| format!("{FLAG} {}: cannot read: {e}", path.display()))?;
        if existing.last() != Some(&b'\n') {
            text.insert(0, '\n');
        }
    }
    use std::io::Write as _;
    f.write_all(text.as_bytes()).map_err(|e| format!("{FLAG} {}: cannot write: {e}", path.display()))?;
    f.sync_all().map_err(|e| format!("{FLAG} {}: cannot write: {e}", path.display()))?;
    Ok(token)
}

/// The nodes of a process that say who they are with a token instead of a certificate of their own: `foreman
/// standalone`, whose master and executors share one process (and so one TLS identity, [`crate::rpc::tls`]) but
/// must each be held to their own role and id. Each node gets a token drawn at start, held in memory only, that its
/// calls carry as their bearer token ([`crate::rpc::identity::Identity::stamp`]) over TLS; a callee of the same
/// process believes it. Nothing is written anywhere: the tokens die with the process.
struct NodeTokens {
    entries: Vec<(Principal, String, [u8; 32])>,
}

static NODES: OnceLock<NodeTokens> = OnceLock::new();

/// Draws a token for each of `nodes` (masters and executors) and makes them this process's node tokens. Once per
/// process.
pub fn install_nodes(nodes: &[Principal]) -> Result<(), String> {
    let mut entries = Vec::with_capacity(nodes.len());
    for p in nodes {
        if !matches!(p, Principal::Master(_) | Principal::Executor(_)) {
            return Err(format!("{p}: only masters and executors get node tokens"));
        }
        let token = generate()?;
        let digest = sha256(&token);
        entries.push((p.clone(), token, digest));
    }
    NODES.set(NodeTokens { entries }).map_err(|_| "node tokens are already set up in this process".to_owned())
}

/// The token `node`'s calls carry, when this process gave it one.
pub fn node_token_of(node: &Principal) -> Option<&'static str> {
    NODES.get()?.entries.iter().find(|(p, _, _)| p == node).map(|(_, t, _)| t.as_str())
}

/// The node of this process whose token `token` is.
pub fn node_of(token: &str) -> Option<Principal> {
    let digest = sha256(token);
    NODES.get()?.entries.iter().find(|(_, _, d)| *d == digest).map(|(p, _, _)| p.clone())
}

/// The token of a call: the `authorization` entry's `Bearer <token>`, if there is one; an error for one that is
/// not a bearer token or too long.
pub fn bearer(value: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(value).map_err(|_| "authorization: not text".to_owned())?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| "authorization: send `Bearer <token>`".to_owned())?
        .trim();
    if token.is_empty() || token.len() > TOKEN_MAX || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("authorization: a token has 1 to {TOKEN_MAX} printable characters"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(project: &str, role: &str) -> GrantLine {
        GrantLine { project: project.into(), role: role.into() }
    }

    /// The one test of this binary that installs node tokens (once per process), under names no other test uses.
    #[test]
    fn each_node_of_a_process_gets_its_own_token() {
        let (m, e) = (Principal::Master("unit-node-m".into()), Principal::Executor("unit-node-e".into()));
        install_nodes(&[m.clone(), e.clone()]).unwrap();
        let (tm, te) = (node_token_of(&m).unwrap(), node_token_of(&e).unwrap());
        assert_ne!(tm, te);
        assert!(tm.starts_with(TOKEN_PREFIX) && bearer(format!("Bearer {tm}").as_bytes()) == Ok(tm));
        assert_eq!((node_of(tm), node_of(te)), (Some(m.clone()), Some(e)));
        assert_eq!(node_of("foreman_0000"), None);
        assert_eq!(node_token_of(&Principal::Executor("another".into())), None);
        assert!(install_nodes(&[m]).is_err(), "once per process");
        // A node's calls carry its token (production; the simulation says who calls in its own entry).
        let r = crate::rpc::identity::Identity::master("unit-node-m").request(());
        let sent = r.metadata().get(crate::rpc::identity::AUTHORIZATION_KEY).map(|v| v.to_str().unwrap().to_owned());
        if cfg!(madsim) {
            assert_eq!(sent, None);
        } else {
            assert_eq!(sent, Some(format!("Bearer {tm}")));
        }
    }

    #[test]
    fn only_masters_and_executors_get_node_tokens() {
        let e = install_nodes(&[Principal::user("ann")]).unwrap_err();
        assert!(e.contains("only masters and executors"), "{e}");
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("foreman-tokens-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("tokens")
    }

    #[test]
    fn added_tokens_are_found_with_their_grants_and_only_their_hash_is_written() {
        let path = temp("add");
        let a = add(&path, "alice", &[grant("team-a", "read")]).unwrap();
        let b = add(&path, "ops", &[grant("*", "admin")]).unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64, "{a}");
        assert_ne!(a, b);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a) && !text.contains(&a[TOKEN_PREFIX.len()..]), "the token itself is not stored");
        assert!(text.contains(&hex(&sha256(&a))), "{text}");
        let tokens = read_file("--file", &path).unwrap();
        let alice = tokens.lookup(&a).unwrap();
        assert_eq!(alice.wire(), "user/alice team-a=read");
        assert_eq!(tokens.lookup(&b).unwrap().wire(), "user/ops *=admin");
        assert_eq!(tokens.lookup("foreman_nope"), None);
        assert_eq!(tokens.grants_of("alice").len(), 1);
        assert!(tokens.grants_of("bob").is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused_with_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("loose");
        add(&path, "alice", &[grant("a", "read")]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_file("--auth-tokens", &path).unwrap_err();
        assert!(e.contains("a tokens file must be readable by its owner only") && e.contains("chmod 600"), "{e}");
        let e = add(&path, "bob", &[grant("a", "read")]).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn bad_input_is_refused_precisely() {
        let path = temp("bad");
        for (name, grants, want) in [
            ("a b", vec![grant("a", "read")], "a user's name"),
            ("alice", vec![], "at least one grant"),
            ("alice", vec![grant("Team", "read")], "project \"Team\" is not valid"),
            ("alice", vec![grant("a", "root")], "\"root\" is not a role"),
        ] {
            let e = add(&path, name, &grants).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(!path.exists(), "nothing written for a refused token");
        for (text, want) in [
            ("{\"name\":\"a\"}", "line 1: missing field"),
            (
                "\n{\"name\":\"a\",\"sha256\":\"xy\",\"grants\":[{\"project\":\"a\",\"role\":\"read\"}]}",
                "line 2: sha256",
            ),
            ("not json", "line 1"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert_eq!(Tokens::parse("\n\n").unwrap(), Tokens::default());
    }

    #[test]
    fn the_file_is_read_again_when_it_changes() {
        let path = temp("reload");
        let a = add(&path, "alice", &[grant("a", "read")]).unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert!(file.current().unwrap().lookup(&a).is_some());
        let b = add(&path, "bob", &[grant("b", "submit")]).unwrap();
        assert_eq!(file.current().unwrap().lookup(&b).unwrap().wire(), "user/bob b=submit");
        std::fs::write(&path, "broken\n").unwrap();
        assert!(file.current().unwrap_err().contains("line 1"), "a broken file refuses every token");
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer foreman_x"), Ok("foreman_x"));
        assert!(bearer(b"Basic abc").is_err());
        assert!(bearer(b"Bearer ").is_err());
        assert!(bearer("Bearer é".as_bytes()).is_err());
        assert!(bearer(format!("Bearer {}", "x".repeat(TOKEN_MAX + 1)).as_bytes()).is_err());
    }
}
