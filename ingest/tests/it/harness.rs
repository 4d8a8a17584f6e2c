//! A real ingest server on 127.0.0.1 over a seeded registry and a store in a temporary
//! folder, and gateways that connect to it with certificates from its CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::Endpoint;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::telemetry::{MicroReading, TelemetryBatch, micro_status};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::world::SystemSpec;
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_ingest::gateway::{
    GatewayConnection, GatewayError, GatewayIdentity, GatewayOptions, GatewayReceiver,
    ServerMessage, client_config, client_endpoint,
};
use sunfleet_ingest::server::{IngestConfig, IngestServer};
use sunfleet_ingest::tls::{FleetCa, ServerIdentity};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn day() -> CivilDate {
    CivilDate::from_ymd(2026, 6, 1).unwrap()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub fleet: Fleet,
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub ca: FleetCa,
    pub identity: ServerIdentity,
    pub config: IngestConfig,
    pub server: Option<IngestServer>,
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
}

pub fn test_config() -> IngestConfig {
    let mut config = IngestConfig::new("127.0.0.1:0".parse().unwrap());
    config.hello_timeout = Duration::from_secs(5);
    config.session_save_interval = Duration::from_millis(100);
    config.task_poll_interval = Duration::from_millis(100);
    config
}

impl Harness {
    pub async fn start(systems: u32) -> Self {
        Self::start_with(systems, test_config()).await
    }

    pub async fn start_with(systems: u32, config: IngestConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::new(FleetConfig::new(5, systems, day(), 1));
        let registry = Arc::new(Registry::open(dir.path().join("registry.sqlite3")).unwrap());
        sunfleet_fixtures::seed::seed_registry(&registry, &fleet).unwrap();
        let directory = DeviceDirectory::new();
        registry.load_directory(&directory).unwrap();
        let store = Arc::new(
            Store::open(StoreConfig::for_tests(dir.path()), directory)
                .await
                .unwrap(),
        );
        let ca = FleetCa::generate("test fleet CA").unwrap();
        let identity = ServerIdentity {
            ca_pem: ca.cert_pem().to_owned(),
            server: ca.issue_server(&["localhost".into()]).unwrap(),
        };
        let server = IngestServer::start(
            config.clone(),
            &identity,
            Arc::clone(&store),
            Arc::clone(&registry),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let endpoint = client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        Self {
            dir,
            fleet,
            store,
            registry,
            ca,
            identity,
            config,
            server: Some(server),
            addr,
            endpoint,
        }
    }

    pub fn server(&self) -> &IngestServer {
        self.server.as_ref().unwrap()
    }

    /// Stops the server (saving sessions) and starts a new one on the same store.
    pub async fn restart_server(&mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
        let mut config = self.config.clone();
        config.listen = self.addr;
        // quinn's endpoint driver lets go of the UDP port a moment after the last handle.
        let mut attempts = 0;
        let server = loop {
            match IngestServer::start(
                config.clone(),
                &self.identity,
                Arc::clone(&self.store),
                Arc::clone(&self.registry),
            )
            .await
            {
                Ok(server) => break server,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("restarting the server: {error}"),
            }
        };
        self.server = Some(server);
    }

    pub fn spec(&self, index: u32) -> SystemSpec {
        self.fleet.system(index)
    }

    pub fn gateway_identity(&self, serial: Serial) -> GatewayIdentity {
        GatewayIdentity {
            serial,
            ca_pem: self.ca.cert_pem().to_owned(),
            certificate: self.ca.issue_gateway(serial).unwrap(),
        }
    }

    pub async fn connect(&self, serial: Serial) -> Result<GatewayConnection, GatewayError> {
        self.connect_as(&self.gateway_identity(serial), serial)
            .await
    }

    /// Connects with `identity` and says Hello as `hello_serial`.
    pub async fn connect_as(
        &self,
        identity: &GatewayIdentity,
        hello_serial: Serial,
    ) -> Result<GatewayConnection, GatewayError> {
        let options = GatewayOptions::default();
        let config = client_config(identity, &options)?;
        GatewayConnection::connect(&self.endpoint, self.addr, config, hello_serial, &options).await
    }

    /// Microinverter readings of the test day, deduplicated, as the read API returns them.
    pub async fn stored_micro_rows(&self) -> usize {
        stored_rows(&self.store).await
    }
}

pub async fn stored_rows(store: &Store) -> usize {
    store
        .read(&ReadRequest::days(Table::Readings, day(), day()))
        .await
        .unwrap()
        .num_rows()
}

/// One reading per microinverter of `spec`, at 12:00 UTC plus `seq` five-minute intervals.
pub fn batch(spec: &SystemSpec, seq: u64) -> TelemetryBatch {
    let time_us = day().start_micros() + 12 * 3_600_000_000 + seq as i64 * 300_000_000;
    let mut batch = TelemetryBatch::new(spec.gateway.serial, BatchSeq(seq), time_us);
    for (i, micro) in spec.micros.iter().enumerate() {
        batch.micro.push(MicroReading {
            serial: micro.serial,
            time_us,
            interval_s: 300,
            energy_j: 60_000 + i as u32,
            ac_power_w: 200,
            dc_voltage_mv: 32_000,
            dc_current_ma: 6_500,
            ac_voltage_mv: 240_000,
            ac_frequency_mhz: 60_000,
            temperature_c: 35,
            status: micro_status::PRODUCING,
        });
    }
    batch
}

/// Reads messages until an ack of at least `seq` (tasks and heartbeats are skipped).
pub async fn until_ack(receiver: &mut GatewayReceiver, seq: u64) -> BatchSeq {
    tokio::time::timeout(WAIT, async {
        loop {
            match receiver.next().await.unwrap() {
                Some(ServerMessage::Ack(acked)) if acked.0 >= seq => return acked,
                Some(ServerMessage::Error { code, message }) => {
                    panic!("server error {code:?}: {message}")
                }
                Some(_) => {}
                None => panic!("server ended the stream before acking {seq}"),
            }
        }
    })
    .await
    .expect("ack in time")
}

/// Reads messages until the connection ends; returns the error it ended with.
pub async fn until_closed(receiver: &mut GatewayReceiver) -> GatewayError {
    tokio::time::timeout(WAIT, async {
        loop {
            match receiver.next().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("stream ended without a close"),
                Err(error) => return error,
            }
        }
    })
    .await
    .expect("closed in time")
}
