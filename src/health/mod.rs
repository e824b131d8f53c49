//! The standard gRPC health service, `grpc.health.v1.Health`, and a client for it.
//!
//! A [`HealthReporter`] holds the status of the server as a whole (the service name `""`)
//! and of each service the program reports on; its [`service`](HealthReporter::service)
//! serves them to any health client: `Check` answers the status now (`NOT_FOUND` for a
//! service nobody reported on), `Watch` streams the status now and then every change.
//! Register that service like any other, and the server's shutdown tells the world first:
//!
//! ```no_run
//! use std::time::Duration;
//! use grpcore::health::{HealthReporter, ServingStatus};
//! use grpcore::{Environment, ServerBuilder};
//!
//! let env = Environment::new(1);
//! let health = HealthReporter::new(); // "" is SERVING
//! health.set_status("helloworld.Greeter", ServingStatus::Serving);
//! let server = ServerBuilder::new(&env)
//!     .register_service(health.service())
//!     // .register_service(greeter_grpc::service(...))
//!     .bind("127.0.0.1:50051")
//!     .build()
//!     .unwrap();
//! // Later, when a dependency goes away:
//! health.set_status("helloworld.Greeter", ServingStatus::NotServing);
//! // On shutdown every status turns NOT_SERVING and watchers are told before the
//! // listeners close (the lame-duck phase), then calls in flight get their grace.
//! server.shutdown(Duration::from_secs(5)).wait().unwrap();
//! ```
//!
//! **Lame duck.** The service returned by [`HealthReporter::service`] carries a
//! [shutdown hook](crate::Service::on_shutdown): when the server it is registered with
//! starts [shutting down](crate::Server::shutdown), every status the reporter holds turns
//! `NOT_SERVING` (later changes are ignored until [`resume`](HealthReporter::resume)) and
//! the shutdown waits (at most its grace period) until every `Watch` call has been sent
//! that, and only then closes the listeners; set
//! [`ServerBuilder::lame_duck_period`](crate::ServerBuilder::lame_duck_period) to keep
//! accepting calls a while longer for load balancers that poll `Check`. Once the server
//! refuses calls the `Watch` calls end with `UNAVAILABLE`, so they do not hold up the
//! shutdown. So the server learns about its health service by registering it: nothing else
//! to attach. Use one reporter per server; a reporter whose service is registered with
//! several servers goes `NOT_SERVING` as soon as the first of them shuts down.
//!
//! **Clients.** [`HealthClient`] is the typed stub (`check(..)`, `watch(..)`) and works
//! against any server that implements the protocol. For the load balancer of a channel to
//! skip backends that report `NOT_SERVING`, see
//! [`ChannelBuilder::health_check`](crate::ChannelBuilder::health_check).
//!
//! The messages and stubs are grpcore-compiler's output for grpcore's statement of the
//! protocol (`src/health/proto/`), committed in `src/health/generated/` and kept in step by
//! `compiler/tests/committed.rs`; the service carries its descriptors, so reflection
//! describes it.

mod generated {
    include!("generated/mod.rs");
}
use self::generated::grpc::health::v1 as pb;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::StreamExt;

use crate::server::context::ServerContext;
use crate::server::streaming::ServerSink;
use crate::status::{Code, Status};
use crate::Service;

pub use pb::health_check_response::ServingStatus;
pub use pb::health_grpc;
pub use pb::health_grpc::HealthClient;
pub use pb::{HealthCheckRequest, HealthCheckResponse};

/// The health service's full name, `grpc.health.v1.Health`.
pub const SERVICE_NAME: &str = health_grpc::SERVICE_NAME;

/// Sets the statuses a health service reports, from anywhere in the program. Clones share
/// the same statuses.
///
/// A service name is the full name of a gRPC service (`package.Service`, as in its
/// generated module's `SERVICE_NAME`), or `""` for the server as a whole; any other string
/// works too, as a name that health clients ask about. A name never set is unknown:
/// `Check` fails with `NOT_FOUND`, `Watch` reports `SERVICE_UNKNOWN` until it is set.
#[derive(Clone)]
pub struct HealthReporter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HealthReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("HealthReporter")
            .field("statuses", &state.statuses)
            .field("watchers", &state.watchers.len())
            .field("lame_duck", &state.lame_duck)
            .finish()
    }
}

impl Default for HealthReporter {
    fn default() -> Self {
        HealthReporter::new()
    }
}

impl HealthReporter {
    /// A reporter whose server as a whole (`""`) is `SERVING`, with no other service known
    /// (as grpc-go's health server starts).
    pub fn new() -> HealthReporter {
        let reporter = HealthReporter {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                progress: Condvar::new(),
            }),
        };
        reporter.set_status("", ServingStatus::Serving);
        reporter
    }

    /// The `grpc.health.v1.Health` service serving this reporter's statuses, to pass to
    /// [`ServerBuilder::register_service`](crate::ServerBuilder::register_service). It turns
    /// every status `NOT_SERVING` when its server starts shutting down (see the
    /// [module documentation](self)).
    pub fn service(&self) -> Service {
        let lame = self.clone();
        let refusing = self.clone();
        health_grpc::service(HealthService {
            shared: self.shared.clone(),
        })
        .on_shutdown(move |deadline| {
            lame.enter_lame_duck();
            lame.shared.wait_sent(deadline);
        })
        .on_refusing_calls(move || refusing.shared.end_watches())
    }

    /// Sets the status of `service` (`""`: the server as a whole); every `Watch` of it is
    /// sent the new status if it differs from the last one sent. Ignored, with a log line,
    /// while the reporter is a [lame duck](Self::enter_lame_duck).
    pub fn set_status(&self, service: &str, status: ServingStatus) {
        let mut state = self.shared.lock();
        if state.lame_duck {
            log::info!("health: {service:?} stays NOT_SERVING (shutting down): {} ignored", status.as_str_name());
            return;
        }
        state.set(service, status);
    }

    /// Forgets `service`: `Check` fails with `NOT_FOUND` again and its watchers are sent
    /// `SERVICE_UNKNOWN`. Ignored while the reporter is a lame duck.
    pub fn clear_status(&self, service: &str) {
        let mut state = self.shared.lock();
        if state.lame_duck {
            return;
        }
        state.statuses.remove(service);
        state.notify(service, ServingStatus::ServiceUnknown);
    }

    /// The status of `service` now; `None` for a service never set (or cleared).
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.shared.lock().statuses.get(service).copied()
    }

    /// Turns every known status `NOT_SERVING` and ignores later changes until
    /// [`resume`](Self::resume): what a server's shutdown does to the reporter whose
    /// service it serves (grpc-go's `Shutdown`). Call it yourself to drain a server
    /// without stopping it.
    pub fn enter_lame_duck(&self) {
        let mut state = self.shared.lock();
        let names: Vec<String> = state.statuses.keys().cloned().collect();
        for name in names {
            state.set(&name, ServingStatus::NotServing);
        }
        state.lame_duck = true;
    }

    /// Leaves the lame-duck state: every known status turns `SERVING` and changes are
    /// accepted again (grpc-go's `Resume`).
    pub fn resume(&self) {
        let mut state = self.shared.lock();
        state.lame_duck = false;
        let names: Vec<String> = state.statuses.keys().cloned().collect();
        for name in names {
            state.set(&name, ServingStatus::Serving);
        }
    }
}

/// What the reporters and the service's handlers share.
struct Shared {
    state: Mutex<State>,
    /// Notified when a watcher has sent a status or ended (the lame-duck wait).
    progress: Condvar,
}

#[derive(Default)]
struct State {
    statuses: HashMap<String, ServingStatus>,
    watchers: HashMap<u64, Watcher>,
    next_watcher: u64,
    lame_duck: bool,
}

/// One `Watch` call in progress.
struct Watcher {
    service: String,
    /// The last status queued for it: a status equal to it is not queued again.
    last: ServingStatus,
    /// How many statuses were queued, and how many of them the call has sent.
    queued: u64,
    sent: u64,
    /// Where its statuses go. Unbounded so that a change never waits and is never lost
    /// (only equal consecutive statuses are merged): a watcher far behind holds at most the
    /// changes it has not been sent yet.
    updates: mpsc::UnboundedSender<ServingStatus>,
}

impl State {
    fn set(&mut self, service: &str, status: ServingStatus) {
        self.statuses.insert(service.to_string(), status);
        self.notify(service, status);
    }

    /// Queues `status` for every watcher of `service` that was last given another one.
    fn notify(&mut self, service: &str, status: ServingStatus) {
        for watcher in self.watchers.values_mut().filter(|w| w.service == service) {
            watcher.push(status);
        }
    }
}

impl Watcher {
    fn push(&mut self, status: ServingStatus) {
        if self.last == status {
            return;
        }
        self.last = status;
        if self.updates.unbounded_send(status).is_ok() {
            self.queued += 1;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watcher of `service`, its current status already queued.
    fn add_watcher(&self, service: String) -> (u64, mpsc::UnboundedReceiver<ServingStatus>) {
        let (tx, rx) = mpsc::unbounded();
        let mut state = self.lock();
        let status = state.statuses.get(&service).copied().unwrap_or(ServingStatus::ServiceUnknown);
        let id = state.next_watcher;
        state.next_watcher += 1;
        let mut watcher = Watcher {
            service,
            // Not a status the protocol sends, so the first push always goes out.
            last: ServingStatus::Unknown,
            queued: 0,
            sent: 0,
            updates: tx,
        };
        if status == ServingStatus::Unknown {
            // A service explicitly set to UNKNOWN is still reported once.
            watcher.queued = 1;
            let _ = watcher.updates.unbounded_send(status);
        } else {
            watcher.push(status);
        }
        state.watchers.insert(id, watcher);
        (id, rx)
    }

    fn sent_one(&self, id: u64) {
        if let Some(w) = self.lock().watchers.get_mut(&id) {
            w.sent += 1;
        }
        self.progress.notify_all();
    }

    fn remove_watcher(&self, id: u64) {
        self.lock().watchers.remove(&id);
        self.progress.notify_all();
    }

    /// Waits until every watcher has sent all it was given, or until `deadline`.
    fn wait_sent(&self, deadline: Instant) {
        let mut state = self.lock();
        while state.watchers.values().any(|w| w.sent < w.queued) {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                let behind = state.watchers.values().filter(|w| w.sent < w.queued).count();
                log::warn!("health: {behind} watcher(s) not yet sent NOT_SERVING when the server stopped waiting");
                return;
            };
            state = self.progress.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Ends every `Watch` call (each sends what it was given, then `UNAVAILABLE`).
    fn end_watches(&self) {
        for watcher in self.lock().watchers.values_mut() {
            watcher.updates.close_channel();
        }
    }
}

/// Removes its watcher when the `Watch` handler ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.remove_watcher(self.id);
    }
}

/// The implementation of the generated `Health` trait over a reporter's statuses.
struct HealthService {
    shared: Arc<Shared>,
}

impl health_grpc::Health for HealthService {
    async fn check(&self, request: HealthCheckRequest, _ctx: ServerContext) -> Result<HealthCheckResponse, Status> {
        match self.shared.lock().statuses.get(&request.service) {
            Some(status) => Ok(HealthCheckResponse { status: *status as i32 }),
            None => Err(Status::not_found(format!("unknown service {:?}", request.service))),
        }
    }

    async fn watch(
        &self,
        request: HealthCheckRequest,
        mut sink: ServerSink<HealthCheckResponse>,
        ctx: ServerContext,
    ) -> Result<(), Status> {
        let (id, mut updates) = self.shared.add_watcher(request.service);
        let _registration = Registration { shared: &self.shared, id };
        let mut cancelled = ctx.cancelled();
        loop {
            let next = match select(updates.next(), &mut cancelled).await {
                Either::Left((next, _)) => next,
                Either::Right(((), _)) => return Err(Status::new(Code::Cancelled, "the watch was cancelled")),
            };
            let Some(status) = next else {
                return Err(Status::unavailable("the server is shutting down"));
            };
            if let Err(e) = sink.send(HealthCheckResponse { status: status as i32 }).await {
                // The call has ended (cancelled, or past its deadline): nobody to tell.
                return Err(Status::new(Code::Cancelled, format!("the watch ended: {e}")));
            }
            self.shared.sent_one(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_lame_duck() {
        let health = HealthReporter::new();
        assert_eq!(health.status(""), Some(ServingStatus::Serving));
        assert_eq!(health.status("a.B"), None);
        health.set_status("a.B", ServingStatus::Serving);
        health.enter_lame_duck();
        assert_eq!(health.status(""), Some(ServingStatus::NotServing));
        assert_eq!(health.status("a.B"), Some(ServingStatus::NotServing));
        health.set_status("a.B", ServingStatus::Serving);
        assert_eq!(health.status("a.B"), Some(ServingStatus::NotServing), "ignored while a lame duck");
        health.resume();
        assert_eq!(health.status("a.B"), Some(ServingStatus::Serving));
        health.clear_status("a.B");
        assert_eq!(health.status("a.B"), None);
    }

    #[test]
    fn a_watcher_gets_every_change_in_order_and_equal_ones_once() {
        let health = HealthReporter::new();
        let (id, mut rx) = health.shared.add_watcher("a.B".into());
        health.set_status("a.B", ServingStatus::Serving);
        health.set_status("a.B", ServingStatus::Serving);
        health.set_status("a.B", ServingStatus::NotServing);
        health.set_status("a.B", ServingStatus::Serving);
        health.set_status("other", ServingStatus::NotServing);
        health.clear_status("a.B");
        health.shared.end_watches();
        let seen: Vec<_> = futures_executor::block_on(async { (&mut rx).collect::<Vec<_>>().await });
        use ServingStatus::*;
        assert_eq!(seen, vec![ServiceUnknown, Serving, NotServing, Serving, ServiceUnknown]);
        assert_eq!(health.shared.lock().watchers[&id].queued, 5);
    }
}
