//! The fleet CA and certificates: saved, loaded, never silently replaced, and the serial a
//! gateway certificate carries.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sunfleet_engine::ids::Serial;
use sunfleet_ingest::tls::{self, FleetCa, ServerIdentity};

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[test]
fn a_saved_ca_loads_and_signs_gateways_that_name_their_serial() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FleetCa::generate("test CA").unwrap();
    ca.save(dir.path()).unwrap();
    let error = ca.save(dir.path()).unwrap_err();
    assert!(error.to_string().contains("never replaced"), "{error}");

    let loaded = FleetCa::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let serial = Serial::new(121_900_000_042).unwrap();
    let gateway = loaded.issue_gateway(serial).unwrap();
    assert_eq!(
        tls::gateway_serial(&der(&gateway.cert_pem)).unwrap(),
        serial
    );

    let server = loaded.issue_server(&["localhost".into()]).unwrap();
    let error = tls::gateway_serial(&der(&server.cert_pem)).unwrap_err();
    assert!(
        error.to_string().contains("not a gateway serial"),
        "{error}"
    );
}

#[test]
fn the_server_identity_is_created_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (first, created) = ServerIdentity::load_or_create(dir.path(), &names).unwrap();
    assert!(created);
    let (second, created) = ServerIdentity::load_or_create(dir.path(), &names).unwrap();
    assert!(!created);
    assert_eq!(first.ca_pem, second.ca_pem);
    assert_eq!(first.server.cert_pem, second.server.cert_pem);
    tls::server_config(&second).unwrap();

    std::fs::write(dir.path().join(tls::SERVER_CERT_FILE), "not a certificate").unwrap();
    let error = ServerIdentity::load_or_create(dir.path(), &names).unwrap_err();
    assert!(error.to_string().contains("server.pem"), "{error}");
}
