//! The admin services in one call: channelz, server reflection, health (with the reporter
//! you give) and, where wanted, a switch for the core's trace flags, either on the server that serves the application or on an
//! address of their own (a port or a unix socket), as Dropbox's Courier keeps its debug
//! endpoints apart from the traffic.
//!
//! ```no_run
//! use grpcore::admin::Admin;
//! # let env = grpcore::Environment::new(1);
//! // On the application's server, with its health:
//! let health = grpcore::health::HealthReporter::new();
//! let server = Admin::new()
//!     .health(&health)
//!     .register(grpcore::ServerBuilder::new(&env))
//!     .bind("0.0.0.0:50051")
//!     .build()?;
//! // Or apart, on a unix socket only local operators reach, with the trace switch:
//! let admin = Admin::new().trace_switch(true).serve(&env, "unix:/run/myapp/admin.sock")?;
//! # Ok::<(), grpcore::Error>(())
//! ```
//!
//! With the `xds` feature the admin services include the process's xDS client
//! configuration twice: CSDS (`envoy.service.status.v3.ClientStatusDiscoveryService`, see
//! [`xds::csds_service`](crate::xds::csds_service)), binary, for CSDS tools such as
//! grpcdebug; and `grpcore.admin.v1.XdsConfig/Get`, the same as JSON
//! ([`xds::client_config_json`](crate::xds::client_config_json)) in a string, for a
//! person with grpcurl: `grpcurl -plaintext ADDRESS grpcore.admin.v1.XdsConfig/Get`
//! (reflection describes it; the envoy types of CSDS are not in this crate's
//! reflection, so grpcurl cannot decode CSDS itself). The admin server serves gRPC only:
//! there is no HTTP page.
//!
//! Channelz reports on every channel and server of the process wherever it is served;
//! reflection describes the services of the server it is on (on an admin server: the admin
//! services themselves). The trace switch (`grpcore.admin.v1.CoreTrace/Set`) turns the
//! core's tracers on and off at run time; their lines go to the [`log`] crate under the
//! target `grpc_core`. Whoever reaches the admin address can use it: serve it where only
//! operators do.

mod generated {
    include!("generated/mod.rs");
}

use crate::env::Environment;
use crate::health::HealthReporter;
use crate::error::Error;
use crate::server::{Server, ServerBuilder};
use crate::server::service::Service;
use crate::{ServerContext, Status};

/// The trace switch's messages (`grpcore.admin.v1`) and its client
/// (`core_trace_grpc::CoreTraceClient`).
pub use self::generated::grpcore::admin::v1;
use self::v1::core_trace_grpc::{self, CoreTrace};
use self::v1::{SetTraceRequest, SetTraceResponse};

/// Which admin services to serve (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct Admin {
    trace_switch: bool,
    health: Option<HealthReporter>,
}

impl Admin {
    /// Channelz and reflection; no health service, no trace switch.
    pub fn new() -> Admin {
        Admin::default()
    }

    /// Also serve `grpc.health.v1.Health` from `reporter` (on an admin server of its own,
    /// it answers for the application: probes then need not reach the traffic port).
    pub fn health(mut self, reporter: &HealthReporter) -> Admin {
        self.health = Some(reporter.clone());
        self
    }

    /// Also serve `grpcore.admin.v1.CoreTrace`, the switch for the core's trace flags.
    pub fn trace_switch(mut self, enable: bool) -> Admin {
        self.trace_switch = enable;
        self
    }

    /// The admin services as services to register on a server of `env` (reflection aside:
    /// it is a setting of the server, see [`register`](Self::register)).
    pub fn services(&self, env: &Environment) -> Vec<Service> {
        let mut services = vec![crate::channelz::service()];
        if let Some(health) = &self.health {
            services.push(health.service());
        }
        if self.trace_switch {
            services.push(core_trace_grpc::service(Switch(env.clone())));
        }
        #[cfg(feature = "xds")]
        {
            services.push(crate::xds::csds_service(env));
            services.push(v1::xds_config_grpc::service(XdsJson(env.clone())));
        }
        services
    }

    /// Adds the admin services to `builder`, the application's server, with reflection
    /// for all of its services.
    pub fn register(&self, builder: ServerBuilder) -> ServerBuilder {
        let services = self.services(builder.env());
        services.into_iter().fold(builder, ServerBuilder::register_service).add_reflection()
    }

    /// Serves the admin services on `address` (`host:port`, `unix:path`...) with a server
    /// of their own on `env`. Keep the returned server: dropping it stops serving.
    pub fn serve(&self, env: &Environment, address: &str) -> Result<Server, Error> {
        self.register(ServerBuilder::new(env)).bind(address).build()
    }
}

/// The trace switch service; holding the environment keeps the core up.
struct Switch(Environment);

impl CoreTrace for Switch {
    async fn set(&self, request: SetTraceRequest, _ctx: ServerContext) -> Result<SetTraceResponse, Status> {
        let mut unknown = Vec::new();
        let switches = request.enable.into_iter().map(|n| (n, true)).chain(request.disable.into_iter().map(|n| (n, false)));
        for (name, enabled) in switches {
            match self.0.set_core_trace(&name, enabled) {
                Ok(()) => log::info!("core tracer {name} turned {}", if enabled { "on" } else { "off" }),
                Err(_) => unknown.push(name),
            }
        }
        Ok(SetTraceResponse { unknown })
    }
}

/// `grpcore.admin.v1.XdsConfig`: the CSDS dump as JSON; holding the environment keeps the
/// core up.
#[cfg(feature = "xds")]
struct XdsJson(Environment);

#[cfg(feature = "xds")]
impl v1::xds_config_grpc::XdsConfig for XdsJson {
    async fn get(&self, _request: v1::GetXdsConfigRequest, _ctx: ServerContext) -> Result<v1::GetXdsConfigResponse, Status> {
        match crate::xds::client_config_json(&self.0) {
            Ok(json) => Ok(v1::GetXdsConfigResponse { json }),
            Err(e) => Err(Status::new(crate::Code::Internal, format!("the core's xDS dump: {e}"))),
        }
    }
}
