//! How a process reaches etcd beyond its endpoints: TLS (the CA etcd's certificate must chain to, and a client
//! certificate when etcd asks for one) and a user of etcd's password authentication.
//!
//! The files are read and checked once, at start, so that a bad one stops the process with the flag and the file
//! named: a CA or certificate without a PEM certificate, a key without a PEM private key, a key or password file
//! that group or others may read (with the `chmod` to run), an empty password. The password never appears in a
//! `Debug` output or a log line.
//!
//! Both builds load the same files; only the production build turns them into etcd-client's TLS options (the
//! simulated etcd has no TLS, and the simulation never configures it).

use std::fmt;
use std::path::Path;

/// The largest certificate or key file read, in bytes.
const PEM_FILE_MAX_BYTES: u64 = 1 << 20;
/// The largest password file read, in bytes.
const PASSWORD_FILE_MAX_BYTES: u64 = 4096;

/// TLS material for etcd, PEM.
#[derive(Clone)]
// why: the simulation loads and checks the same files but has no TLS to hand them to.
#[cfg_attr(madsim, allow(dead_code))]
pub(super) struct EtcdTls {
    /// The CA etcd's server certificate must chain to.
    pub ca: Vec<u8>,
    /// A client certificate and its key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The files and user of a process's `[etcd-client]` settings (`--etcd-*` flags).
#[derive(Clone, Copy, Debug, Default)]
pub struct EtcdFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub user: Option<&'a str>,
    pub password_file: Option<&'a Path>,
}

/// How this process authenticates to etcd and checks etcd's certificate; the default is plain text and no user.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    pub(super) tls: Option<EtcdTls>,
    pub(super) user: Option<(String, String)>,
}

impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl EtcdAccess {
    /// Reads and checks the files `c` names (the configuration's pairing rules were checked when it loaded: a
    /// certificate only with its key and the CA, a user only with a password file). The error names the flag, the
    /// file and what to fix.
    pub fn load(c: &EtcdFiles<'_>) -> Result<EtcdAccess, String> {
        let tls = match c.ca {
            None => None,
            Some(ca) => {
                let ca = read_pem("--etcd-ca", ca, "CERTIFICATE")?;
                let identity = match (c.cert, c.key) {
                    (Some(cert), Some(key)) => {
                        let cert = read_pem("--etcd-cert", cert, "CERTIFICATE")?;
                        check_owner_only("--etcd-key", key, "a private key")?;
                        Some((cert, read_pem("--etcd-key", key, "PRIVATE KEY")?))
                    }
                    _ => None,
                };
                Some(EtcdTls { ca, identity })
            }
        };
        let user = match (c.user, c.password_file) {
            (Some(user), Some(file)) => Some((user.to_owned(), read_password(file)?)),
            _ => None,
        };
        Ok(EtcdAccess { tls, user })
    }

    /// TLS trusting only a CA made on the spot (and thrown away): a handshake with it shows whether a server speaks
    /// TLS, failing at the server's certificate. `None` if the CA cannot be made.
    pub fn trusting_nothing() -> Option<EtcdAccess> {
        let ca = rcgen::generate_simple_self_signed(vec!["foreman-tls-probe".to_owned()]).ok()?;
        Some(EtcdAccess { tls: Some(EtcdTls { ca: ca.cert.pem().into_bytes(), identity: None }), user: None })
    }

    /// What to check when etcd closed the connection of a TLS client without a certificate: under TLS 1.3 a server
    /// checks the client's certificate after the handshake, so a client that has none may see only its connection
    /// closed (or its alert, which [`access_hint`] reads). `None` with a client certificate or without TLS.
    pub fn closed_hint(&self, reason: &str) -> Option<&'static str> {
        match &self.tls {
            Some(EtcdTls { identity: None, .. }) if closed_by_server(reason) => Some(
                "etcd closed the connection after the TLS handshake: if it asks for a client certificate \
                 (--client-cert-auth), give --etcd-cert and --etcd-key",
            ),
            _ => None,
        }
    }

    /// Whether TLS files are loaded.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The etcd user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    /// For logs: what is used, never the password.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "no TLS files",
            Some(EtcdTls { identity: None, .. }) => "TLS (CA only)",
            Some(EtcdTls { identity: Some(_), .. }) => "TLS with a client certificate",
        };
        match self.user() {
            Some(u) => format!("{tls}, user {u}"),
            None => format!("{tls}, no user"),
        }
    }
}

/// Refuses a secret file (`what`: "a private key", "a password file") that group or others may read, with the
/// `chmod` to run (as `rpc::tls` does for the gRPC key: the layers below the processes import only the core).
fn check_owner_only(flag: &str, path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{flag} {}: {what} must be readable by its owner only (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

fn read_limited(flag: &str, path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    let mut bytes = vec![];
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{flag} {}: larger than {max} bytes; is it the right file?", path.display()));
    }
    Ok(bytes)
}

/// A PEM file holding a block whose label ends with `label` (`CERTIFICATE`; `PRIVATE KEY` also matches
/// `EC PRIVATE KEY` and `RSA PRIVATE KEY`).
fn read_pem(flag: &str, path: &Path, label: &str) -> Result<Vec<u8>, String> {
    let bytes = read_limited(flag, path, PEM_FILE_MAX_BYTES)?;
    let found = x509_parser::pem::Pem::iter_from_buffer(&bytes).any(|p| p.is_ok_and(|p| p.label.ends_with(label)));
    if !found {
        let want = if label == "CERTIFICATE" { "PEM certificate" } else { "PEM private key" };
        return Err(format!("{flag} {}: the file holds no {want}", path.display()));
    }
    Ok(bytes)
}

/// The password in `path`: owner-only, UTF-8, one trailing newline dropped, not empty.
fn read_password(path: &Path) -> Result<String, String> {
    let flag = "--etcd-password-file";
    check_owner_only(flag, path, "a password file")?;
    let bytes = read_limited(flag, path, PASSWORD_FILE_MAX_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{flag} {}: the password is not UTF-8", path.display()))?;
    let password = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{flag} {}: the file is empty; write the etcd user's password in it", path.display()));
    }
    Ok(password.to_owned())
}

/// Whether a failure is the server closing the connection (not refusing it, not staying silent): what a plain-text
/// client of a TLS etcd sees, and a TLS 1.3 client whose certificate etcd refused.
pub fn closed_by_server(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    // In words, or as the I/O error's kind in a debug print (`Kind(ConnectionReset)`: real etcd TLS test, CI).
    ["connection closed", "broken pipe", "brokenpipe", "connection reset", "connectionreset"]
        .iter()
        .any(|w| r.contains(w))
}

/// What to check when etcd refused this process at start, from the refusal's text (the error chain of etcd-client
/// and the transport below it); `None` when the refusal says nothing about TLS or credentials (etcd down or slow:
/// the process starts and keeps trying, as without TLS).
pub fn access_hint(reason: &str, tls: bool) -> Option<&'static str> {
    let r = reason.to_ascii_lowercase();
    if r.contains("authentication failed") || r.contains("invalid user id or password") {
        return Some("etcd refused the user: check --etcd-user and the password in --etcd-password-file");
    }
    if r.contains("user name is empty") || r.contains("user name not found") {
        return Some(
            "etcd has authentication on: give --etcd-user and --etcd-password-file (or a client certificate whose \
             common name is an etcd user)",
        );
    }
    if r.contains("permission denied") {
        return Some(
            "the etcd user may not read foreman's keys: grant its role readwrite on the prefix /foreman/<cluster>/",
        );
    }
    if tls {
        if r.contains("unknownissuer") || r.contains("invalid peer certificate") || r.contains("notvalidforname") {
            return Some(
                "etcd's certificate is not trusted: --etcd-ca must be the CA that signed it, and it must name the \
                 host of the endpoint",
            );
        }
        if r.contains("certificate") || r.contains("handshake") || r.contains("alert") {
            return Some(
                "the TLS handshake with etcd failed: check --etcd-ca, and that --etcd-cert/--etcd-key are a client \
                 certificate etcd trusts (its --trusted-ca-file) when it asks for one",
            );
        }
        if r.contains("corrupt message") || r.contains("invalidcontenttype") || r.contains("invalid content type") {
            return Some("etcd answered in plain text: write the endpoints as http://host:port, without TLS files");
        }
    } else if r.contains("h2 protocol error")
        || r.contains("frame with invalid size")
        || r.contains("http2 error")
        || r.contains("answers a tls handshake")
    {
        return Some(
            "etcd may serve TLS: write the endpoints as https://host:port and give --etcd-ca (and --etcd-cert/--etcd-key \
             if etcd asks for a client certificate)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("foreman-etcd-access-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    struct Paths {
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        user: Option<String>,
        password_file: Option<PathBuf>,
    }

    impl Paths {
        fn files(&self) -> EtcdFiles<'_> {
            EtcdFiles {
                ca: self.ca.as_deref(),
                cert: self.cert.as_deref(),
                key: self.key.as_deref(),
                user: self.user.as_deref(),
                password_file: self.password_file.as_deref(),
            }
        }
    }

    fn config(dir: &Path) -> Paths {
        Paths {
            ca: Some(dir.join("ca.pem")),
            cert: Some(dir.join("c.pem")),
            key: Some(dir.join("k.pem")),
            user: Some("foreman".into()),
            password_file: Some(dir.join("pw")),
        }
    }

    #[test]
    fn loads_files_and_keeps_the_password_out_of_debug() {
        let dir = temp_dir("ok");
        write(&dir.join("ca.pem"), CERT, 0o644);
        write(&dir.join("c.pem"), CERT, 0o644);
        write(&dir.join("k.pem"), KEY, 0o600);
        write(&dir.join("pw"), "s3cret pass\n", 0o600);
        let a = EtcdAccess::load(&config(&dir).files()).unwrap();
        assert_eq!(a.user, Some(("foreman".to_owned(), "s3cret pass".to_owned())));
        assert!(a.tls.as_ref().is_some_and(|t| t.identity.is_some()));
        let shown = format!("{a:?}");
        assert_eq!(shown, "TLS with a client certificate, user foreman");
        // CRLF and no newline at all; only one newline is dropped.
        for (text, want) in [("p\r\n", "p"), ("p", "p"), ("p\n\n", "p\n"), (" p \n", " p ")] {
            write(&dir.join("pw"), text, 0o600);
            assert_eq!(read_password(&dir.join("pw")).unwrap(), want, "{text:?}");
        }
        let none = EtcdAccess::load(&EtcdFiles::default()).unwrap();
        assert_eq!(format!("{none:?}"), "no TLS files, no user");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_refused_with_the_flag_and_the_fix() {
        let dir = temp_dir("bad");
        let c = config(&dir);
        let refused = |c: &Paths, words: &[&str]| {
            let e = EtcdAccess::load(&c.files()).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{e:?} should contain {w:?}");
            }
        };
        refused(&c, &["--etcd-ca", "ca.pem", "cannot read"]);
        write(&dir.join("ca.pem"), "not pem", 0o644);
        refused(&c, &["--etcd-ca", "holds no PEM certificate"]);
        write(&dir.join("ca.pem"), CERT, 0o644);
        write(&dir.join("c.pem"), KEY, 0o644);
        refused(&c, &["--etcd-cert", "holds no PEM certificate"]);
        write(&dir.join("c.pem"), CERT, 0o644);
        write(&dir.join("k.pem"), KEY, 0o640);
        let key = dir.join("k.pem").display().to_string();
        #[cfg(unix)]
        refused(&c, &["--etcd-key", "a private key must be readable by its owner only", &format!("chmod 600 {key}")]);
        write(&dir.join("k.pem"), CERT, 0o600);
        refused(&c, &["--etcd-key", "holds no PEM private key"]);
        write(&dir.join("k.pem"), KEY, 0o600);
        write(&dir.join("pw"), "secret\n", 0o644);
        let pw = dir.join("pw").display().to_string();
        #[cfg(unix)]
        refused(&c, &["--etcd-password-file", "a password file must be", &format!("chmod 600 {pw}")]);
        write(&dir.join("pw"), "\n", 0o600);
        refused(&c, &["--etcd-password-file", "empty"]);
        write(&dir.join("pw"), &"x".repeat(5000), 0o600);
        refused(&c, &["--etcd-password-file", "larger than 4096 bytes"]);
        write(&dir.join("pw"), "secret", 0o600);
        assert!(EtcdAccess::load(&c.files()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusals_get_a_hint_and_outages_none() {
        let table: &[(&str, bool, Option<&str>)] = &[
            ("etcdserver: authentication failed, invalid user ID or password", false, Some("--etcd-user")),
            ("etcdserver: user name is empty", true, Some("authentication on")),
            ("etcdserver: permission denied", false, Some("readwrite on the prefix")),
            ("transport error: invalid peer certificate: UnknownIssuer", true, Some("not trusted")),
            ("transport error: received fatal alert: CertificateRequired", true, Some("--etcd-cert")),
            ("transport error: received corrupt message of type InvalidContentType", true, Some("plain text")),
            ("transport error: h2 protocol error: http2 error", false, Some("https://")),
            ("connection closed; etcd answers a TLS handshake: it serves https", false, Some("--etcd-ca")),
            ("transport error: tcp connect error: Connection refused (os error 111)", false, None),
            ("transport error: tcp connect error: Connection refused (os error 111)", true, None),
            ("etcd get did not answer within 2s", true, None),
        ];
        let dir = temp_dir("closed");
        write(&dir.join("ca.pem"), CERT, 0o644);
        write(&dir.join("c.pem"), CERT, 0o644);
        write(&dir.join("k.pem"), KEY, 0o600);
        let mut c = Paths { ca: Some(dir.join("ca.pem")), cert: None, key: None, user: None, password_file: None };
        let closed = "transport error: hyper::Error(Canceled, \"connection closed\")";
        // The server closing the connection, however the transport words it; not a refusal to connect.
        for reason in [
            closed,
            "transport error: hyper::Error(Io, Kind(ConnectionReset))",
            "hyper::Error(Io, Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" })",
            "Connection reset by peer (os error 104)",
        ] {
            assert!(closed_by_server(reason), "{reason}");
        }
        assert!(!closed_by_server("tcp connect error: Connection refused (os error 111)"));
        let ca_only = EtcdAccess::load(&c.files()).unwrap();
        assert!(ca_only.closed_hint(closed).is_some_and(|h| h.contains("--etcd-cert and --etcd-key")));
        assert_eq!(ca_only.closed_hint("Connection refused (os error 111)"), None);
        (c.cert, c.key) = (Some(dir.join("c.pem")), Some(dir.join("k.pem")));
        assert_eq!(EtcdAccess::load(&c.files()).unwrap().closed_hint(closed), None, "with a client certificate");
        assert_eq!(EtcdAccess::default().closed_hint(closed), None, "plain text");
        std::fs::remove_dir_all(&dir).unwrap();
        for (reason, tls, want) in table {
            let got = access_hint(reason, *tls);
            match want {
                None => assert_eq!(got, None, "{reason}"),
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{reason}: {got:?}"),
            }
        }
    }
}
