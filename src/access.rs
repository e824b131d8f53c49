//! Access rules and rate limits by peer identity, as a [`ServerInterceptor`]: which
//! identities (an mTLS SPIFFE ID, certificate CN, DNS or URI SAN, "any authenticated peer")
//! may call which services and methods, and how often each identity may call them. Rules
//! come from a JSON file that is reloaded when it changes, without dropping calls: a call is
//! judged once, when it arrives, by the rules of that moment.
//!
//! ```json
//! {
//!   "rules": [
//!     { "methods": ["/billing.Billing/Refund"],
//!       "allow": ["spiffe://prod/ns/billing/sa/admin"] },
//!     { "methods": ["billing.Billing/*"],
//!       "allow": ["authenticated"],
//!       "rate_limit": { "per_second": 50, "burst": 10 } },
//!     { "methods": ["*"], "allow": ["any"] }
//!   ]
//! }
//! ```
//!
//! - `methods`: full method paths (`/pkg.Service/Method`, the leading `/` optional), a
//!   whole service (`pkg.Service/*`), or everything (`*`).
//! - `allow`: `spiffe://...` (the peer's SPIFFE ID), `uri:...` (any URI SAN), `cn:NAME` (the
//!   subject's common name), `dns:NAME` (any DNS SAN), `authenticated` (any peer whose
//!   certificate the server verified), `any` (every caller, plaintext ones included).
//! - `rate_limit`: a token bucket per identity, `per_second` calls on average with bursts of
//!   `burst` (default: one second's worth).
//!
//! The first rule whose `methods` match a call decides it; a call no rule matches is
//! refused. A refused call ends with `PERMISSION_DENIED`, one over its rate with
//! `RESOURCE_EXHAUSTED`; the handler never runs, and metrics interceptors see the code.
//! - `uid:N`: a client on a unix socket whose process runs as user id N, as the kernel
//!   recorded it when it connected (`SO_PEERCRED`). Only for connections grpcore accepted
//!   itself ([`listener`](crate::listener), [`Server::add_connection`](crate::Server::add_connection)):
//!   the core passes no credentials up for unix ports it binds, so there `uid:` matches
//!   nobody. The rate-limit identity of such a client is `uid:N` too.
//!
//! ```no_run
//! # let env = grpcore::Environment::new(1);
//! let access = grpcore::access::AccessControl::watch("/etc/myapp/access.json")?;
//! let builder = grpcore::ServerBuilder::new(&env).intercept(access);
//! # Ok::<(), grpcore::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::credentials::AuthContext;
use crate::error::{ConfigErrorKind, Error, InternalErrorKind};
use crate::interceptor::{ServerCallInfo, ServerInterceptor};
use crate::status::{Code, Status};

/// How often a watched rules file is checked for changes.
const POLL: Duration = Duration::from_millis(200);

/// Parsed access rules (see the [module docs](self) for the format).
#[derive(Clone, Debug)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    methods: Vec<Pattern>,
    allow: Vec<Principal>,
    rate: Option<Rate>,
}

#[derive(Clone, Debug, PartialEq)]
enum Pattern {
    Any,
    Service(String),
    Method(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Principal {
    Any,
    Authenticated,
    Spiffe(String),
    Uri(String),
    Cn(String),
    Dns(String),
    Uid(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rate {
    per_second: f64,
    burst: f64,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::config_kind(ConfigErrorKind::Setting, format!("access rules: {what}"))
}

impl AccessRules {
    /// Parses rules from JSON text.
    pub fn from_json(text: &str) -> Result<AccessRules, Error> {
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let list = doc.get("rules").and_then(Value::as_array).ok_or_else(|| bad("a top-level \"rules\" array is required"))?;
        let rules = list.iter().enumerate().map(|(i, r)| Rule::parse(r).map_err(|e| bad(format!("rule {i}: {e}")))).collect::<Result<_, _>>()?;
        Ok(AccessRules { rules })
    }

    /// Reads and parses a rules file.
    pub fn load(path: impl AsRef<Path>) -> Result<AccessRules, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        AccessRules::from_json(&text)
    }

    /// The rule deciding a call to `method`, with its index.
    fn rule_for(&self, method: &str) -> Option<(usize, &Rule)> {
        self.rules.iter().enumerate().find(|(_, r)| r.methods.iter().any(|p| p.matches(method)))
    }
}

impl Rule {
    fn parse(v: &Value) -> Result<Rule, String> {
        let strings = |key: &str| -> Result<Vec<&str>, String> {
            let list = v.get(key).and_then(Value::as_array).ok_or_else(|| format!("\"{key}\" must be an array of strings"))?;
            list.iter().map(|s| s.as_str().ok_or_else(|| format!("\"{key}\" must hold strings, not {s}"))).collect()
        };
        let methods = strings("methods")?.into_iter().map(Pattern::parse).collect::<Result<Vec<_>, _>>()?;
        if methods.is_empty() {
            return Err("\"methods\" is empty".into());
        }
        let allow = strings("allow")?.into_iter().map(Principal::parse).collect::<Result<Vec<_>, _>>()?;
        let rate = match v.get("rate_limit") {
            None | Some(Value::Null) => None,
            Some(r) => {
                let per_second = r.get("per_second").and_then(Value::as_f64).filter(|n| *n > 0.0 && n.is_finite());
                let per_second = per_second.ok_or("rate_limit.per_second must be a positive number")?;
                let burst = match r.get("burst") {
                    None => per_second.max(1.0),
                    Some(b) => b.as_f64().filter(|n| *n >= 1.0 && n.is_finite()).ok_or("rate_limit.burst must be a number >= 1")?,
                };
                Some(Rate { per_second, burst })
            }
        };
        Ok(Rule { methods, allow, rate })
    }

    fn allows(&self, auth: &AuthContext, peer_uid: Option<u32>) -> bool {
        self.allow.iter().any(|p| p.matches(auth, peer_uid))
    }
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        if s == "*" {
            return Ok(Pattern::Any);
        }
        let path = s.strip_prefix('/').unwrap_or(s);
        let Some((service, method)) = path.split_once('/') else {
            return Err(format!("{s:?} is not a method path (/pkg.Service/Method), a service (pkg.Service/*) or *"));
        };
        if service.is_empty() || method.is_empty() || method.contains('/') || (method.contains('*') && method != "*") {
            return Err(format!("{s:?} is not a method path (/pkg.Service/Method), a service (pkg.Service/*) or *"));
        }
        Ok(if method == "*" { Pattern::Service(service.to_string()) } else { Pattern::Method(format!("/{path}")) })
    }

    fn matches(&self, method: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Method(m) => m == method,
            Pattern::Service(s) => method.strip_prefix('/').and_then(|m| m.strip_prefix(s.as_str())).is_some_and(|rest| rest.starts_with('/')),
        }
    }
}

impl Principal {
    fn parse(s: &str) -> Result<Principal, String> {
        let non_empty = |rest: &str, kind: &str| if rest.is_empty() { Err(format!("{kind} needs a value: {s:?}")) } else { Ok(rest.to_string()) };
        Ok(match s {
            "any" => Principal::Any,
            "authenticated" => Principal::Authenticated,
            _ if s.starts_with("spiffe://") => Principal::Spiffe(s.to_string()),
            _ => match s.split_once(':') {
                Some(("uri", rest)) => Principal::Uri(non_empty(rest, "uri:")?),
                Some(("cn", rest)) => Principal::Cn(non_empty(rest, "cn:")?),
                Some(("dns", rest)) => Principal::Dns(non_empty(rest, "dns:")?),
                Some(("uid", rest)) => Principal::Uid(rest.parse().map_err(|_| format!("{s:?}: uid: needs a numeric user id"))?),
                _ => return Err(format!("{s:?} is not a principal (spiffe://..., uri:, cn:, dns:, authenticated, any)")),
            },
        })
    }

    fn matches(&self, auth: &AuthContext, peer_uid: Option<u32>) -> bool {
        match self {
            Principal::Any => return true,
            // The kernel's word (SO_PEERCRED), not a certificate's.
            Principal::Uid(uid) => return peer_uid == Some(*uid),
            _ => {}
        }
        if !auth.peer_is_authenticated() {
            return false;
        }
        match self {
            Principal::Any | Principal::Authenticated => true,
            Principal::Spiffe(id) => auth.peer_spiffe_id() == Some(id.as_str()),
            Principal::Uri(uri) => auth.peer_uris().contains(&uri.as_str()),
            Principal::Cn(cn) => auth.peer_common_name() == Some(cn.as_str()),
            Principal::Dns(name) => auth.peer_dns_names().contains(&name.as_str()),
            Principal::Uid(_) => false,
        }
    }
}

/// The identity a rate limit counts calls against: the SPIFFE ID, else the CN, of an
/// authenticated peer; else its address.
fn identity(auth: &AuthContext, call: &ServerCallInfo) -> String {
    let verified = auth.peer_is_authenticated().then(|| auth.peer_spiffe_id().or_else(|| auth.peer_common_name())).flatten();
    match verified {
        Some(id) => id.to_string(),
        None if call.peer_credentials().is_some() => format!("uid:{}", call.peer_credentials().map_or(0, |c| c.uid)),
        None => {
            // An address without its port: one identity per host.
            let peer = call.peer();
            match peer.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
                _ => peer,
            }
        }
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The rules in force and the buckets of their rate limits.
struct State {
    /// Swapped whole on reload; a call reads the rules of the moment it arrives.
    rules: RwLock<Arc<AccessRules>>,
    /// Per rule index and identity. Emptied on reload (rule indexes change meaning).
    buckets: Mutex<HashMap<(usize, String), Bucket>>,
}

/// Enforces [`AccessRules`] on a server's (or a service's) calls; see the [module
/// docs](self). Cheap to clone: clones share the rules and the rate-limit buckets.
#[derive(Clone)]
pub struct AccessControl {
    state: Arc<State>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl").field("rules", &self.current().rules.len()).finish()
    }
}

impl AccessControl {
    /// Enforces `rules` (change them later with [`replace`](Self::replace)).
    pub fn new(rules: AccessRules) -> AccessControl {
        AccessControl {
            state: Arc::new(State {
                rules: RwLock::new(Arc::new(rules)),
                buckets: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Enforces the rules in the JSON file at `path`, and the file's new content whenever
    /// it changes (checked every 200 ms by a thread that ends with the last clone of the
    /// returned value). A change that does not parse is logged and ignored: the rules in
    /// force stay. Fails if the file cannot be read or parsed now.
    pub fn watch(path: impl Into<PathBuf>) -> Result<AccessControl, Error> {
        let path = path.into();
        let control = AccessControl::new(AccessRules::load(&path)?);
        let state = Arc::downgrade(&control.state);
        let seen = stamp(&path);
        std::thread::Builder::new()
            .name("grpcore-access-watch".into())
            .spawn(move || watch_loop(path, state, seen))
            .map_err(|e| Error::internal_kind(InternalErrorKind::Other, format!("cannot start the access rules watcher: {e}")).with_source(e))?;
        Ok(control)
    }

    /// Puts `rules` in force from the next call on (calls already admitted are not judged
    /// again). Rate-limit buckets start full again.
    pub fn replace(&self, rules: AccessRules) {
        *self.state.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
        self.state.buckets.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn current(&self) -> Arc<AccessRules> {
        self.state.rules.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Judges one call.
    fn check(&self, call: &ServerCallInfo) -> Result<(), Status> {
        let rules = self.current();
        let method = call.method();
        let Some((index, rule)) = rules.rule_for(method) else {
            return Err(Status::new(Code::PermissionDenied, format!("no access rule covers {method}")));
        };
        let auth = call.auth_context();
        let peer_uid = call.peer_credentials().map(|c| c.uid);
        if !rule.allows(&auth, peer_uid) {
            let who = identity(&auth, call);
            return Err(Status::new(Code::PermissionDenied, format!("{who} may not call {method}")));
        }
        if let Some(rate) = rule.rate {
            let who = identity(&auth, call);
            let now = Instant::now();
            let mut buckets = self.state.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            let bucket = buckets.entry((index, who)).or_insert(Bucket { tokens: rate.burst, last: now });
            if !bucket.take(rate, now) {
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!("over the rate limit of {} calls per second for {method}", rate.per_second),
                ));
            }
        }
        Ok(())
    }
}

impl ServerInterceptor for AccessControl {
    fn on_start(&self, call: &mut ServerCallInfo) -> impl std::future::Future<Output = Result<(), Status>> + Send {
        std::future::ready(self.check(call))
    }
}

/// What tells a file's versions apart: modification time, length and inode (a rename over
/// it changes the inode even within one mtime tick).
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn watch_loop(path: PathBuf, state: Weak<State>, mut seen: Option<(SystemTime, u64, u64)>) {
    loop {
        std::thread::sleep(POLL);
        let Some(state) = state.upgrade() else { return };
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match AccessRules::load(&path) {
            Ok(rules) => {
                log::info!("access rules reloaded from {} ({} rules)", path.display(), rules.rules.len());
                AccessControl { state }.replace(rules);
            }
            Err(e) => log::error!("{e}; the rules in force stay"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::Any);
        assert_eq!(Pattern::parse("a.B/*").unwrap(), Pattern::Service("a.B".into()));
        assert_eq!(Pattern::parse("a.B/C").unwrap(), Pattern::Method("/a.B/C".into()));
        assert_eq!(Pattern::parse("/a.B/C").unwrap(), Pattern::Method("/a.B/C".into()));
        for bad in ["a.B", "/a.B/", "a.B/C/D", "a.B/C*", "/"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert!(Pattern::Service("a.B".into()).matches("/a.B/C"));
        assert!(!Pattern::Service("a.B".into()).matches("/a.Bc/C"));
        assert!(!Pattern::Method("/a.B/C".into()).matches("/a.B/CD"));
    }

    #[test]
    fn principals_and_rules() {
        assert_eq!(Principal::parse("cn:x").unwrap(), Principal::Cn("x".into()));
        assert_eq!(Principal::parse("spiffe://t/a").unwrap(), Principal::Spiffe("spiffe://t/a".into()));
        assert!(Principal::parse("cn:").is_err());
        assert_eq!(Principal::parse("uid:1000").unwrap(), Principal::Uid(1000));
        assert!(Principal::parse("uid:root").unwrap_err().contains("numeric"));
        assert!(Principal::parse("someone").is_err());
        let rules = AccessRules::from_json(
            r#"{"rules": [{"methods": ["a.B/C"], "allow": ["any"]}, {"methods": ["a.B/*"], "allow": ["authenticated"], "rate_limit": {"per_second": 2}}]}"#,
        )
        .unwrap();
        assert_eq!(rules.rule_for("/a.B/C").map(|r| r.0), Some(0));
        assert_eq!(rules.rule_for("/a.B/D").map(|r| r.0), Some(1));
        assert_eq!(rules.rules[1].rate, Some(Rate { per_second: 2.0, burst: 2.0 }));
        assert!(rules.rule_for("/x.Y/Z").is_none());
        for bad in [
            "",
            "{}",
            r#"{"rules": [{"methods": [], "allow": ["any"]}]}"#,
            r#"{"rules": [{"methods": ["*"]}]}"#,
            r#"{"rules": [{"methods": ["*"], "allow": ["any"], "rate_limit": {"per_second": 0}}]}"#,
            r#"{"rules": [{"methods": ["*"], "allow": ["any"], "rate_limit": {"per_second": 1, "burst": 0.5}}]}"#,
        ] {
            assert!(AccessRules::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let rate = Rate { per_second: 10.0, burst: 2.0 };
        let t0 = Instant::now();
        let mut b = Bucket { tokens: rate.burst, last: t0 };
        assert!(b.take(rate, t0) && b.take(rate, t0));
        assert!(!b.take(rate, t0), "the burst is spent");
        assert!(!b.take(rate, t0 + Duration::from_millis(50)), "half a token");
        assert!(b.take(rate, t0 + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(rate, later) && b.take(rate, later) && !b.take(rate, later));
    }
}
