//! `https://` for the http sink: a receiver behind TLS whose certificate
//! comes from a CA made here (rcgen). Trusted through the sink's `ca_file`,
//! it gets every output; with another CA's file, the handshake fails,
//! nothing is delivered and the sink's `last_error` names the untrusted
//! certificate. A `ca_file` the server cannot read is refused at PUT.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use sluice_blackbox_tests::{wait_for, StoreKind};

use super::receiver::{Mode, Receiver};
use super::{assert_same_ids, chain_spec, ingest, output_ids, page_view, sink_status, start, wait_delivered};

/// A certificate authority of the test's own.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("the CA certificate") }
    }

    /// The CA's certificate in a PEM file under `dir`.
    fn write_pem(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.issuer.pem()).expect("write the CA file");
        path
    }

    /// A TLS server configuration whose certificate, for 127.0.0.1, this CA signed.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("a key");
        let certificate = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params").signed_by(&key, &self.issuer).expect("signed");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .expect("the server certificate");
        Arc::new(config)
    }
}

fn https_sink(url: &str, ca_file: &Path) -> Value {
    json!({"name": "hook", "kind": "http", "url": url, "ca_file": ca_file, "batch_max": 200})
}

/// A receiver over TLS with a certificate from the CA in `ca_file` gets
/// every output, each once per delivery.
fn https_receiver_trusted_through_ca_file_gets_every_output(store: StoreKind) {
    let server = start(store);
    let dir = tempfile::tempdir().expect("a directory");
    let ca = TestCa::new("Sluice test CA");
    let hook = Receiver::start_tls(Mode::Accept, ca.server_config());
    assert!(hook.url.starts_with("https://127.0.0.1:"), "{}", hook.url);
    server.put_pipeline("web", &chain_spec(json!([https_sink(&hook.url, &ca.write_pem(dir.path(), "ca.pem"))])));
    ingest(&server, "web", &(0..1000).map(page_view).collect::<Vec<_>>(), 250);
    let outputs = output_ids(&server, "web", 800);
    let s = wait_delivered(&server, "web", "hook", 800, Duration::from_secs(60));
    assert_eq!((s["failed"].clone(), s["last_error"].clone()), (json!(0), Value::Null), "{s}");
    let got: BTreeSet<String> = hook.ids().into_iter().collect();
    assert_same_ids(&got, &outputs, "every output reached the HTTPS receiver");
}
sluice_blackbox_tests::on_both_stores!(https_receiver_trusted_through_ca_file_gets_every_output);

/// A receiver whose certificate another CA signed: the handshake fails, the
/// receiver never sees a request, nothing is delivered, and `last_error`
/// says the certificate is not trusted (retried, not dead-lettered yet).
fn untrusted_certificate_delivers_nothing_and_says_why(store: StoreKind) {
    let server = start(store);
    let dir = tempfile::tempdir().expect("a directory");
    let (theirs, ours) = (TestCa::new("The receiver's CA"), TestCa::new("Another CA"));
    let hook = Receiver::start_tls(Mode::Accept, theirs.server_config());
    server.put_pipeline("web", &chain_spec(json!([https_sink(&hook.url, &ours.write_pem(dir.path(), "other-ca.pem"))])));
    ingest(&server, "web", &(0..100).map(page_view).collect::<Vec<_>>(), 100);
    output_ids(&server, "web", 80);
    let s = wait_for("the handshake's error", Duration::from_secs(30), || {
        let s = sink_status(&server, "web", "hook");
        s["last_error"].is_string().then_some(s)
    });
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("TLS handshake failed") && error.contains("certificate") && error.contains("UnknownIssuer"), "{s}");
    assert!(!error.contains("127.0.0.1"), "no URL in the error: {error}");
    assert_eq!((s["delivered"].clone(), s["lag"].clone()), (json!(0), json!(80)), "{s}");
    assert_eq!((hook.requests(), hook.ids().len()), (0, 0), "no request got through");
    assert!(server.dlq("web").is_empty(), "retried, not dead-lettered (10 tries take ~20 s)");
}
sluice_blackbox_tests::on_both_stores!(untrusted_certificate_delivers_nothing_and_says_why);

/// `ca_file` is checked at PUT: a file the server cannot read, or one with
/// no certificate in it, is refused naming the field.
fn unreadable_ca_file_is_refused(store: StoreKind) {
    let server = start(store);
    let dir = tempfile::tempdir().expect("a directory");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    for (path, want) in [(dir.path().join("missing.pem"), "cannot read the CA file"), (not_pem, "holds no PEM certificate")] {
        let (status, body) = server.put_json("/v1/pipelines/bad", &chain_spec(json!([https_sink("https://127.0.0.1:1/in", &path)])));
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("sinks[0].ca_file") && message.contains(want), "{want}: {body}");
    }
}
sluice_blackbox_tests::on_both_stores!(unreadable_ca_file_is_refused);
