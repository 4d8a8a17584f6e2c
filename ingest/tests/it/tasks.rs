//! Task downlink: queued tasks reach the gateway, its reports are stored with timestamps.

use sunfleet_engine::registry::TaskProgress;
use sunfleet_ingest::frame::{TaskKind, TaskState};
use sunfleet_ingest::gateway::{GatewayReceiver, ServerMessage};

use crate::harness::{Harness, WAIT};

async fn next_task(receiver: &mut GatewayReceiver) -> (u64, TaskKind, String) {
    tokio::time::timeout(WAIT, async {
        loop {
            match receiver.next().await.unwrap() {
                Some(ServerMessage::Task {
                    id,
                    kind,
                    parameters,
                }) => return (id, kind, parameters),
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .expect("a task in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_reach_the_gateway_and_its_reports_are_kept() {
    let h = Harness::start(1).await;
    let spec = h.spec(0);
    let info = h.registry.gateway(spec.gateway.serial).unwrap().unwrap();

    // Queued while the gateway is away: delivered when it connects.
    let early = h
        .registry
        .queue_task(info.device, "production_off", "{}", None, 1)
        .unwrap();
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    let (id, kind, _) = next_task(&mut gateway.receiver).await;
    assert_eq!((id, kind), (early as u64, TaskKind::ProductionOff));
    assert_eq!(
        h.registry.task(early).unwrap().unwrap().state,
        TaskProgress::Sent
    );
    gateway
        .sender
        .report(id, TaskState::Started, "switching off")
        .await
        .unwrap();
    gateway
        .sender
        .report(id, TaskState::Succeeded, "production off")
        .await
        .unwrap();

    // Queued while it is connected: delivered without reconnecting, every kind.
    let mut queued = Vec::new();
    for kind in TaskKind::ALL {
        let parameters = match kind {
            TaskKind::ProvisionDevices => r#"{"serials":["000000000001"]}"#,
            TaskKind::MeterMode => r#"{"mode":"total"}"#,
            TaskKind::GridProfile => r#"{"profile":"IEEE 1547-2018"}"#,
            _ => "{}",
        };
        let id = h
            .registry
            .queue_task(info.device, kind.name(), parameters, None, 2)
            .unwrap();
        queued.push((id as u64, kind, parameters.to_owned()));
    }
    h.server().notify_tasks();
    for expected in &queued {
        let got = next_task(&mut gateway.receiver).await;
        assert_eq!(&got, expected);
        gateway
            .sender
            .report(
                got.0,
                TaskState::Failed,
                format!("{} refused", got.1.name()),
            )
            .await
            .unwrap();
    }

    // Reports are stored as they arrive.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = h
            .registry
            .task(queued.last().unwrap().0 as i64)
            .unwrap()
            .unwrap();
        if done.state == TaskProgress::Failed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "report not stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = h.registry.task(early).unwrap().unwrap();
    assert_eq!(first.state, TaskProgress::Succeeded);
    assert_eq!(first.result, "production off");
    assert!(first.sent_us.is_some() && first.started_us.is_some() && first.finished_us.is_some());
    assert!(first.sent_us <= first.started_us && first.started_us <= first.finished_us);

    // A finished task is not sent again; one sent but never reported is.
    let unreported = h
        .registry
        .queue_task(info.device, "reboot", "{}", None, 3)
        .unwrap();
    h.server().notify_tasks();
    let (id, kind, _) = next_task(&mut gateway.receiver).await;
    assert_eq!((id, kind), (unreported as u64, TaskKind::Reboot));
    drop(gateway);
    let mut gateway = h.connect(spec.gateway.serial).await.unwrap();
    let (id, _, _) = next_task(&mut gateway.receiver).await;
    assert_eq!(id, unreported as u64, "an unreported task is offered again");
}
