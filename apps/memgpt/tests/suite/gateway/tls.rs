//! TLS: the gateway serves TLS, and its links to memory and generator use mutual TLS (both
//! backends require a client certificate from the test CA). Plaintext clients and clients
//! without a certificate are refused.

use super::common;

use memgpt_proto::gateway::v1 as gw;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

struct Pki {
    dir: tempfile::TempDir,
    ca: String,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        for name in ["server", "client"] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { ca: ca.pem(), dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_serves_tls_and_talks_mutual_tls_to_its_backends() {
    let pki = Pki::new();
    let (cert, key, ca) = (pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"));
    let server_tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str(), "--tls-client-ca", ca.as_str()];
    let data = tempfile::tempdir().unwrap();
    let memory = common::memory_with(data.path(), &server_tls);
    let generator = common::generator_with(&server_tls);
    let (ccert, ckey) = (pki.path("client.pem"), pki.path("client.key"));
    let gateway = common::gateway_with(
        "https",
        &[memory.addr],
        &[generator.addr],
        &["--no-auth", "--backend-ca", &ca, "--backend-cert", &ccert, "--backend-key", &ckey, "--tls-cert", &cert, "--tls-key", &key],
    );
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{}", gateway.addr)).unwrap().tls_config(tls.clone()).unwrap();
    let channel = common::serving_on(endpoint, memgpt_gateway::SERVICE_NAME).await;
    let mut client = gw::gateway_client::GatewayClient::new(channel);
    let doc = gw::Document { id: "d".into(), text: "Lake Sorrel freezes every winter.".into(), metadata: Default::default(), ..Default::default() };
    client.remember(gw::RememberRequest { namespace: "tls".into(), documents: vec![doc], warm: false, ..Default::default() }).await.unwrap();
    let found = client.search(gw::SearchRequest { question: "frozen lake".into(), namespaces: vec!["tls".into()], ..Default::default() }).await.unwrap();
    assert_eq!(found.into_inner().citations[0].document_id, "d");

    // A plaintext client gets nowhere with the gateway.
    let plain = Endpoint::from_shared(format!("http://{}", gateway.addr)).unwrap();
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => gw::gateway_client::GatewayClient::new(ch).search(gw::SearchRequest::default()).await.is_err(),
    };
    assert!(refused);
    // A TLS client without a certificate is refused by the memory service.
    let no_identity = Endpoint::from_shared(format!("https://{}", memory.addr)).unwrap().tls_config(tls).unwrap();
    let refused = match no_identity.connect().await {
        Err(_) => true,
        Ok(ch) => memgpt_proto::memory::v1::memory_client::MemoryClient::new(ch)
            .count(memgpt_proto::memory::v1::CountRequest { namespace: "tls".into() })
            .await
            .is_err(),
    };
    assert!(refused, "the memory service must require a client certificate");
}
