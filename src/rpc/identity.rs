//! Who makes a gRPC call, as the callee may believe it, and how a caller says who it is.
//!
//! The simulation build has no TLS (madsim's transport ignores it), so a simulated node says who it is in the
//! [`SIM_IDENTITY_KEY`] metadata entry (`master/NAME`, `executor/NAME`, `user/NAME`, and for a user its grants
//! after a space: `user/NAME team-a=read,*=admin`, [`Principal::wire`]), set on every call it makes
//! ([`Identity::request`], [`Identity::stamp`]), and the callee believes it. The check runs in [`mode`]
//! `Checked` there, so the simulator holds every node to [`crate::core::auth`]'s table, and a rogue node can be
//! given a false identity to show its calls refused.
//!
//! The production build knows who calls only with TLS on ([`crate::rpc::tls`], `[tls]` configured): the caller is
//! the principal its certificate's SAN URI names (a certificate of another cluster is refused `UNAUTHENTICATED`),
//! and the mode is `Checked`; a `user/NAME` certificate carries the grants of the tokens named NAME in the tokens
//! file (none without one). A call with no peer certificate (a CLI with only the CA, the HTTP API, which calls the
//! handlers in process) is the user its bearer token names (`authorization: Bearer <token>`, looked up in the
//! masters' tokens file, [`crate::rpc::tokens`]), or [`Principal::Anonymous`] without one; an unknown token is
//! refused `UNAUTHENTICATED`. Without TLS but with a tokens file the mode is `Users`: users are held to their
//! grants, but masters and executors, which cannot prove who they are without certificates, keep every call but
//! the users'. With neither every caller is anonymous and the mode is `Insecure` (everyone may do everything, as
//! before). A production request that carries the simulation's entry is refused (`UNAUTHENTICATED`): the entry is
//! a claim anyone can write, and must never be trusted there.
//!
//! A follower forwarding a call to the leader says on whose behalf in [`FORWARDED_FOR_KEY`] (the principal with
//! its grants); the leader believes it only from a master's certificate. Without TLS the follower passes the
//! caller's `authorization` entry on instead, and the leader looks the token up itself.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

use crate::core::auth::{authorize, Action, Mode, Principal};
use crate::rpc::status::Reason;

/// The metadata entry a simulated node's calls carry: who it says it is.
pub const SIM_IDENTITY_KEY: &str = "foreman-sim-identity";

/// The metadata entry of a call a master forwards: the principal it forwards for (production, with TLS).
pub const FORWARDED_FOR_KEY: &str = "foreman-forwarded-for";

/// The metadata entry of a user's bearer token.
pub const AUTHORIZATION_KEY: &str = "authorization";

/// How calls are checked in this process: always in the simulation; in production, fully when TLS is on, for
/// users when a tokens file is configured without TLS.
pub fn mode() -> Mode {
    if cfg!(madsim) || crate::rpc::tls::installed().is_some() {
        Mode::Checked
    } else if crate::rpc::tokens::installed().is_some() {
        Mode::Users
    } else {
        Mode::Insecure
    }
}

/// Who a process's own calls say they come from. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    principal: Principal,
}

impl Identity {
    pub fn new(principal: Principal) -> Identity {
        Identity { principal }
    }

    /// A master's calls, by its configured name.
    pub fn master(name: &str) -> Identity {
        Identity::new(Principal::Master(name.to_owned()))
    }

    /// An executor's calls (its own, and those of the job masters and workers it hosts), by its configured name.
    pub fn executor(name: &str) -> Identity {
        Identity::new(Principal::Executor(name.to_owned()))
    }

    /// Calls that say nothing of who makes them (a user's call says it with its token, sent by the caller).
    pub fn anonymous() -> Identity {
        Identity::new(Principal::Anonymous)
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `message` as a request that says who sends it.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        self.stamp(&mut r);
        r
    }

    /// Makes `request` say who sends it: in the simulation, the identity entry; in production, the node's token
    /// when its process gave it one ([`crate::rpc::tokens::install_nodes`], `foreman standalone`), else nothing (a
    /// process with a certificate of its own says who it is with it).
    pub fn stamp<T>(&self, request: &mut Request<T>) {
        if !cfg!(madsim) {
            if let Some(token) = crate::rpc::tokens::node_token_of(&self.principal) {
                if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
                    request.metadata_mut().insert(AUTHORIZATION_KEY, v);
                }
            }
            return;
        }
        if self.principal == Principal::Anonymous {
            return;
        }
        // A principal's text is printable ASCII (its parse checks the name), so it is always a valid value.
        if let Ok(v) = MetadataValue::try_from(self.principal.wire()) {
            request.metadata_mut().insert(SIM_IDENTITY_KEY, v);
        }
    }
}

/// Says on `to` who made `from`: a follower forwarding a call to the leader forwards it on the caller's behalf.
/// In the simulation the caller's identity entry is copied; in production with TLS the caller's principal goes in
/// [`FORWARDED_FOR_KEY`] (believed only from a master's certificate), and the caller's bearer token, if it sent one,
/// goes along (which is what the leader believes without TLS).
pub fn forward<T>(from: &Request<T>, to: &mut MetadataMap) {
    if cfg!(madsim) {
        if let Some(v) = from.metadata().get(SIM_IDENTITY_KEY) {
            to.insert(SIM_IDENTITY_KEY, v.clone());
        }
        return;
    }
    if let Some(v) = from.metadata().get(AUTHORIZATION_KEY) {
        to.insert(AUTHORIZATION_KEY, v.clone());
    }
    if crate::rpc::tls::installed().is_none() {
        return;
    }
    match principal_of(from) {
        Ok(Principal::Anonymous) | Err(_) => {}
        Ok(p) => {
            if let Ok(v) = MetadataValue::try_from(p.wire()) {
                to.insert(FORWARDED_FOR_KEY, v);
            }
        }
    }
}

/// The principal `request` comes from, as this build may believe it.
pub fn principal_of<T>(request: &Request<T>) -> Result<Principal, Status> {
    if !cfg!(madsim) {
        return production_principal_of(request);
    }
    let Some(v) = request.metadata().get(SIM_IDENTITY_KEY) else { return Ok(Principal::Anonymous) };
    let text = v.to_str().map_err(|_| {
        Reason::Unauthenticated
            .status(format!("{SIM_IDENTITY_KEY}: not printable text; send master/NAME, executor/NAME or user/NAME"))
    })?;
    Principal::parse_wire(text).map_err(|e| Reason::Unauthenticated.status(format!("{SIM_IDENTITY_KEY}: {e}")))
}

/// Production: the peer certificate's principal with TLS on, anonymous without; the simulator's entry refused.
fn production_principal_of<T>(request: &Request<T>) -> Result<Principal, Status> {
    if request.metadata().get(SIM_IDENTITY_KEY).is_some() {
        return Err(Reason::Unauthenticated.status(format!(
            "the {SIM_IDENTITY_KEY} header is for the simulator only: a production call must not send it"
        )));
    }
    let tls = crate::rpc::tls::installed();
    let Some(der) = tls.and_then(|_| peer_cert(request)) else { return token_principal_of(request) };
    let cluster = tls.map(|t| t.cluster()).unwrap_or_default();
    let peer = crate::rpc::tls::principal_of_cert(&der, cluster)
        .map_err(|e| Reason::Unauthenticated.status(format!("TLS client certificate refused: {e}")))?;
    let Some(v) = request.metadata().get(FORWARDED_FOR_KEY) else {
        return match peer {
            Principal::User { name, .. } => {
                // A user's certificate says who it is; the tokens file says what it may do.
                let grants = match crate::rpc::tokens::installed() {
                    Some(file) => file.current().map(|t| t.grants_of(&name)).unwrap_or_default(),
                    None => vec![],
                };
                Ok(Principal::User { name, grants })
            }
            peer => Ok(peer),
        };
    };
    if !matches!(peer, Principal::Master(_)) {
        return Err(Reason::Unauthenticated
            .status(format!("{FORWARDED_FOR_KEY} is believed from a master only, and {peer} sent it")));
    }
    let text =
        v.to_str().map_err(|_| Reason::Unauthenticated.status(format!("{FORWARDED_FOR_KEY}: not printable text")))?;
    Principal::parse_wire(text).map_err(|e| Reason::Unauthenticated.status(format!("{FORWARDED_FOR_KEY}: {e}")))
}

/// Production, a call without a peer certificate: the user its bearer token names, or anonymous without one.
fn token_principal_of<T>(request: &Request<T>) -> Result<Principal, Status> {
    let Some(v) = request.metadata().get(AUTHORIZATION_KEY) else { return Ok(Principal::Anonymous) };
    if mode() == Mode::Insecure {
        // Nothing is checked in this process (no TLS, no tokens file): a token changes nothing, and a CLI that
        // sends its default one must not be refused for it.
        return Ok(Principal::Anonymous);
    }
    let token = crate::rpc::tokens::bearer(v.as_bytes()).map_err(|e| Reason::Unauthenticated.status(e))?;
    if let Some(node) = crate::rpc::tokens::node_of(token) {
        return Ok(node);
    }
    let Some(file) = crate::rpc::tokens::installed() else {
        return Err(Reason::Unauthenticated.status(
            "this process takes no tokens: the masters need a tokens file ([auth] tokens, --auth-tokens) for a \
             token to work",
        ));
    };
    let tokens = file.current().map_err(|_| {
        Reason::Unauthenticated.status("the master's tokens file cannot be read right now (its log says why); retry")
    })?;
    tokens.lookup(token).ok_or_else(|| {
        Reason::Unauthenticated.status(
            "the token is not known to this cluster: check the token file the client reads (--token-file, \
             $FOREMAN_TOKEN_FILE, ~/.config/foreman/token); a token comes from `foreman token add`",
        )
    })
}

/// The DER of the peer's leaf certificate, if the call came over TLS with one.
fn peer_cert<T>(request: &Request<T>) -> Option<Vec<u8>> {
    let certs = request.peer_certs()?;
    certs.first().map(|c| c.as_ref().to_vec())
}

/// Checks that the caller of `request` may make `action`: its principal on success, else the refusal to send.
pub fn check<T>(request: &Request<T>, action: &Action) -> Result<Principal, Status> {
    let principal = principal_of(request)?;
    authorize(&principal, action, mode())?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::status::reason_of;

    #[test]
    fn this_build_believes_what_it_should() {
        let plain = Request::new(());
        assert_eq!(principal_of(&plain).unwrap(), Principal::Anonymous);
        let stamped = Identity::executor("e1").request(());
        let mut forged = Request::new(());
        forged.metadata_mut().insert(SIM_IDENTITY_KEY, MetadataValue::from_static("executor/e1"));
        if cfg!(madsim) {
            assert_eq!(mode(), Mode::Checked);
            assert_eq!(principal_of(&stamped).unwrap(), Principal::Executor("e1".into()));
            let mut bad = Request::new(());
            bad.metadata_mut().insert(SIM_IDENTITY_KEY, MetadataValue::from_static("root"));
            let s = principal_of(&bad).unwrap_err();
            assert_eq!(reason_of(&s), Some(Reason::Unauthenticated), "{s:?}");
            let s = check(&plain, &Action::ResignLeader).unwrap_err();
            assert_eq!(s.code(), tonic::Code::Unauthenticated);
            let s = check(&stamped, &Action::ResignLeader).unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (tonic::Code::PermissionDenied, Some(Reason::PermissionDenied)));
        } else {
            // Production: nothing on the wire, everyone allowed, and the simulator's entry refused.
            assert_eq!(mode(), Mode::Insecure);
            assert!(stamped.metadata().get(SIM_IDENTITY_KEY).is_none());
            assert_eq!(check(&plain, &Action::ResignLeader).unwrap(), Principal::Anonymous);
            let s = check(&forged, &Action::ReadCluster).unwrap_err();
            assert_eq!((s.code(), reason_of(&s)), (tonic::Code::Unauthenticated, Some(Reason::Unauthenticated)));
            assert!(s.message().contains("for the simulator only"), "{}", s.message());
        }
    }

    /// Production without TLS or a tokens file: nothing is checked, so a bearer token (a CLI's default one) is
    /// ignored rather than refused, well formed or not.
    #[test]
    fn an_insecure_process_ignores_tokens() {
        if cfg!(madsim) {
            return;
        }
        for value in ["Bearer foreman_x", "Basic eDp5"] {
            let mut r = Request::new(());
            r.metadata_mut().insert(AUTHORIZATION_KEY, MetadataValue::try_from(value).unwrap());
            assert_eq!(check(&r, &Action::ResignLeader).unwrap(), Principal::Anonymous, "{value}");
        }
    }

    /// The simulation's identity carries a user's grants, and a bad grant is refused.
    #[test]
    fn a_simulated_user_carries_its_grants() {
        if !cfg!(madsim) {
            return;
        }
        let mut r = Request::new(());
        r.metadata_mut().insert(SIM_IDENTITY_KEY, MetadataValue::from_static("user/ann a=read,*=submit"));
        assert_eq!(principal_of(&r).unwrap().wire(), "user/ann a=read,*=submit");
        r.metadata_mut().insert(SIM_IDENTITY_KEY, MetadataValue::from_static("user/ann a=root"));
        let s = principal_of(&r).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    }

    #[test]
    fn a_forward_carries_the_callers_identity() {
        let from = Identity::executor("e1").request(());
        let mut to = Request::new(());
        forward(&from, to.metadata_mut());
        if cfg!(madsim) {
            assert_eq!(to.metadata().get(SIM_IDENTITY_KEY).unwrap(), "executor/e1");
        } else {
            // Production without TLS: the caller is anonymous, and nothing is forwarded.
            assert!(to.metadata().is_empty());
        }
        let mut to = Request::new(());
        forward(&Request::new(()), to.metadata_mut());
        assert!(to.metadata().get(SIM_IDENTITY_KEY).is_none());
        assert!(to.metadata().get(FORWARDED_FOR_KEY).is_none());
    }
}
