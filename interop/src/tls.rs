//! TLS for the interop binaries: the built-in test certificates (`certs/`) or the files the
//! flags name.

use std::path::PathBuf;

use grpcore::{Certificate, ChannelCredentials, Identity, ServerCredentials};

use crate::certs_dir;
use crate::flags::Flags;

/// Server credentials from `--tls_cert_file` and `--tls_key_file`, or the built-in
/// `certs/server1.pem` and `certs/server1.key`.
pub fn server_credentials(flags: &Flags) -> Result<ServerCredentials, String> {
    let (cert, key) = match (flags.get("tls_cert_file"), flags.get("tls_key_file")) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (None, None) => (certs_dir().join("server1.pem"), certs_dir().join("server1.key")),
        _ => return Err("--tls_cert_file and --tls_key_file go together".into()),
    };
    let identity = Identity::from_pem_files(&cert, &key)
        .map_err(|e| format!("TLS identity from {} and {}: {e}", cert.display(), key.display()))?;
    ServerCredentials::tls(identity).build().map_err(|e| format!("TLS server credentials: {e}"))
}

/// Channel credentials: roots from `--ca_file`, or the built-in `certs/ca.pem` with
/// `--use_test_ca`, else the core's default roots; `--server_host_override` as the name
/// the server's certificate must carry (and the `:authority`).
pub fn channel_credentials(flags: &Flags) -> Result<ChannelCredentials, String> {
    let mut tls = ChannelCredentials::tls();
    let roots = match flags.get("ca_file") {
        Some(path) => Some(PathBuf::from(path)),
        None if flags.bool("use_test_ca") => Some(certs_dir().join("ca.pem")),
        None => None,
    };
    if let Some(path) = roots {
        let roots = Certificate::from_pem_file(&path).map_err(|e| format!("roots from {}: {e}", path.display()))?;
        tls = tls.root_certificates(roots);
    }
    if let Some(name) = flags.get("server_host_override") {
        tls = tls.server_name_override(name);
    }
    tls.build().map_err(|e| format!("TLS channel credentials: {e}"))
}
