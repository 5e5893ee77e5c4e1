//! `foreman tls init`: a cluster CA, and a key pair and certificate for each process of a small cluster.
//!
//! Each certificate names its process in the SAN URI `foreman://<cluster>/<role>/<name>` (what the callee believes,
//! [`crate::rpc::tls`]) and carries DNS/IP SANs for the hosts given (the names clients dial), so one certificate
//! serves a process both as a server and as a client. Files are written owner-only (0600) and never overwritten.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::core::auth::Principal;
use crate::rpc::tls::{set_validity, write_private, Ca};

/// What to make.
#[derive(Clone, Debug, clap::Args)]
pub struct InitFlags {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The cluster name (the masters' --cluster); every certificate names it.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Master names (each master's --name), comma separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub masters: Vec<String>,
    /// Executor names (each executor's --name), comma separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub executors: Vec<String>,
    /// User names, comma separated: certificates for the CLI.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub users: Vec<String>,
    /// Host names and IP addresses the processes are dialled at, comma separated [default: 127.0.0.1,localhost].
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Also an etcd CA of its own in DIR/etcd/: etcd's server certificate (for --hosts; etcd's --cert-file,
    /// --key-file, --trusted-ca-file) and foreman's client certificate for etcd (common name `foreman`, the etcd user
    /// a client certificate stands for).
    #[arg(long)]
    pub etcd: bool,
}

/// The common name of foreman's etcd client certificate: with etcd's `--client-cert-auth` and authentication on, the
/// etcd user the certificate stands for.
pub const ETCD_CLIENT_USER: &str = "foreman";

/// Writes the CA and the certificates; returns what to print (the flags each process needs).
pub fn init(flags: &InitFlags) -> Result<String, String> {
    if let Some(problem) = crate::core::ids::cluster_name_problem(&flags.cluster) {
        return Err(format!("--cluster: {problem}"));
    }
    let mut who: Vec<Principal> = vec![];
    for (flag, names, make) in [
        ("--masters", &flags.masters, Principal::Master as fn(String) -> Principal),
        ("--executors", &flags.executors, Principal::Executor),
        ("--users", &flags.users, |n: String| Principal::user(&n)),
    ] {
        for n in names {
            let p = make(n.trim().to_owned());
            // The same rule as a SAN URI's name, so that every certificate made here is one a peer accepts.
            Principal::parse(&p.to_string()).map_err(|e| format!("{flag}: {e}"))?;
            if who.contains(&p) {
                return Err(format!("{flag}: {p} is given twice"));
            }
            who.push(p);
        }
    }
    if who.is_empty() && !flags.etcd {
        return Err("nothing to make: give --masters, --executors, --users or --etcd".to_owned());
    }
    let hosts: Vec<String> = if flags.hosts.is_empty() {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        flags.hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect()
    };

    // Every file first, so that nothing is written when one already exists.
    let dir = &flags.dir;
    let mut files = vec![];
    if !who.is_empty() {
        files.extend([dir.join("ca.pem"), dir.join("ca-key.pem")]);
    }
    for p in &who {
        let (cert, key) = file_names(dir, p);
        files.push(cert);
        files.push(key);
    }
    if flags.etcd {
        files.extend(ETCD_FILES.iter().map(|f| dir.join("etcd").join(f)));
    }
    if let Some(f) = files.iter().find(|f| f.exists()) {
        return Err(format!("{} exists: refusing to overwrite it (use another --dir, or remove it)", f.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("--dir {}: cannot create: {e}", dir.display()))?;
    let mut out = String::new();
    if flags.etcd {
        out.push_str(&etcd_init(&dir.join("etcd"), &hosts)?);
    }
    if who.is_empty() {
        return Ok(out);
    }

    let ca = Ca::new(&format!("foreman {} CA", flags.cluster))?;
    write_private(&dir.join("ca.pem"), ca.cert_pem())?;
    write_private(&dir.join("ca-key.pem"), ca.key_pem())?;

    let _ = writeln!(out, "wrote the CA of cluster {} to {}; keep ca-key.pem offline", flags.cluster, dir.display());
    let _ =
        writeln!(out, "each process's flags (with its usual --addr, --etcd, --join; the CLI's work with any command):");
    for p in &who {
        let (cert, key) = ca.issue(&flags.cluster, p, &hosts)?;
        let (cert_file, key_file) = file_names(dir, p);
        write_private(&cert_file, &cert)?;
        write_private(&key_file, &key)?;
        let name_flag = match p {
            Principal::Master(n) => format!("foreman master --cluster {} --name {n}", flags.cluster),
            Principal::Executor(n) => format!("foreman executor --name {n}"),
            Principal::User { .. } => "foreman cluster leader".to_owned(),
            Principal::Anonymous => String::new(),
        };
        let _ = writeln!(
            out,
            "{name_flag} --tls-ca {} --tls-cert {} --tls-key {}",
            dir.join("ca.pem").display(),
            cert_file.display(),
            key_file.display()
        );
    }
    Ok(out)
}

/// The files of `--etcd`, in DIR/etcd/.
const ETCD_FILES: [&str; 6] = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"];

/// An etcd CA of its own (so that no foreman certificate, a user's included, is an etcd client), etcd's server
/// certificate for `hosts` and foreman's client certificate; returns what to print.
fn etcd_init(dir: &Path, hosts: &[String]) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let fail = |what: &str, e: rcgen::Error| format!("cannot make {what}: {e}");
    let ca = Ca::new("foreman etcd CA")?;
    write_private(&dir.join("ca.pem"), ca.cert_pem())?;
    write_private(&dir.join("ca-key.pem"), ca.key_pem())?;
    // etcd's certificate also serves it as a client of itself (its gRPC gateway), hence client auth too.
    for (stem, names, cn, usages) in [
        (
            "server",
            hosts.to_vec(),
            "etcd",
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        ),
        ("client", vec![], ETCD_CLIENT_USER, vec![ExtendedKeyUsagePurpose::ClientAuth]),
    ] {
        let mut params = CertificateParams::new(names).map_err(|e| fail(stem, e))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        set_validity(&mut params);
        let key = KeyPair::generate().map_err(|e| fail(stem, e))?;
        let cert = params.signed_by(&key, ca.issuer()).map_err(|e| fail(stem, e))?;
        write_private(&dir.join(format!("{stem}.pem")), &cert.pem())?;
        write_private(&dir.join(format!("{stem}-key.pem")), &key.serialize_pem())?;
    }
    let f = |name: &str| dir.join(name).display().to_string();
    let mut out = String::new();
    let _ = writeln!(out, "wrote an etcd CA and certificates to {}; keep ca-key.pem offline", dir.display());
    let _ = writeln!(
        out,
        "etcd --cert-file {} --key-file {} --client-cert-auth --trusted-ca-file {} \\\n    \
         --listen-client-urls https://HOST:2379 --advertise-client-urls https://HOST:2379 ...",
        f("server.pem"),
        f("server-key.pem"),
        f("ca.pem")
    );
    let _ = writeln!(
        out,
        "foreman master|executor --etcd https://HOST:2379 --etcd-ca {} --etcd-cert {} --etcd-key {}",
        f("ca.pem"),
        f("client.pem"),
        f("client-key.pem")
    );
    Ok(out)
}

fn file_names(dir: &Path, p: &Principal) -> (PathBuf, PathBuf) {
    let stem = p.to_string().replace('/', "-");
    (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dir: &Path) -> InitFlags {
        InitFlags {
            dir: dir.to_owned(),
            cluster: "c1".into(),
            masters: vec!["m1".into()],
            executors: vec!["e1".into(), "e2".into()],
            users: vec!["admin".into()],
            hosts: vec![],
            etcd: false,
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("foreman-tls-init-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A certificate's SANs as text: DNS names, IP addresses, URIs.
    fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
        use x509_parser::extensions::GeneralName;
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::URI(u) => u.to_string(),
                GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                    Ok(v4) => std::net::IpAddr::from(v4).to_string(),
                    Err(_) => format!("{b:?}"),
                },
                other => other.to_string(),
            })
            .collect()
    }

    fn der_of(path: &Path) -> Vec<u8> {
        let pem = std::fs::read(path).unwrap();
        x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
    }

    #[test]
    fn the_chain_verifies_and_each_certificate_names_its_process() {
        let dir = temp_dir("chain");
        let printed = init(&flags(&dir)).unwrap();
        assert!(printed.contains("foreman executor --name e2 --tls-ca"), "{printed}");
        let admin = format!("foreman cluster leader --tls-ca {}", dir.join("ca.pem").display());
        assert!(printed.contains(&admin), "{printed}");
        let ca_der = der_of(&dir.join("ca.pem"));
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        ca.verify_signature(None).expect("the CA is self-signed");
        for (file, who) in [
            ("master-m1.pem", Principal::Master("m1".into())),
            ("executor-e1.pem", Principal::Executor("e1".into())),
            ("executor-e2.pem", Principal::Executor("e2".into())),
            ("user-admin.pem", Principal::user("admin")),
        ] {
            let der = der_of(&dir.join(file));
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            cert.verify_signature(Some(ca.public_key())).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(crate::rpc::tls::principal_of_cert(&der, "c1").unwrap(), who, "{file}");
            assert!(crate::rpc::tls::principal_of_cert(&der, "c2").is_err(), "{file}: another cluster");
            let names = sans(&cert);
            let uri = crate::rpc::tls::san_uri("c1", &who);
            assert_eq!(names, ["127.0.0.1", "localhost", uri.as_str()], "{file}");
            // And the file loads as a process's TLS, with its key.
            let stem = file.trim_end_matches(".pem");
            let key = dir.join(format!("{stem}-key.pem"));
            let tls = crate::rpc::tls::Tls::load(Some(&dir.join("ca.pem")), Some(&dir.join(file)), Some(&key))
                .unwrap()
                .unwrap();
            assert_eq!(tls.principal(), &who);
            assert_eq!(tls.cluster(), "c1");
        }
        // A certificate of another CA does not verify against this one.
        let other = temp_dir("other");
        init(&flags(&other)).unwrap();
        let der = der_of(&other.join("executor-e1.pem"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.verify_signature(Some(ca.public_key())).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[test]
    fn hosts_given_are_the_sans() {
        let dir = temp_dir("hosts");
        let mut f = flags(&dir);
        f.hosts = vec!["10.0.0.7".into(), "m1.example.com".into()];
        init(&f).unwrap();
        let der = der_of(&dir.join("master-m1.pem"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(sans(&cert), ["10.0.0.7", "m1.example.com", "foreman://c1/master/m1"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("perm");
        init(&flags(&dir)).unwrap();
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            count += 1;
        }
        assert_eq!(count, 2 + 2 * 4);
        let before = std::fs::read(dir.join("executor-e1.pem")).unwrap();
        let e = init(&flags(&dir)).unwrap_err();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read(dir.join("executor-e1.pem")).unwrap(), before);
        // Another process's key is refused at start.
        let e = crate::rpc::tls::Tls::load(
            Some(&dir.join("ca.pem")),
            Some(&dir.join("executor-e1.pem")),
            Some(&dir.join("executor-e2-key.pem")),
        )
        .unwrap_err();
        assert!(e.contains("is not the key of --tls-cert"), "{e}");
        // A key made readable by others is refused at start, with the fix.
        let key = dir.join("executor-e1-key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::rpc::tls::Tls::load(Some(&dir.join("ca.pem")), Some(&dir.join("executor-e1.pem")), Some(&key))
            .unwrap_err();
        assert!(e.contains("--tls-key") && e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_written() {
        let dir = temp_dir("bad");
        let mut f = flags(&dir);
        f.executors = vec!["e1".into(), "e1".into()];
        assert!(init(&f).unwrap_err().contains("given twice"));
        let mut f = flags(&dir);
        f.executors = vec!["has space".into()];
        assert!(init(&f).unwrap_err().contains("--executors"));
        let mut f = flags(&dir);
        (f.masters, f.executors, f.users) = (vec![], vec![], vec![]);
        assert!(init(&f).unwrap_err().contains("nothing to make"));
        assert!(!dir.exists());
    }

    #[test]
    fn etcd_certificates_have_a_ca_of_their_own() {
        let dir = temp_dir("etcd");
        let mut f = flags(&dir);
        (f.masters, f.executors, f.users, f.etcd) = (vec![], vec![], vec![], true);
        let printed = init(&f).unwrap();
        assert!(printed.contains("--client-cert-auth --trusted-ca-file"), "{printed}");
        assert!(!dir.join("ca.pem").exists(), "no cluster CA without processes");
        let etcd = dir.join("etcd");
        let ca_der = der_of(&etcd.join("ca.pem"));
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        for (file, names, cn) in
            [("server.pem", vec!["127.0.0.1", "localhost"], "etcd"), ("client.pem", vec![], "foreman")]
        {
            let der = der_of(&etcd.join(file));
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            cert.verify_signature(Some(ca.public_key())).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got: Vec<String> = match cert.subject_alternative_name().unwrap() {
                Some(_) => sans(&cert),
                None => vec![],
            };
            assert_eq!(got, names, "{file}");
            let common = cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
            assert_eq!(common, cn, "{file}");
        }
        // Each key is its certificate's, owner-only.
        for stem in ["server", "client"] {
            let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(etcd.join(format!("{stem}-key.pem"))).unwrap());
            let der = der_of(&etcd.join(format!("{stem}.pem")));
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.unwrap().public_key_raw(), "{stem}");
        }
        // With processes too, the cluster CA is another one; a second run overwrites nothing.
        let mut f = flags(&dir);
        f.etcd = true;
        assert!(init(&f).unwrap_err().contains("refusing to overwrite"));
        let both = temp_dir("etcd-both");
        let mut f = flags(&both);
        f.etcd = true;
        init(&f).unwrap();
        assert_ne!(der_of(&both.join("ca.pem")), der_of(&both.join("etcd").join("ca.pem")));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&both);
    }
}
