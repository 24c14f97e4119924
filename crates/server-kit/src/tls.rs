//! TLS settings of the servers and of the gateway's client links: PEM files read once at
//! start, with errors naming the file.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// Server TLS from a certificate chain and key (PEM); with `client_ca`, clients must present
/// a certificate it signed (mutual TLS). `None` when no certificate is configured.
pub fn server(cert: Option<&PathBuf>, key: Option<&PathBuf>, client_ca: Option<&PathBuf>) -> Result<Option<ServerTlsConfig>, String> {
    match (cert, key) {
        (None, None) if client_ca.is_none() => Ok(None),
        (Some(cert), Some(key)) => {
            let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read("TLS certificate", cert)?, read("TLS key", key)?));
            if let Some(ca) = client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(read("client CA certificate", ca)?));
            }
            Ok(Some(tls))
        }
        _ => Err("TLS needs both a certificate and a key (and a client CA only with them)".into()),
    }
}

/// Client TLS for links to backends: the CA that signed their certificates, and optionally
/// this side's certificate and key for mutual TLS. `None` when no CA is configured.
pub fn client(ca: Option<&PathBuf>, cert: Option<&PathBuf>, key: Option<&PathBuf>) -> Result<Option<ClientTlsConfig>, String> {
    let Some(ca) = ca else {
        return if cert.is_some() || key.is_some() { Err("a client certificate needs the backend CA too".into()) } else { Ok(None) };
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("backend CA certificate", ca)?));
    match (cert, key) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read("client certificate", cert)?, read("client key", key)?)),
        (None, None) => {}
        _ => return Err("mutual TLS needs both a client certificate and a key".into()),
    }
    Ok(Some(tls))
}
