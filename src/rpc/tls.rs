//! Mutual TLS on every gRPC link, production build (issue 15, step 2).
//!
//! A process with `[tls]` configured (`ca`, `cert`, `key`: PEM files, as `foreman tls init` writes them) serves gRPC
//! over TLS, checking a client's certificate against that CA when it presents one (a client without one, a user
//! with a token, is anonymous until its token says who it is), and opens every channel with its own certificate, checking
//! the server's against the CA. Its certificate names it: the SAN URI `foreman://<cluster>/<role>/<name>`
//! ([`san_uri`]); a peer's is read the same way ([`principal_of_cert`]) and is who the callee believes calls
//! ([`crate::rpc::identity`]), refused if it names another cluster.
//!
//! One process, one identity: [`install`] sets it once at start (`foreman master`, `executor`, the CLI), and every
//! channel ([`crate::rpc::connect`]) and server uses it. Without it, everything is plain text as before. The
//! simulation build compiles the same code (madsim's transport accepts the configuration and ignores it) and never
//! installs one: its nodes say who they are in metadata.

use std::path::Path;
use std::sync::OnceLock;

// why: madsim's transport accepts tonic's own TLS types without re-exporting them.
#[cfg(madsim)]
use real_tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};
#[cfg(not(madsim))]
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};

use crate::core::auth::Principal;

/// The scheme of the SAN URI that names a foreman process.
pub const SAN_SCHEME: &str = "foreman://";

/// The SAN URI of `principal` in `cluster`: `foreman://<cluster>/<role>/<name>`.
pub fn san_uri(cluster: &str, principal: &Principal) -> String {
    format!("{SAN_SCHEME}{cluster}/{principal}")
}

/// How long the certificates made here are valid: ten years, for a cluster CA and its processes (no rotation
/// yet).
const VALID_DAYS: i64 = 3650;

/// Sets the validity of a certificate about to be made: from an hour ago (clocks differ a little) for ten years.
pub fn set_validity(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
}

/// A certificate authority that issues the certificates of a cluster's processes (`foreman tls init`, and
/// `foreman standalone`'s own).
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    /// A new CA (an ECDSA P-256 key, path length 0) with `common_name`.
    pub fn new(common_name: &str) -> Result<Ca, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let fail = |what: &str, e: rcgen::Error| format!("cannot make {what}: {e}");
        let key = KeyPair::generate().map_err(|e| fail("the CA key", e))?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params);
        let cert = params.self_signed(&key).map_err(|e| fail("the CA certificate", e))?;
        let key_pem = key.serialize_pem();
        Ok(Ca { cert_pem: cert.pem(), key_pem, issuer: rcgen::Issuer::new(params, key) })
    }

    /// The CA of a certificate and its key, as [`Ca::cert_pem`] and [`Ca::key_pem`] gave them.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, String> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("not a private key: {e}"))?;
        let der = first_der(cert_pem.as_bytes())?;
        {
            use rcgen::PublicKeyData as _;
            let spki =
                x509_parser::parse_x509_certificate(&der).map(|(_, c)| c.tbs_certificate.subject_pki.raw.to_vec());
            if spki.map_err(|e| format!("not an X.509 certificate: {e}"))? != key.subject_public_key_info() {
                return Err("the CA key is not the CA certificate's".to_owned());
            }
        }
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| format!("not a CA certificate: {e}"))?;
        Ok(Ca { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// What signs certificates of other shapes (etcd's).
    pub fn issuer(&self) -> &rcgen::Issuer<'static, rcgen::KeyPair> {
        &self.issuer
    }

    /// A certificate and key (PEM) for `principal` of `cluster`, naming it in its SAN URI ([`san_uri`]) and with
    /// DNS/IP SANs for `hosts`, for server and client authentication.
    pub fn issue(&self, cluster: &str, principal: &Principal, hosts: &[String]) -> Result<(String, String), String> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
        let uri = san_uri(cluster, principal);
        let fail = |e: rcgen::Error| format!("cannot make {uri}: {e}");
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(fail)?;
        let ia5 = uri.clone().try_into().map_err(fail)?;
        params.subject_alt_names.push(SanType::URI(ia5));
        params.distinguished_name.push(DnType::CommonName, principal.to_string());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params);
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A process's TLS material, read and checked at start.
#[derive(Clone, Debug)]
pub struct Tls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    cluster: String,
    me: Principal,
    /// Whether channels present `cert` as the client's certificate (a process whose nodes say who they are with
    /// node tokens, `foreman standalone`, serves with it but calls without it).
    present: bool,
}

impl Tls {
    /// Reads the three files (`None` when none is set: plain text). Refuses: only some of the three set, a file
    /// that cannot be read or holds no PEM certificate, a key file readable by group or others, a certificate
    /// without a `foreman://` SAN URI. Each error names the flag and the file.
    pub fn load(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Tls>, String> {
        let (ca, cert, key) = match (ca, cert, key) {
            (None, None, None) => return Ok(None),
            (Some(ca), Some(cert), Some(key)) => (ca, cert, key),
            _ => {
                let missing: Vec<&str> = [("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)]
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(f, _)| *f)
                    .collect();
                return Err(format!(
                    "TLS needs all three of --tls-ca, --tls-cert and --tls-key (tls.ca, tls.cert, tls.key) or none; \
                     missing: {}",
                    missing.join(", ")
                ));
            }
        };
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))
        };
        check_private("--tls-key", key)?;
        let (ca_pem, cert_pem, key_pem) = (read("--tls-ca", ca)?, read("--tls-cert", cert)?, read("--tls-key", key)?);
        first_der(&ca_pem).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        let der = first_der(&cert_pem).map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        let (cluster, me) = name_of_cert(&der).map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        let key_text = String::from_utf8_lossy(&key_pem);
        if !key_text.contains("PRIVATE KEY-----") {
            return Err(format!("--tls-key {}: no PEM private key in the file", key.display()));
        }
        // A PKCS#8 key (what `tls init` writes) must be the certificate's; a key of another form is left to the
        // transport, which reads more forms than this check does.
        if let Ok(pair) = rcgen::KeyPair::from_pem(&key_text) {
            use rcgen::PublicKeyData as _;
            let ours =
                x509_parser::parse_x509_certificate(&der).map(|(_, c)| c.tbs_certificate.subject_pki.raw.to_vec());
            if ours.is_ok_and(|spki| spki != pair.subject_public_key_info()) {
                return Err(format!(
                    "--tls-key {} is not the key of --tls-cert {}: give the key made with that certificate",
                    key.display(),
                    cert.display()
                ));
            }
        }
        Ok(Some(Tls { ca: ca_pem, cert: cert_pem, key: key_pem, cluster, me, present: true }))
    }

    /// A server's TLS made in memory (`foreman standalone`: its CA and a certificate issued at start): servers use
    /// the certificate; channels trust the CA and present no certificate (its nodes say who they are with node
    /// tokens, [`crate::rpc::identity::install_node_tokens`]).
    pub fn serving_only(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Tls, String> {
        let der = first_der(cert_pem.as_bytes())?;
        let (cluster, me) = name_of_cert(&der)?;
        Ok(Tls {
            ca: ca_pem.as_bytes().to_vec(),
            cert: cert_pem.as_bytes().to_vec(),
            key: key_pem.as_bytes().to_vec(),
            cluster,
            me,
            present: false,
        })
    }

    /// The cluster this process's certificate names; a peer must name the same.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Who this process's certificate says it is.
    pub fn principal(&self) -> &Principal {
        &self.me
    }

    /// A server that checks a client's certificate against the CA (mutual TLS) when it presents one, and also
    /// accepts a client without one: a user with a bearer token (the CLI needs only the CA and a token). Such a
    /// client is anonymous until its token says who it is, and every call but a user's with a token is refused
    /// to it ([`crate::rpc::identity`]).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
    }

    /// A client that presents this process's certificate (if it has one) and trusts only servers with one from
    /// the CA.
    pub fn client(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        if self.cert.is_empty() || !self.present {
            return config;
        }
        config.identity(TlsIdentity::from_pem(&self.cert, &self.key))
    }

    /// A client's TLS with the CA only and no certificate of its own (a user who says who it is with a token).
    pub fn ca_only(ca: &Path) -> Result<Tls, String> {
        let pem = std::fs::read(ca).map_err(|e| format!("--tls-ca {}: cannot read: {e}", ca.display()))?;
        first_der(&pem).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        Ok(Tls { ca: pem, cert: vec![], key: vec![], cluster: String::new(), me: Principal::Anonymous, present: false })
    }

    /// Checks that this process's certificate is for `role`/`name` (and, when given, `cluster`): a process whose
    /// configured name differs from its certificate's would be refused by every peer checking ownership.
    pub fn expect(&self, principal: &Principal, cluster: Option<&str>) -> Result<(), String> {
        if &self.me != principal {
            return Err(format!(
                "--tls-cert names {} but this process is {principal}: use the certificate made for it, or set its \
                 name to match (--name)",
                self.me
            ));
        }
        if let Some(c) = cluster {
            if c != self.cluster {
                return Err(format!(
                    "--tls-cert is for cluster {:?} but this master's cluster is {c:?} (--cluster)",
                    self.cluster
                ));
            }
        }
        Ok(())
    }
}

static INSTALLED: OnceLock<Tls> = OnceLock::new();

/// Makes `tls` this process's identity for every channel and server. Once per process; a second call is refused.
pub fn install(tls: Tls) -> Result<(), String> {
    INSTALLED.set(tls).map_err(|_| "TLS is already set up in this process".to_owned())
}

/// This process's TLS identity, if [`install`]ed.
pub fn installed() -> Option<&'static Tls> {
    INSTALLED.get()
}

/// Start-up: reads the files (CA, certificate, key), lets `check` hold the certificate to this process's role and name, and (in
/// production) installs it. Whether TLS is on. The simulation build reads and checks the same files but installs
/// nothing: its transport ignores TLS, and its nodes share one process.
pub fn set_up(
    [ca, cert, key]: [Option<&Path>; 3],
    check: impl FnOnce(&Tls) -> Result<(), String>,
) -> Result<bool, String> {
    let Some(tls) = Tls::load(ca, cert, key)? else { return Ok(false) };
    check(&tls)?;
    if !cfg!(madsim) {
        install(tls)?;
    }
    Ok(true)
}

/// Start-up of a client with the CA alone (the CLI with a token): reads and checks it, and (in production)
/// installs it.
pub fn set_up_ca_only(ca: &Path) -> Result<(), String> {
    let tls = Tls::ca_only(ca)?;
    if !cfg!(madsim) {
        install(tls)?;
    }
    Ok(())
}

/// A gRPC server builder: mutual TLS when this process has TLS, plain text otherwise.
pub fn server_builder() -> Result<tonic::transport::Server, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder();
    match installed() {
        Some(t) => builder.tls_config(t.server()),
        None => Ok(builder),
    }
}

/// Writes a new file readable by its owner only (a key, a certificate, a token); refuses an existing one.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates `dir` and its missing parents, those it creates readable by their owner only (0700).
pub fn create_private_dirs(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Refuses a private key file that group or others may read (`chmod 600`).
fn check_private(flag: &str, path: &Path) -> Result<(), String> {
    check_owner_only(flag, path, "a private key")
}

/// Refuses a secret file (`what`, for the message) that group or others may read, saying to `chmod 600` it.
pub(crate) fn check_owner_only(flag: &str, path: &Path, what: &str) -> Result<(), String> {
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

/// The DER of the first certificate in PEM text.
fn first_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    match x509_parser::pem::parse_x509_pem(pem) {
        Ok((_, p)) if p.label == "CERTIFICATE" => Ok(p.contents),
        Ok((_, p)) => Err(format!("the first PEM block is a {:?}, not a CERTIFICATE", p.label)),
        Err(e) => Err(format!("no PEM certificate in the file ({e})")),
    }
}

/// The cluster and principal a certificate (DER) names in its `foreman://` SAN URI.
pub fn name_of_cert(der: &[u8]) -> Result<(String, Principal), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subject alternative names: {e}"))?
        .ok_or_else(|| format!("the certificate has no subject alternative names (needs a {SAN_SCHEME} URI)"))?;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix(SAN_SCHEME) {
                if found.is_some() {
                    return Err(format!("the certificate has more than one {SAN_SCHEME} URI"));
                }
                found = Some(parse_san(rest)?);
            }
        }
    }
    found.ok_or_else(|| format!("the certificate names no {SAN_SCHEME}<cluster>/<role>/<name> URI"))
}

fn parse_san(rest: &str) -> Result<(String, Principal), String> {
    let Some((cluster, who)) = rest.split_once('/') else {
        return Err(format!("{SAN_SCHEME}{rest}: expected {SAN_SCHEME}<cluster>/<role>/<name>"));
    };
    if cluster.is_empty() {
        return Err(format!("{SAN_SCHEME}{rest}: the cluster is empty"));
    }
    let p = Principal::parse(who).map_err(|e| format!("{SAN_SCHEME}{rest}: {e}"))?;
    if p == Principal::Anonymous {
        return Err(format!("{SAN_SCHEME}{rest}: names no one"));
    }
    Ok((cluster.to_owned(), p))
}

/// Who the peer with certificate `der` is, for a process of `cluster`: refused (the message says why) when the
/// certificate names no one or another cluster.
pub fn principal_of_cert(der: &[u8], cluster: &str) -> Result<Principal, String> {
    let (c, p) = name_of_cert(der)?;
    if c != cluster {
        return Err(format!("the peer's certificate is for cluster {c:?}, not {cluster:?}"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_san_uri_names_a_cluster_and_a_principal() {
        assert_eq!(parse_san("c1/executor/e1").unwrap(), ("c1".into(), Principal::Executor("e1".into())));
        assert_eq!(parse_san("c1/master/m-1").unwrap(), ("c1".into(), Principal::Master("m-1".into())));
        assert_eq!(parse_san("c1/user/admin").unwrap(), ("c1".into(), Principal::user("admin")));
        for bad in ["c1", "/executor/e1", "c1/root/x", "c1/executor/", "c1/executor/a b"] {
            assert!(parse_san(bad).is_err(), "{bad}");
        }
        assert_eq!(san_uri("c1", &Principal::Executor("e1".into())), "foreman://c1/executor/e1");
    }

    #[test]
    fn a_process_runs_only_with_its_own_certificate() {
        let tls = Tls {
            ca: vec![],
            cert: vec![],
            key: vec![],
            cluster: "c1".into(),
            me: Principal::Executor("e1".into()),
            present: true,
        };
        tls.expect(&Principal::Executor("e1".into()), None).unwrap();
        let e = tls.expect(&Principal::Executor("e2".into()), None).unwrap_err();
        assert!(e.contains("names executor/e1 but this process is executor/e2"), "{e}");
        assert!(tls.expect(&Principal::Master("e1".into()), None).is_err());
        let e = tls.expect(&Principal::Executor("e1".into()), Some("c2")).unwrap_err();
        assert!(e.contains("cluster \"c1\"") && e.contains("--cluster"), "{e}");
    }

    #[test]
    fn none_or_all_three_files() {
        assert!(Tls::load(None, None, None).unwrap().is_none());
        let e = Tls::load(Some(Path::new("/nonexistent/ca.pem")), None, None).unwrap_err();
        assert!(e.contains("missing: --tls-cert, --tls-key"), "{e}");
    }
}
