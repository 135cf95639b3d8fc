//! The registry's rules, without sockets.

use super::*;
use std::sync::atomic::AtomicBool;

#[test]
fn a_second_login_kicks_the_first_and_the_first_cannot_release_the_second() {
    let r = Registry::new();
    let (a, b) = (r.next_conn(), r.next_conn());
    let (control_a, control_b) = (Arc::new(Control::default()), Arc::new(Control::default()));
    assert_eq!(r.claim(Protocol::Gt06, "123", a, 0, control_a.clone()), None);
    assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(0));
    assert_eq!(r.claim(Protocol::Gt06, "123", b, 1, control_b.clone()), Some(0));
    // The permit waits for the old connection's task.
    block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(1), control_a.woken()).await.unwrap();
    });
    assert!(control_a.kicked() && !control_b.kicked());
    // The old connection closing does not forget the new one.
    r.release(Protocol::Gt06, "123", a, &control_a);
    assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(1));
    // The same id under another protocol is another device.
    assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, control_a), None);
    assert_eq!(r.devices(), 2);
    r.release(Protocol::Gt06, "123", b, &control_b);
    assert_eq!(r.shard_of(Protocol::Gt06, "123"), None);
    // Claiming again from the same connection kicks no one.
    assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, control_b), None);
}

#[test]
fn commands_queue_up_to_a_bound_and_hear_closed_when_their_connection_goes() {
    let r = Registry::new();
    let control = Arc::new(Control::default());
    r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
    block_on(async {
        let unknown = r.send_command(Protocol::Gt06, "999", text(0)).await;
        assert_eq!(unknown, Err(SendError::NotConnected));
        let waiting: Vec<_> = (0..MAX_QUEUED_COMMANDS)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move { r.send_command(Protocol::Gt06, "123", text(i)).await })
            })
            .collect();
        while control.commands().queued.len() < MAX_QUEUED_COMMANDS {
            tokio::task::yield_now().await;
        }
        assert_eq!(r.send_command(Protocol::Gt06, "123", text(99)).await, Err(SendError::QueueFull));
        // The connection wakes, takes them in order, writes the first, and closes.
        tokio::time::timeout(std::time::Duration::from_secs(60), control.woken()).await.unwrap();
        assert!(!control.kicked());
        let mut taken = control.take_commands().into_iter();
        let first = taken.next().unwrap();
        assert_eq!(first.command, text(0));
        let answer = AnswerMatch { attribute: "server_flag", value: 1 };
        first.done.send(Ok(Some(answer))).unwrap();
        drop(taken);
        let results: Vec<_> = join_all(waiting).await;
        assert_eq!(results[0], Ok(Some(answer)));
        assert!(results[1..].iter().all(|r| *r == Err(SendError::Closed)), "{results:?}");
    });
}

/// Commands taken for writing and not written go back in front of the ones queued since,
/// in their own order; once the queue is closed they are dropped and their callers hear
/// `Closed`.
#[test]
fn unwritten_commands_are_put_back_in_front_in_order() {
    let r = Registry::new();
    let (conn, control) = (r.next_conn(), Arc::new(Control::default()));
    r.claim(Protocol::Gt06, "123", conn, 0, control.clone());
    block_on(async {
        let send = |i: usize| {
            let r = r.clone();
            tokio::spawn(async move { r.send_command(Protocol::Gt06, "123", text(i)).await })
        };
        let queued_up_to = |n: usize| {
            let control = control.clone();
            async move {
                while control.commands().queued.len() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let mut waiting = Vec::new();
        for i in 0..3 {
            waiting.push(send(i));
            queued_up_to(i + 1).await;
        }
        let taken = control.take_commands();
        waiting.push(send(3));
        queued_up_to(1).await;
        control.put_back(taken);
        let order = |q: &[QueuedCommand]| q.iter().map(|q| q.command.clone()).collect::<Vec<_>>();
        let again = control.take_commands();
        assert_eq!(order(&again), [text(0), text(1), text(2), text(3)]);
        r.release(Protocol::Gt06, "123", conn, &control);
        control.put_back(again);
        assert!(control.commands().queued.is_empty(), "a closed queue takes nothing back");
        let results = join_all(waiting).await;
        assert!(results.iter().all(|r| *r == Err(SendError::Closed)), "{results:?}");
    });
}

/// A UDP peer never takes a device from a TCP connection (a datagram is easily forged);
/// a TCP login takes it from a UDP peer, and a newer UDP peer from an older one.
#[test]
fn udp_peers_hold_a_device_only_when_no_tcp_connection_does() {
    let r = Registry::new();
    let controls: Vec<Arc<Control>> = (0..4).map(|_| Arc::new(Control::default())).collect();
    let (tcp, udp_a, udp_b) = (r.next_conn(), r.next_conn(), r.next_conn());
    r.claim(Protocol::Jt808, "1", tcp, 0, controls[0].clone());
    assert!(!r.claim_udp(Protocol::Jt808, "1", udp_a, 1, controls[1].clone()));
    assert!(!controls[0].kicked());
    r.release(Protocol::Jt808, "1", tcp, &controls[0]);
    assert!(r.claim_udp(Protocol::Jt808, "1", udp_a, 1, controls[1].clone()));
    assert!(r.claim_udp(Protocol::Jt808, "1", udp_b, 1, controls[2].clone()));
    assert!(controls[1].kicked(), "a newer UDP peer (NAT rebinding) takes over");
    assert_eq!(r.claim(Protocol::Jt808, "1", r.next_conn(), 0, controls[3].clone()), Some(1));
    assert!(controls[2].kicked(), "a TCP login takes over from UDP");
}

/// A command for a device that is not connected waits for it: handed to its connection
/// when it claims the device, answered once written; one whose time passes first
/// expires, at the caller and at the claim.
#[test]
fn held_commands_reach_the_device_when_it_connects_or_expire() {
    block_on(async {
        let r = Registry::new();
        // Held, then the device connects.
        let waiting = {
            let r = r.clone();
            tokio::spawn(async move { r.send_command_or_hold(Protocol::Gt06, "123", text(0), LONG).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(r.holding(), 1);
        let control = Arc::new(Control::default());
        r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
        assert_eq!(r.holding(), 0);
        tokio::time::timeout(Duration::from_secs(60), control.woken()).await.unwrap();
        let taken = control.take_commands();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].command, text(0));
        let answer = AnswerMatch { attribute: "server_flag", value: 7 };
        taken.into_iter().next().unwrap().done.send(Ok(Some(answer))).unwrap();
        assert_eq!(waiting.await.unwrap(), Ok(Some(answer)));
        // Connected now: no holding, straight to the connection.
        let direct = {
            let r = r.clone();
            tokio::spawn(async move { r.send_command_or_hold(Protocol::Gt06, "123", text(1), LONG).await })
        };
        tokio::time::timeout(Duration::from_secs(60), control.woken()).await.unwrap();
        assert_eq!(r.holding(), 0);
        control.take_commands().into_iter().next().unwrap().done.send(Ok(None)).unwrap();
        assert_eq!(direct.await.unwrap(), Ok(None));

        // Nobody connects: the caller hears it expired, and nothing stays held.
        let short = Duration::from_millis(50);
        assert_eq!(r.send_command_or_hold(Protocol::Gt06, "456", text(2), short).await, Err(SendError::Expired));
        assert_eq!(r.holding(), 0);
        // A caller that stopped waiting leaves its command held; past its time, the
        // device connecting does not get it.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(1),
            r.send_command_or_hold(Protocol::Gt06, "456", text(3), Duration::from_millis(20)),
        )
        .await;
        assert!(gave_up.is_err());
        assert_eq!(r.holding(), 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let late = Arc::new(Control::default());
        r.claim(Protocol::Gt06, "456", r.next_conn(), 0, late.clone());
        assert!(late.take_commands().is_empty());
        assert_eq!(r.holding(), 0);

        // At most MAX_QUEUED_COMMANDS held per device.
        let held: Vec<_> = (0..MAX_QUEUED_COMMANDS)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move { r.send_command_or_hold(Protocol::Jt808, "789", text(i), LONG).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let over = r.send_command_or_hold(Protocol::Jt808, "789", text(99), LONG).await;
        assert_eq!(over, Err(SendError::QueueFull));
        for h in held {
            h.abort();
        }
    });
}

/// Commands still queued when their connection goes are not lost with it: they follow
/// the device to its newer connection, or, sent with a hold, are held again for the rest
/// of their time; without a hold and with no newer connection they hear `Closed`.
#[test]
fn unwritten_commands_follow_the_device_or_are_held_again() {
    block_on(async {
        let r = Registry::new();
        let send = |i: usize, hold: Option<Duration>| {
            let r = r.clone();
            tokio::spawn(async move {
                match hold {
                    Some(hold) => r.send_command_or_hold(Protocol::Gt06, "123", text(i), hold).await,
                    None => r.send_command(Protocol::Gt06, "123", text(i)).await,
                }
            })
        };
        let queued_at = |control: &Arc<Control>, n: usize| {
            let control = control.clone();
            async move {
                while control.commands().queued.len() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let (a, b, c) = (r.next_conn(), r.next_conn(), r.next_conn());
        let controls: Vec<Arc<Control>> = (0..3).map(|_| Arc::new(Control::default())).collect();

        // Queued at the first connection; the device reconnects before it writes them.
        r.claim(Protocol::Gt06, "123", a, 0, controls[0].clone());
        let plain = send(0, None);
        queued_at(&controls[0], 1).await;
        let held = send(1, Some(LONG));
        queued_at(&controls[0], 2).await;
        r.claim(Protocol::Gt06, "123", b, 0, controls[1].clone());
        r.release(Protocol::Gt06, "123", a, &controls[0]);
        let moved = controls[1].take_commands();
        assert_eq!(moved.iter().map(|q| q.command.clone()).collect::<Vec<_>>(), [text(0), text(1)]);
        for q in moved {
            q.done.send(Ok(None)).unwrap();
        }
        assert_eq!((plain.await.unwrap(), held.await.unwrap()), (Ok(None), Ok(None)));

        // The device goes with nothing newer: the held one waits for it, the other is closed.
        let plain = send(2, None);
        queued_at(&controls[1], 1).await;
        let held = send(3, Some(LONG));
        queued_at(&controls[1], 2).await;
        r.release(Protocol::Gt06, "123", b, &controls[1]);
        assert_eq!(plain.await.unwrap(), Err(SendError::Closed));
        assert_eq!(r.status(Protocol::Gt06, "123"), DeviceStatus { connected: None, held: 1 });
        r.claim(Protocol::Gt06, "123", c, 0, controls[2].clone());
        let handed = controls[2].take_commands();
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].command, text(3));
        handed.into_iter().next().unwrap().done.send(Ok(None)).unwrap();
        assert_eq!(held.await.unwrap(), Ok(None));

        // A hold that ran out while queued at the connection is not held again.
        let short = send(4, Some(Duration::from_millis(20)));
        queued_at(&controls[2], 1).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        r.release(Protocol::Gt06, "123", c, &controls[2]);
        assert_eq!(short.await.unwrap(), Err(SendError::Expired));
        assert_eq!(r.holding(), 0);
    });
}

/// Commands sent with a hold while connections for their device come and go (each
/// takes the device, writes what it finds, and is released) are all written in the end:
/// none is lost to a connection released between a sender finding it and queueing
/// there.
#[test]
fn commands_sent_while_connections_come_and_go_are_never_lost() {
    let r = Registry::new();
    let key: (Protocol, Box<str>) = (Protocol::Gt06, "1".into());
    let stop = Arc::new(AtomicBool::new(false));
    let write_all = |control: &Control| {
        for q in control.take_commands() {
            let _ = q.done.send(Ok(None));
        }
    };
    let connections = {
        let (r, stop) = (r.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let control = Arc::new(Control::default());
                let conn = r.next_conn();
                r.claim(Protocol::Gt06, "1", conn, 0, control.clone());
                write_all(&control);
                r.release(Protocol::Gt06, "1", conn, &control);
            }
        })
    };
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let (r, key) = (r.clone(), key.clone());
            std::thread::spawn(move || {
                // One at a time: the device's queue and held list stay within bounds.
                let mut outcomes = Vec::new();
                for i in 0..3000 {
                    let (tx, answer) = oneshot::channel();
                    r.queue_or_hold(&key, text(t * 10_000 + i), tx, LONG).unwrap();
                    outcomes.push(answer.blocking_recv());
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    stop.store(true, Ordering::Release);
    connections.join().unwrap();
    let lost = outcomes.iter().filter(|o| **o != Ok(Ok(None))).count();
    assert_eq!(lost, 0, "{:?}", outcomes.iter().find(|o| **o != Ok(Ok(None))));
}

/// With a hold file, a command held for a device that is not connected survives a
/// restart (a new registry from the file) and reaches the device when it connects; once
/// written it is done, and the next start holds nothing. One dropped from memory while
/// the gateway stops (the file detached) is still held.
#[test]
fn held_commands_outlive_a_restart_with_a_hold_file() {
    let dir = std::env::temp_dir().join(format!("trackgate-registry-holds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("held.jsonl");
    let key: (Protocol, Box<str>) = (Protocol::Gt06, "123".into());
    let (file, restored) = HoldFile::open(&path).unwrap();
    let r = Registry::with_hold_file(file, restored);
    let (tx, _caller_gone) = oneshot::channel();
    let id = r.queue_or_hold(&key, text(1), tx, LONG).unwrap();
    assert_eq!(r.status(Protocol::Gt06, "123").held, 1);
    // The gateway stops: the file is detached, then the registry goes.
    r.detach_hold_file();
    drop(r);

    let (file, restored) = HoldFile::open(&path).unwrap();
    assert_eq!(restored.iter().map(|c| (c.id, &c.command)).collect::<Vec<_>>(), [(id, &text(1))]);
    let r = Registry::with_hold_file(file, restored);
    // New ids go on after the ones read back.
    let (tx, _) = oneshot::channel();
    assert!(r.queue_or_hold(&(Protocol::Gt06, "456".into()), text(2), tx, LONG).unwrap() > id);
    let control = Arc::new(Control::default());
    r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
    let taken = control.take_commands();
    assert_eq!(taken.iter().map(|q| &q.command).collect::<Vec<_>>(), [&text(1)]);
    for q in taken {
        let _ = q.done.send(Ok(None));
    }
    r.detach_hold_file();
    drop(r);
    let (_, restored) = HoldFile::open(&path).unwrap();
    assert_eq!(restored.iter().map(|c| &c.command).collect::<Vec<_>>(), [&text(2)], "123's is done");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tests' commands: distinct texts.
fn text(i: usize) -> Downlink {
    Downlink::Text(format!("C{i}"))
}

/// Long enough never to run out during a test.
const LONG: Duration = Duration::from_secs(600);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
}

type Sent = Result<Option<AnswerMatch>, SendError>;

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Sent>>) -> Vec<Sent> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[test]
fn ip_slots_are_capped_and_given_back() {
    let r = Registry::new();
    let ip: IpAddr = [10, 0, 0, 1].into();
    let s1 = r.admit(ip, 2).unwrap();
    let s2 = r.admit(ip, 2).unwrap();
    assert!(r.admit(ip, 2).is_none());
    assert!(r.admit([10, 0, 0, 2].into(), 2).is_some());
    drop(s1);
    assert_eq!(r.open_from(ip), 1);
    let _s3 = r.admit(ip, 2).unwrap();
    drop(s2);
    assert_eq!(r.open_from(ip), 1);
    // 0 means no cap.
    let many: Vec<_> = (0..100).map(|_| r.admit(ip, 0).unwrap()).collect();
    assert_eq!(r.open_from(ip), 101);
    drop(many);
    assert_eq!(r.open_from(ip), 1);
}

/// What the cluster plane hears (claims and releases, in order), and its eviction of a
/// connection older than another node's: a newer connection here is kept.
#[test]
fn the_cluster_hears_every_claim_and_release_and_evicts_only_older_connections() {
    let r = Registry::new();
    let (tx, mut heard) = mpsc::unbounded_channel();
    r.tell_presence(tx);
    let (a, b) = (r.next_conn(), r.next_conn());
    let (control_a, control_b) = (Arc::new(Control::default()), Arc::new(Control::default()));
    r.claim(Protocol::Gt06, "123", a, 0, control_a.clone());
    let Ok(Presence::Claimed { since_ms, udp: false, .. }) = heard.try_recv() else { panic!("no claim heard") };
    // Another node's connection made before this one's, or a UDP peer's: this one stays.
    assert!(!r.evict(Protocol::Gt06, "123", since_ms - 1, false));
    assert!(!r.evict(Protocol::Gt06, "123", since_ms + 1, true));
    assert!(r.holds(Protocol::Gt06, "123") && !control_a.kicked());
    assert!(heard.try_recv().is_err());
    // A newer one elsewhere: this one is closed and released, once.
    assert!(r.evict(Protocol::Gt06, "123", since_ms + 1, false));
    assert!(control_a.kicked() && !r.holds(Protocol::Gt06, "123"));
    let released = Presence::Released { protocol: Protocol::Gt06, device_id: "123".into() };
    assert_eq!(heard.try_recv(), Ok(released.clone()));
    r.release(Protocol::Gt06, "123", a, &control_a);
    assert!(heard.try_recv().is_err(), "released twice");
    // A takeover inside the node is a claim, not a release.
    r.claim(Protocol::Gt06, "123", a, 0, control_a.clone());
    r.claim(Protocol::Gt06, "123", b, 0, control_b.clone());
    r.release(Protocol::Gt06, "123", a, &control_a);
    assert!(matches!(heard.try_recv(), Ok(Presence::Claimed { .. })));
    assert!(matches!(heard.try_recv(), Ok(Presence::Claimed { .. })));
    assert!(heard.try_recv().is_err());
    r.release(Protocol::Gt06, "123", b, &control_b);
    assert_eq!(heard.try_recv(), Ok(released));
}

/// The takeover policy: a login from another address leaves a connection heard from within
/// the window alone (refused); the same address, a silent connection, or no window: taken
/// over as always.
#[test]
fn a_live_connection_from_another_address_keeps_its_device() {
    let r = Registry::new();
    let (home, away): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let claim = |conn, ip| r.claim_from(Protocol::Gt06, "123", conn, 0, Arc::new(Control::default()), ip);
    let (a, b, c, d) = (r.next_conn(), r.next_conn(), r.next_conn(), r.next_conn());
    assert_eq!(claim(a, home), Ok(None));
    // No window (the library's default): taken over.
    assert_eq!(claim(b, away), Ok(Some(0)));
    r.set_takeover_window(Duration::from_secs(30));
    // b was heard at its claim, from `away`: a login from `home` is refused...
    assert_eq!(claim(c, home), Err(TakeoverRefused));
    assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(0));
    // ...one from the same address is the device reconnecting.
    assert_eq!(claim(c, away), Ok(Some(0)));
    // A connection not heard from within the window is taken over from anywhere.
    r.set_takeover_window(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(claim(d, home), Ok(Some(0)));
}

/// Across nodes: a login asks the node holding the device only when that node's connection
/// is from another address and the policy keeps live connections; the holding node answers
/// as it would for a login of its own.
#[test]
fn another_node_is_asked_only_when_its_policy_could_keep_the_device() {
    let here = Registry::new();
    let (ip, other): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let elsewhere = remote::Elsewhere { node: "a".into(), ip: Some(ip) };
    here.seen_elsewhere(Protocol::Gt06, "123", Some(elsewhere));
    here.set_takeover_window(Duration::from_secs(30));
    assert_eq!(here.asks_first(Protocol::Gt06, "123", other), None, "nobody to ask without a cluster");
    here.set_asker(Box::new(|_, _, _, _| Box::pin(async { false })));
    assert_eq!(here.asks_first(Protocol::Gt06, "123", other), Some("a".into()));
    assert!(!block_on(here.may_take_from("a".into(), Protocol::Gt06, "123", other)));
    assert_eq!(here.asks_first(Protocol::Gt06, "123", ip), None, "the same address takes over");
    assert_eq!(here.asks_first(Protocol::Gt06, "456", other), None, "not held elsewhere");
    here.set_takeover_window(Duration::ZERO);
    assert_eq!(here.asks_first(Protocol::Gt06, "123", other), None, "the newest login always wins");
    here.set_takeover_window(Duration::from_secs(30));
    here.seen_elsewhere(Protocol::Gt06, "123", None);
    assert_eq!(here.asks_first(Protocol::Gt06, "123", other), None, "released there");

    // The holding node's answer: kept while heard within the window, from another address.
    let holder = Registry::new();
    holder.set_takeover_window(Duration::from_secs(30));
    holder.claim_from(Protocol::Gt06, "123", 1, 0, Arc::new(Control::default()), ip).unwrap();
    assert!(holder.keeps_against(Protocol::Gt06, "123", other));
    assert!(!holder.keeps_against(Protocol::Gt06, "123", ip));
    assert!(!holder.keeps_against(Protocol::Gt06, "456", other));
    holder.set_takeover_window(Duration::ZERO);
    assert!(!holder.keeps_against(Protocol::Gt06, "123", other));
}
