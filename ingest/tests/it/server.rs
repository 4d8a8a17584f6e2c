//! The ingest server over real QUIC on 127.0.0.1: identity, acknowledgements after
//! durability, idempotency, outages, hostile input and bounded memory.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::store::{Store, StoreConfig};
use sunfleet_fixtures::seed::fleet_directory;
use sunfleet_ingest::frame::{self, ErrorCode, Frame};
use sunfleet_ingest::gateway::{GatewayError, GatewayOptions, Outbox, client_config};
use sunfleet_ingest::tls::{self, FleetCa};

use crate::harness::{Harness, batch, stored_rows, test_config, until_ack, until_closed};

fn closed_with(error: &GatewayError) -> Option<ErrorCode> {
    error.close_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_means_the_batch_is_on_disk() {
    let h = Harness::start(2).await;
    let spec = h.spec(0);
    let micros = spec.micros.len();
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    assert_eq!(
        gateway.acked,
        BatchSeq(0),
        "a new gateway starts from nothing"
    );
    for seq in 1..=3 {
        gateway.sender.send_batch(&batch(&spec, seq)).await.unwrap();
    }
    assert_eq!(until_ack(&mut gateway.receiver, 3).await, BatchSeq(3));

    // Copy the WAL as it is on disk at the moment of the ack, as a crash would leave it,
    // and open a second store on the copy: every acknowledged reading is there.
    let crash = tempfile::tempdir().unwrap();
    let wal_copy = crash.path().join("wal");
    std::fs::create_dir_all(&wal_copy).unwrap();
    for entry in std::fs::read_dir(h.dir.path().join("wal")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), wal_copy.join(entry.file_name())).unwrap();
    }
    let recovered = Store::open(
        StoreConfig::for_tests(crash.path()),
        fleet_directory(&h.fleet).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(stored_rows(&recovered).await, 3 * micros);
    assert_eq!(
        recovered.replayed_gateway_seqs().get(&spec.gateway.serial),
        Some(&BatchSeq(3)),
        "the WAL tells which batches were durable"
    );
    assert_eq!(h.stored_micro_rows().await, 3 * micros);
    assert_eq!(h.server().stats().micro_readings_stored, 3 * micros as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_duplicated_batches_are_stored_once() {
    let mut h = Harness::start(1).await;
    let spec = h.spec(0);
    let micros = spec.micros.len();
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    for seq in [1, 2, 2, 3, 1] {
        gateway.sender.send_batch(&batch(&spec, seq)).await.unwrap();
    }
    // Acks are cumulative and never go back, replays included.
    let mut acks = vec![until_ack(&mut gateway.receiver, 0).await.0];
    while *acks.last().unwrap() < 3 {
        acks.push(until_ack(&mut gateway.receiver, 0).await.0);
    }
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "{acks:?}");
    // The last replay (of batch 1) is acknowledged too, with the mark it lies under.
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while h.server().stats().batches_replayed < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let stats = h.server().stats();
    assert_eq!(stats.batches_stored, 3);
    assert_eq!(stats.batches_replayed, 2);
    // Raw rows in the write buffer, before any deduplication: each batch once.
    assert_eq!(h.store.buffered_rows(), 3 * micros);
    drop(gateway);

    // After a server restart the high-water mark is still known.
    h.restart_server().await;
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    assert_eq!(gateway.acked, BatchSeq(3));
    gateway.sender.send_batch(&batch(&spec, 3)).await.unwrap();
    assert_eq!(until_ack(&mut gateway.receiver, 3).await, BatchSeq(3));
    assert_eq!(h.store.buffered_rows(), 3 * micros);
    assert_eq!(h.stored_micro_rows().await, 3 * micros);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_the_backfill_after_it_lose_nothing() {
    let mut h = Harness::start(1).await;
    let spec = h.spec(0);
    let micros = spec.micros.len();
    let mut outbox = Outbox::new(10_000, 1);

    // Connected: batches 1-5 go out; the link drops before (some of) their acks arrive.
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    for seq in 1..=5 {
        let numbered = outbox.push(batch(&spec, seq));
        gateway.sender.send_batch(&numbered).await.unwrap();
    }
    gateway.connection.close(0u32.into(), b"link lost");
    drop(gateway);

    // Offline: batches 6-12 wait in the outbox. The server restarts meanwhile.
    for seq in 6..=12 {
        outbox.push(batch(&spec, seq));
    }
    h.restart_server().await;

    // Back: resend everything after the Welcome's mark, as the protocol says.
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    assert!(gateway.acked.0 <= 5);
    outbox.acknowledge(gateway.acked);
    let resend: Vec<_> = outbox.unacknowledged().cloned().collect();
    assert_eq!(resend.len() as u64, 12 - gateway.acked.0);
    for b in &resend {
        gateway.sender.send_batch(b).await.unwrap();
    }
    let acked = until_ack(&mut gateway.receiver, 12).await;
    outbox.acknowledge(acked);
    assert!(outbox.is_empty());
    assert_eq!(h.stored_micro_rows().await, 12 * micros);
    assert_eq!(h.store.buffered_rows(), 12 * micros, "nothing stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_registered_gateways_with_fleet_certificates_get_in() {
    let h = Harness::start(2).await;
    let spec = h.spec(0);
    let serial = spec.gateway.serial;

    // No client certificate: the TLS handshake fails.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(h.ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let mut anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    anonymous.alpn_protocols = vec![tls::ALPN.to_vec()];
    let anonymous = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(anonymous).unwrap(),
    ));
    let refused = sunfleet_ingest::gateway::GatewayConnection::connect(
        &h.endpoint,
        h.addr,
        anonymous,
        serial,
        &GatewayOptions::default(),
    )
    .await;
    assert!(refused.is_err(), "a gateway without a certificate got in");

    // A certificate from another CA, for a registered serial: refused in the handshake.
    let stranger = FleetCa::generate("someone else's CA").unwrap();
    let mut forged = h.gateway_identity(serial);
    forged.certificate = stranger.issue_gateway(serial).unwrap();
    let refused = h.connect_as(&forged, serial).await;
    assert!(refused.is_err(), "a certificate from another CA got in");

    // A valid certificate for a serial the registry does not know.
    let unknown = Serial::new(999_999_999_998).unwrap();
    let error = h
        .connect(unknown)
        .await
        .err()
        .expect("unknown gateway refused");
    assert_eq!(
        closed_with(&error),
        Some(ErrorCode::UnknownGateway),
        "{error}"
    );

    // Retiring a gateway closes its open connection within a second or so (code 7), and
    // refuses its next one.
    let other = h.spec(1).gateway.serial;
    let mut live = h.connect(other).await.unwrap();
    let retired_at = std::time::Instant::now();
    h.registry
        .transaction("retire", |tx| {
            tx.execute(
                "UPDATE devices SET state = 'retired', retired_us = ?2 WHERE serial = ?1",
                [other.value() as i64, sunfleet_engine::time::now_micros()],
            )
            .unwrap();
            Ok(())
        })
        .unwrap();
    let error = until_closed(&mut live.receiver).await;
    assert_eq!(
        closed_with(&error),
        Some(ErrorCode::RetiredGateway),
        "{error}"
    );
    // A hang guard: the check runs every session save (100 ms here).
    assert!(retired_at.elapsed() < std::time::Duration::from_secs(10));
    let error = h
        .connect(other)
        .await
        .err()
        .expect("retired gateway refused");
    assert_eq!(
        closed_with(&error),
        Some(ErrorCode::RetiredGateway),
        "{error}"
    );

    // Hello must name the serial of the certificate.
    let error = h
        .connect_as(&h.gateway_identity(serial), other)
        .await
        .err()
        .expect("mismatched Hello refused");
    assert_eq!(
        closed_with(&error),
        Some(ErrorCode::SerialMismatch),
        "{error}"
    );

    // The real one still gets in.
    let mut gateway = h.connect(serial).await.unwrap();
    gateway.sender.send_batch(&batch(&spec, 1)).await.unwrap();
    until_ack(&mut gateway.receiver, 1).await;
    assert!(h.server().stats().rejected_gateways >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_that_gateway_only() {
    let h = Harness::start(4).await;
    let good = h.spec(0);
    let mut steady = h.connect(good.gateway.serial).await.unwrap();
    steady.sender.send_batch(&batch(&good, 1)).await.unwrap();
    until_ack(&mut steady.receiver, 1).await;

    let mut batch_of_another = frame::encode_batch(&batch(&good, 7)).unwrap();
    batch_of_another.truncate(batch_of_another.len());
    let mut bad_body = frame::encode(&Frame::Ack { seq: BatchSeq(1) }).unwrap();
    bad_body[1] = 6; // a TaskResult kind with an Ack's 8-byte body: too short
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![9, 1, 0, 0, 0, 0], ErrorCode::UnsupportedVersion),
        (vec![frame::VERSION, 42, 0, 0, 0, 0], ErrorCode::UnknownKind),
        (
            [vec![frame::VERSION, 3], u32::MAX.to_le_bytes().to_vec()].concat(),
            ErrorCode::FrameTooLarge,
        ),
        (bad_body, ErrorCode::Malformed),
        (batch_of_another, ErrorCode::Malformed),
        (
            frame::encode(&Frame::Welcome { acked: BatchSeq(0) }).unwrap(),
            ErrorCode::UnexpectedFrame,
        ),
    ];
    let mut seq = 1;
    for (i, (bytes, expected)) in cases.into_iter().enumerate() {
        let spec = h.spec(1 + (i as u32 % 3));
        let mut hostile = h.connect(spec.gateway.serial).await.unwrap();
        hostile.sender.send_raw(&bytes).await.unwrap();
        let error = until_closed(&mut hostile.receiver).await;
        assert_eq!(closed_with(&error), Some(expected), "case {i}: {error}");
        // Meanwhile the well-behaved gateway keeps being served.
        seq += 1;
        steady.sender.send_batch(&batch(&good, seq)).await.unwrap();
        until_ack(&mut steady.receiver, seq).await;
    }
    assert!(h.server().stats().protocol_errors >= 6);
    assert_eq!(
        h.stored_micro_rows().await,
        seq as usize * good.micros.len(),
        "stored data is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_holds_bounded_memory_and_is_timed_out() {
    let mut config = test_config();
    config.frame_timeout = Duration::from_secs(1);
    config.hello_timeout = Duration::from_secs(1);
    config.frame_budget_bytes = 3 * frame::MAX_BODY_BYTES;
    let h = Harness::start_with(4, config).await;
    let budget = 3 * frame::MAX_BODY_BYTES;

    // Two gateways announce 4 MiB frames, send a few bytes and stall.
    let mut stalled = Vec::new();
    for index in [1, 2] {
        let mut gateway = h.connect(h.spec(index).gateway.serial).await.unwrap();
        let mut header = vec![frame::VERSION, 3];
        header.extend_from_slice(&(frame::MAX_BODY_BYTES as u32).to_le_bytes());
        header.extend_from_slice(&[0u8; 100]);
        gateway.sender.send_raw(&header).await.unwrap();
        stalled.push(gateway);
    }
    // One connects and never opens its stream.
    let silent_identity = h.gateway_identity(h.spec(3).gateway.serial);
    let silent_config = client_config(&silent_identity, &GatewayOptions::default()).unwrap();
    let silent = h
        .endpoint
        .connect_with(silent_config, h.addr, "localhost")
        .unwrap()
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = h.server().stats();
    assert!(stats.frame_budget_in_use <= budget, "{stats:?}");
    assert!(
        stats.frame_budget_in_use >= 2 * frame::MAX_BODY_BYTES,
        "{stats:?}"
    );

    // A well-behaved gateway is served while they stall.
    let good = h.spec(0);
    let mut gateway = h.connect(good.gateway.serial).await.unwrap();
    gateway.sender.send_batch(&batch(&good, 1)).await.unwrap();
    until_ack(&mut gateway.receiver, 1).await;

    for mut s in stalled {
        let error = until_closed(&mut s.receiver).await;
        assert_eq!(closed_with(&error), Some(ErrorCode::Timeout), "{error}");
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), silent.closed())
        .await
        .unwrap();
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == (ErrorCode::Timeout as u32).into()),
        "{reason}"
    );
    assert_eq!(h.server().stats().frame_budget_in_use, 0, "budget released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_replaces_the_old_one() {
    let h = Harness::start(1).await;
    let spec = h.spec(0);
    let mut first = h.connect(spec.gateway.serial).await.unwrap();
    first.sender.send_batch(&batch(&spec, 1)).await.unwrap();
    until_ack(&mut first.receiver, 1).await;
    let mut second = h.connect(spec.gateway.serial).await.unwrap();
    assert_eq!(second.acked, BatchSeq(1));
    let error = until_closed(&mut first.receiver).await;
    assert_eq!(closed_with(&error), Some(ErrorCode::Replaced), "{error}");
    second.sender.send_batch(&batch(&spec, 2)).await.unwrap();
    until_ack(&mut second.receiver, 2).await;
    assert_eq!(h.server().stats().live_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_new_clients_prove_their_address_first() {
    let mut config = test_config();
    config.retry_above_handshakes = 0;
    let h = Harness::start_with(1, config).await;
    let spec = h.spec(0);
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    gateway.sender.send_batch(&batch(&spec, 1)).await.unwrap();
    until_ack(&mut gateway.receiver, 1).await;
    assert!(h.server().stats().retried_connections >= 1);
}
